"""``fairpp position``: model specs, and several real models placed among a persona run.

The end-to-end test asks the embedded model in-process and the same GGUF served by a real
``python -m llama_cpp.server`` under another name (through the openai backend), plus a
server that is not there; the numbers are checked against ``run_metrics``, which computes
them independently per run.
"""

from __future__ import annotations

import json

import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.model_specs import parse_spec, parse_specs
from fairpp_app.jobs.run_metrics import run_metrics
from tests.support.llama_server import free_port, llama_server
from tests.support.training_data import PERSONA_RUN, persona_records

N = 4  # questions each model answers


@pytest.mark.parametrize(("text", "expected"), [
    ("embedded", ("embedded", "embedded", None, None)),
    ("gguf:/models/qwen2.5-0.5b.Q4.gguf", ("qwen2.5-0.5b.Q4", "llamacpp", "/models/qwen2.5-0.5b.Q4.gguf", None)),
    ("ollama:llama3.2:1b", ("llama3.2:1b", "ollama", "llama3.2:1b", None)),
    ("ollama:qwen3@http://10.0.0.2:11434", ("qwen3", "ollama", "qwen3", "http://10.0.0.2:11434")),
    ("srv=openai:my@model@http://127.0.0.1:8080/v1",
     ("srv", "openai", "my@model", "http://127.0.0.1:8080/v1")),
    ("transformers:/w/Qwen2.5-7B-Instruct/", ("Qwen2.5-7B-Instruct", "transformers",
                                              "/w/Qwen2.5-7B-Instruct/", None)),
])
def test_spec_syntax(text, expected):
    spec = parse_spec(text)
    assert (spec.label, spec.backend, spec.model, spec.base_url) == expected
    assert spec.text == text


@pytest.mark.parametrize(("texts", "message"), [
    (["vllm:foo"], "unknown backend 'vllm'"),
    (["openai:gpt-4o"], "openai:MODEL@http://HOST:PORT/v1"),
    (["gguf"], "needs a model"),
    (["embedded@http://x:1"], "has no URL"),
    (["embedded", "ollama:embedded"], "name one with LABEL=SPEC"),
    ([], "at least one model"),
])
def test_bad_specs_say_what_to_write(texts, message):
    with pytest.raises(UsageError, match=message):
        parse_specs(texts)


def test_cli_refuses_bad_input_before_any_work(db_path, capsys):
    db = ["--db", str(db_path)]
    assert main(db + ["position", "vllm:x", "--from-run", "nope"]) == 2
    assert "unknown backend 'vllm'" in capsys.readouterr().err
    assert main(db + ["position", "embedded", "--from-run", "nope"]) == 4
    assert "no run named 'nope'" in capsys.readouterr().err.lower()


@pytest.fixture
def persona_db(store, slugs):
    """'personas': the seven personas on N test questions (seeded, varied answers)."""
    run = store.create_run(PERSONA_RUN, "import", status="finished")
    store.upsert_records(persona_records(store, run["id"], store.questions("test", limit=N), slugs))
    store.close()
    return store.path


def test_plan_prints_records_and_asks_nothing(persona_db, capsys):
    from fairpp_app.store.database import Store

    db = ["--db", str(persona_db)]
    assert main(db + ["position", "embedded", "x=ollama:llama3.2", "--from-run", PERSONA_RUN,
                      "--limit", "3", "--plan"]) == 0
    err = capsys.readouterr().err
    assert "embedded: 3 records" in err and "x: 3 records" in err
    assert "planned: 6 records for 2 models" in err
    assert main(db + ["position", "embedded", "--from-run", PERSONA_RUN, "--split", "train"]) == 2
    assert "no persona answers on split 'train'" in capsys.readouterr().err
    with Store(persona_db) as store:
        assert [r["name"] for r in store.list_runs()] == [PERSONA_RUN]


@pytest.mark.model
@pytest.mark.timeout(300)
def test_debias_permute_reaches_every_model_run(persona_db, capsys):
    from fairpp_app.store.database import Store

    assert main(["--db", str(persona_db), "position", "embedded", "--from-run", PERSONA_RUN,
                 "--limit", "2", "--debias", "permute", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["models"][0]
    assert row["run"].endswith("-permute-model") and row["questions"] == 2
    with Store(persona_db) as store:
        frame = store.record_frame(store.get_run(row["run"])["id"])
        assert set(frame["method"]) == {"logprob+permute"}


@pytest.mark.model
@pytest.mark.timeout(600)
def test_two_real_models_and_one_down(persona_db, tmp_path, capsys):
    from fairpp_app.backends.llamacpp import embedded_model_path
    from fairpp_app.store.database import Store

    db = ["--db", str(persona_db)]
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with llama_server(embedded_model_path(), tmp_path / "server.log", alias="gemma-served") as url:
        args = db + ["position", "embedded", f"served=openai:gemma-served@{url}",
                     f"down=openai:x@{down}", "--from-run", PERSONA_RUN, "--limit", str(N),
                     "--max-retries", "0", "--name", "pair", "--json"]
        assert main(args) == 1  # one model failed; the others finished
        captured = capsys.readouterr()
        assert f"planned: {3 * N} records for 3 models" in captured.err
        table = {m["label"]: m for m in json.loads(captured.out)["models"]}
        assert table["down"]["status"] == "stopped" and "cannot reach" in table["down"]["error"]
        assert table["down"]["similarity"] == {}
        with Store(persona_db) as store:
            for label, model in (("embedded", "gemma-3-270m"), ("served", "gemma-served")):
                row = table[label]
                assert row["status"] == "finished" and row["questions"] == N
                expected = run_metrics(store, row["run"], builtin_personas(), "test",
                                       persona_run=PERSONA_RUN)
                assert row["similarity"] == pytest.approx(expected["similarity"][model])
                ranked = sorted(row["similarity"].items(), key=lambda kv: -kv[1])
                assert row["closest"] == ranked[0][0]
                assert row["margin"] == pytest.approx(ranked[0][1] - ranked[1][1])
                assert row["agreement_closest"] == pytest.approx(
                    expected["agreement"][model][row["closest"]])
            stored = store.get_position_set("pair")
            assert stored["persona_run"] == PERSONA_RUN and stored["split"] == "test"
            assert [m["label"] for m in stored["models"]] == ["embedded", "served", "down"]
            records = store.record_count()

        # Rerun: both runs are reused, nothing is asked twice; the table prints as text.
        assert main(db + args[2:-1]) == 1
        captured = capsys.readouterr()
        assert f"embedded: run '{table['embedded']['run']}', {N} already answered, 0 to ask" in captured.err
        assert "served" in captured.out and "closest" in captured.out and "stopped" in captured.out
        with Store(persona_db) as store:
            assert store.record_count() == records

    # The stored set feeds metrics: both models beside the personas, labelled as named.
    assert main(db + ["metrics", "--set", "pair", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"embedded", "served"} <= set(result["respondents"])
    assert result["similarity"]["served"] == pytest.approx(table["served"]["similarity"])
    assert result["sources"]["served"] == table["served"]["run"]


def test_metrics_with_other_runs_labels_each_model(store, capsys):
    """``metrics --with``: the models of other runs beside the personas of one run, with the
    numbers ``run_metrics`` gives each run alone; a model name met twice gets its run's name."""
    from tests.support.tui_data import MODEL, RUN, insert_synthetic_run

    insert_synthetic_run(store, n=40)
    for name, model in (("other", "served"), ("again", MODEL)):
        run = store.create_run(name, "simulation", backend="openai", model=model, mode="logprob",
                               status="finished")
        store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": model,
                               "respondent_kind": "model", "answer": "ABC"[i % 3 if i % 5 else 0],
                               "method": "logprob"}
                              for i, q in enumerate(store.questions("test", limit=30))])
    personas = builtin_personas()
    alone = run_metrics(store, "other", personas, "test", persona_run=RUN)
    store.close()
    assert main(["--db", str(store.path), "metrics", "--run", RUN, "--with", "other",
                 "--with", "again", "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["respondents"][-3:] == ["served", MODEL, f"{MODEL} (again)"]
    assert result["sources"] == {**dict.fromkeys(result["respondents"][:-3], RUN), MODEL: RUN,
                                 f"{MODEL} (again)": "again", "served": "other"}
    assert result["similarity"]["served"] == pytest.approx(alone["similarity"]["served"])
    assert result["questions"]["served"] == 30


def test_a_position_set_is_replaced_by_a_rerun_and_named_when_missing(store):
    from fairpp_app.core.errors import NotFoundError

    with pytest.raises(NotFoundError, match="fairpp position .* --name NAME"):
        store.get_position_set("pair")
    first = store.save_position_set("pair", "personas", "test", [{"label": "a", "run": "r1"}], {})
    again = store.save_position_set("pair", "personas", "test", [{"label": "a", "run": "r2"}],
                                    {"limit": 3})
    assert again["id"] == first["id"] and again["models"] == [{"label": "a", "run": "r2"}]
    assert again["params"] == {"limit": 3} and again["created_at"] == first["created_at"]
    store.save_position_set("other", "personas", "all", [], {})
    with pytest.raises(NotFoundError, match="sets here: pair, other"):
        store.get_position_set("nope")


@pytest.mark.model
@pytest.mark.timeout(300)
def test_an_unknown_tag_fails_in_its_row_and_the_other_model_finishes(persona_db, capsys):
    from tests.support.ollama_server import FakeOllama

    with FakeOllama() as server:
        assert main(["--db", str(persona_db), "position", f"gone=ollama:no-such-tag@{server.url}",
                     "embedded", "--from-run", PERSONA_RUN, "--limit", "2", "--json"]) == 1
        assert server.requests == 0  # refused by its tag list before any question was sent
    rows = {m["label"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["gone"]["status"] == "failed" and "no-such-tag" in rows["gone"]["error"]
    assert rows["embedded"]["status"] == "finished" and rows["embedded"]["questions"] == 2


def test_position_and_metrics_load_no_plotting_or_torch(tmp_path):
    """matplotlib loads when a figure is drawn, not for the tables."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, fairpp_app.cli.analysis_commands, fairpp_app.jobs.position_sets, "
            "fairpp_app.jobs.model_specs, fairpp_app.tui.screens.analysis_screen; "
            "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={"PYTHONPATH": str(repo), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

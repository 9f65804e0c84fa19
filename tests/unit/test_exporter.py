"""Exporting a run, and reading every export back into a fresh database unchanged."""

from __future__ import annotations

import itertools
import json
import shutil

import pandas as pd
import pytest

from fairpp_app.cli import main
from fairpp_app.core import questions as qb
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.questions import Question
from fairpp_app.jobs.exporting import export_frame, export_run
from fairpp_app.jobs.importing import import_fairpp
from fairpp_app.store.database import Store

MODEL = "Qwen2.5-7B-Instruct"
# Raw answers pandas would read as missing by default must survive the round trip as text.
RAW_UNPARSED = ["N/A", "None", "I refuse to pick", "NULL", "nan", "A or B? Hard to say"]


@pytest.fixture
def exported_run(store, sample, slugs):
    """A run mixing persona and model answers, probabilities, unparsed text and a scenario."""
    questions = sample(30, seed=21)
    parent = questions[0]
    scenario = Question(
        id=qb.scenario_id(parent.id), kind="scenario", topic=parent.topic,
        category=parent.category, problem=parent.problem, group_type=parent.group_type,
        group_name=parent.group_name, dimension=parent.dimension, framing=parent.framing,
        text="Which of these two stories seems fairer to you?", option_a="Story one.",
        option_b="Story two.", option_c="Neither.", split="scenario", parent_id=parent.id)
    store.upsert_questions([scenario])
    all_questions = questions + [scenario]
    run = store.create_run("mixed", "simulate", backend="llamacpp", model="gemma 3",
                           mode="logprobs")
    rows = []
    raw_texts = itertools.cycle(RAW_UNPARSED)
    for i, q in enumerate(all_questions):
        for j, r in enumerate([slugs[0], slugs[5], MODEL, "other-model"]):
            k = (i + j) % 4
            row = {"run_id": run["id"], "question_id": q.id, "respondent": r,
                   "respondent_kind": "persona" if r in slugs else "model",
                   "method": "logprobs"}
            if k == 3:
                row.update(answer=None, raw_text=next(raw_texts))
            else:
                row.update(answer="ABC"[k], raw_text=f"{'ABC'[k]}.")
            if r in (slugs[5], MODEL):
                p = [0.1 + 0.01 * i, 0.2 + 0.003 * j, 0.0]
                p[2] = 1.0 - p[0] - p[1]
                row.update(p_a=p[0], p_b=p[1], p_c=p[2])
            rows.append(row)
    store.upsert_records(rows)
    return {"store": store, "questions": all_questions, "scenario": scenario}


def snapshot(store: Store, run: str) -> dict:
    run_id = store.get_run(run)["id"]
    out = {}
    for r in store.db.query("SELECT * FROM records WHERE run_id = ?", [run_id]):
        out[(r["question_id"], r["respondent"])] = (
            r["answer"], r["p_a"], r["p_b"], r["p_c"], r["raw_text"])
    return out


@pytest.fixture
def fresh_db(tmp_path, template_db):
    path = tmp_path / "fresh.db"
    shutil.copyfile(template_db, path)
    return path


@pytest.mark.parametrize("fmt, name", [("csv", "out.csv"), ("parquet", "out.parquet")])
def test_round_trip_into_a_fresh_database(exported_run, fresh_db, tmp_path, fmt, name):
    store = exported_run["store"]
    out = tmp_path / name
    n = export_run(store, "mixed", fmt, out, builtin_personas())
    assert n == len(exported_run["questions"])
    assert not list(tmp_path.glob("*.part"))
    with Store(fresh_db) as fresh:
        report = import_fairpp(fresh, out, builtin_personas(), run_name="back")
        assert report.problems == []
        assert report.scenarios == 1 and report.added == 0
        original = snapshot(store, "mixed")
        assert snapshot(fresh, "back") == original
        assert {v[4] for v in original.values() if v[0] is None} == set(RAW_UNPARSED)
        assert sum(v[1] is not None for v in original.values()) == 2 * 31
        s = fresh.get_question(exported_run["scenario"].id)
        assert s == exported_run["scenario"]
        kinds = {(r["respondent"], r["respondent_kind"]) for r in fresh.db.query(
            "SELECT DISTINCT respondent, respondent_kind FROM records")}
        assert kinds == {("progressive-activists", "persona"),
                         ("disengaged-traditionalists", "persona"),
                         (MODEL, "model"), ("other-model", "model")}


def test_round_trip_twice_changes_nothing(exported_run, fresh_db, tmp_path):
    out = tmp_path / "again.csv"
    export_run(exported_run["store"], "mixed", "csv", out, builtin_personas())
    with Store(fresh_db) as fresh:
        import_fairpp(fresh, out, builtin_personas(), run_name="back")
        first = snapshot(fresh, "back"), fresh.record_count(), fresh.question_count()
        out2 = tmp_path / "again2.csv"
        export_run(fresh, "back", "csv", out2, builtin_personas())
        import_fairpp(fresh, out2, builtin_personas(), run_name="back")
        assert (snapshot(fresh, "back"), fresh.record_count(), fresh.question_count()) == first


def test_official_file_import_export_import(store, fresh_db, sample, make_fairpp_frame,
                                            tmp_path):
    frame, _ = make_fairpp_frame(sample(20, seed=22))
    frame.loc[0, "Specific Problem"] = "moon rocks"
    frame.loc[0, "Question"] = "Thinking about how men should obtain moon rocks?"
    src = tmp_path / "official.csv"
    frame.to_csv(src, index=False)
    import_fairpp(store, src, builtin_personas(), run_name="orig")
    out = tmp_path / "export.parquet"
    export_run(store, "orig", "parquet", out, builtin_personas())
    with Store(fresh_db) as fresh:
        report = import_fairpp(fresh, out, builtin_personas(), run_name="orig")
        assert report.added == 20 and report.problems == []
        assert snapshot(fresh, "orig") == snapshot(store, "orig")
        # The official questions come back as they were: same ids, wording and options.
        assert fresh.questions(bank="official") == store.questions(bank="official")
        imported = fresh.questions(where="kind = 'imported'", bank="official")
        assert [q.problem for q in imported] == ["moon rocks"]


def test_export_frame_layout(exported_run, slugs):
    frame = export_frame(exported_run["store"], "mixed", builtin_personas())
    for col in ("question_id", "Topic", "Problem Category", "Specific Problem", "Group Type",
                "Group", "Perspective", "Option", "Question", "Framing", "split",
                "gemma-3_role_1", "gemma-3_role_1_answer", "gemma-3_role_6_answer",
                "gemma-3_role_6_prob_A", f"{MODEL}_answer", f"{MODEL}_raw", f"{MODEL}_prob_C",
                "other-model_answer"):
        assert col in frame.columns, col
    assert "gemma-3_role_1_prob_A" not in frame.columns
    q = exported_run["questions"][1]
    row = frame.set_index("question_id").loc[q.id]
    assert row["Perspective"] == f"{qb.topic_index(q.topic)}.{q.dimension}"
    assert row["Option"] == qb.dimension_poles(q.dimension)[q.framing - 1]
    assert row["Question"] == q.text
    scenario = frame.set_index("question_id").loc[exported_run["scenario"].id]
    assert scenario["Question"] == exported_run["questions"][0].text
    assert scenario["simulation_question"] == exported_run["scenario"].text
    assert set(frame["gemma-3_role_1_answer"].dropna()) <= {0, 1, 2}


def test_jsonl_export(exported_run, tmp_path):
    store = exported_run["store"]
    out = tmp_path / "deep" / "out.jsonl"
    n = export_run(store, "mixed", "jsonl", out, builtin_personas())
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(lines) == n == 31
    snap = snapshot(store, "mixed")
    for line in lines:
        got = line[f"{MODEL}_answer"]
        want = snap[(line["question_id"], MODEL)][0]
        assert got == (None if want is None else "ABC".index(want))


def test_hf_export_loads(exported_run, tmp_path):
    import datasets

    store = exported_run["store"]
    out = tmp_path / "hf"
    n = export_run(store, "mixed", "hf", out, builtin_personas())
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == n == 31
    assert set(ds["question_id"]) == {q.id for q in exported_run["questions"]}
    snap = snapshot(store, "mixed")
    for row in ds:
        want = snap[(row["question_id"], "progressive-activists")]
        assert row["gemma-3_role_1_answer"] == (None if want[0] is None else "ABC".index(want[0]))
        prob = row[f"{MODEL}_prob_A"]
        assert prob == pytest.approx(snap[(row["question_id"], MODEL)][1])
    # Writing again over the same dataset folder is allowed.
    assert export_run(store, "mixed", "hf", out, builtin_personas()) == 31


def test_hf_refuses_a_folder_that_is_not_a_dataset(exported_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me", "utf-8")
    with pytest.raises(UsageError):
        export_run(exported_run["store"], "mixed", "hf", out, builtin_personas())
    assert (out / "precious.txt").read_text("utf-8") == "keep me"


def test_unknown_format(exported_run, tmp_path):
    with pytest.raises(UsageError):
        export_run(exported_run["store"], "mixed", "xlsx", tmp_path / "x.xlsx",
                   builtin_personas())


def test_cli_export(exported_run, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert main(["--db", str(exported_run["store"].path), "export", "--run", "mixed",
                 "--format", "csv", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "wrote 31 questions" in captured.err
    assert len(pd.read_csv(out)) == 31
    assert main(["--db", str(exported_run["store"].path), "export", "--run", "nope",
                 "--format", "csv", "--out", str(tmp_path / "n.csv")]) == 4
    assert not (tmp_path / "n.csv").exists()

"""The headless CLI: JSON on stdout, narration and errors on stderr, meaningful exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairpp_app.cli import main
from fairpp_app.core.personas import builtin_personas
from fairpp_app.store.database import SCHEMA_VERSION, Store

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STATS_KEYS = ("topic", "category", "problem", "group_type", "group", "dimension", "framing",
              "split")


def _run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_stats_json_has_every_count(db_path, capsys):
    stats = _run_json(capsys, ["--db", str(db_path), "questions", "stats", "--json"])
    for key in STATS_KEYS:
        assert isinstance(stats[key], dict) and stats[key], key
    assert stats["total"] == 28_420
    assert len(stats["topic"]) == 5
    assert len(stats["category"]) == 15
    assert len(stats["problem"]) == 98
    assert len(stats["group_type"]) == 6
    assert len(stats["group"]) == 29
    assert stats["dimension"] == {str(d): 5_684 for d in range(1, 6)}
    assert stats["framing"] == {"1": 14_210, "2": 14_210}
    assert stats["split"] == {"test": 5_669, "train": 22_751}
    for key in STATS_KEYS:
        assert sum(stats[key].values()) == 28_420, key


def test_db_option_works_after_the_subcommand(db_path, capsys):
    before = _run_json(capsys, ["--db", str(db_path), "questions", "stats", "--json"])
    after = _run_json(capsys, ["questions", "stats", "--json", "--db", str(db_path)])
    middle = _run_json(capsys, ["questions", "--db", str(db_path), "stats", "--json"])
    assert before == after == middle
    assert after["total"] == 28_420


def test_fairpp_home_decides_the_default_database(isolated_home, capsys):
    info = _run_json(capsys, ["info", "--json"])
    assert Path(info["database"]) == isolated_home / "fairpp.db"
    assert Path(info["data_dir"]) == isolated_home
    assert (isolated_home / "fairpp.db").is_file()
    assert info["schema_version"] == SCHEMA_VERSION
    assert info["personas"] == 7 and info["questions"] == 0


def test_stats_table_goes_to_stdout(db_path, capsys):
    assert main(["--db", str(db_path), "questions", "stats"]) == 0
    captured = capsys.readouterr()
    assert "questions: 28,420" in captured.out
    assert "5,669" in captured.out


def test_show_question(db_path, bank, capsys):
    q = bank[42]
    shown = _run_json(capsys, ["--db", str(db_path), "questions", "show", q.id, "--json"])
    assert shown == q.as_row()


def test_unknown_question_exits_4(db_path, capsys):
    assert main(["--db", str(db_path), "questions", "show", "tnope", "--json"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no question with id tnope" in captured.err
    assert "Traceback" not in captured.err


def test_unknown_run_exits_4_and_names_known_runs(store, capsys):
    store.create_run("present", "import")
    assert main(["--db", str(store.path), "metrics", "--run", "absent", "--json"]) == 4
    err = capsys.readouterr().err
    assert "no run named 'absent'" in err and "present" in err


def test_runs_lists_record_counts(store, bank, capsys):
    run = store.create_run("r1", "import")
    store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": "x",
                           "answer": "A", "method": "test"} for q in bank[:3]])
    runs = _run_json(capsys, ["--db", str(store.path), "runs", "--json"])
    assert [(r["name"], r["records"]) for r in runs] == [("r1", 3)]


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["questions", "frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_installed_script_prints_stats_json(db_path, tmp_path):
    proc = subprocess.run(
        [str(VENV_BIN / "fairpp"), "--db", str(db_path), "questions", "stats", "--json"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["total"] == 28_420
    assert stats["split"] == {"test": 5_669, "train": 22_751}
    assert all(key in stats for key in STATS_KEYS)


def test_module_help_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fairpp_app.cli", "--help"],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: fairpp" in proc.stdout
    for command in ("questions", "personas", "import", "export", "metrics", "weights"):
        assert command in proc.stdout


def test_domain_core_does_not_import_ui_or_torch(tmp_path):
    code = ("import sys, fairpp_app.cli, fairpp_app.cli.bank_commands, fairpp_app.cli.data_commands, "
            "fairpp_app.cli.run_commands, fairpp_app.cli.training_commands, "
            "fairpp_app.cli.system_commands, fairpp_app.jobs.run_metrics, "
            "fairpp_app.jobs.importing, fairpp_app.jobs.exporting, fairpp_app.core.weighting, "
            "fairpp_app.jobs.simulation, "
            "fairpp_app.jobs.scenarios, fairpp_app.backends.registry, fairpp_app.backends.llamacpp; "
            "print(sorted(m for m in ('textual', 'torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_opening_a_path_in_a_missing_folder_creates_it(tmp_path, capsys):
    db = tmp_path / "deep" / "er" / "x.db"
    _run_json(capsys, ["--db", str(db), "info", "--json"])
    with Store(db) as s:
        assert s.version == SCHEMA_VERSION


def test_stats_of_an_empty_bank_says_how_to_build_it(isolated_home, capsys):
    assert main(["questions", "stats"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "questions: 0"
    assert "fairpp questions build" in captured.err


def test_train_start_line_warns_when_most_weight_sits_on_one_letter(capsys):
    from fairpp_app.cli.training_commands import _training_listener
    from fairpp_app.core.events import TrainingStarted

    listen = _training_listener(False, builtin_personas())
    event = dict(training="t", method="wdpo", target="disengaged-traditionalists",
                 base_model="m", device="cpu", questions=600, pairs=1200, total_steps=19,
                 letters={"A": 0.54, "B": 0.0, "C": 0.46})
    listen(TrainingStarted(**event, weighted_letters={"A": 0.2, "B": 0.0, "C": 0.8}))
    err = capsys.readouterr().err
    assert "target's answers A/B/C: 54/0/46%; by weight 20/0/80%" in err
    assert "80% of the weight is on answer C" in err and "--alpha 0.5 --beta 0.5" in err
    listen(TrainingStarted(**event, weighted_letters={"A": 0.33, "B": 0.0, "C": 0.67}))
    assert "of the weight is on answer" not in capsys.readouterr().err
    listen(TrainingStarted(**{**event, "method": "dpo"}))
    err = capsys.readouterr().err
    assert "by weight" not in err and "of the weight" not in err


def test_simulate_planning_more_than_an_hour_says_so_first(store, db_path, capsys):
    """An earlier run of the same backend and model answered at 4 records/s; the whole bank
    at that speed is about 13.8 hours. The server is a closed loopback port, so the run stops
    at its first request, after the estimate."""
    run = store.create_run("earlier", "simulation", backend="openai", model="m", mode="logprob",
                           status="finished")
    store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": "civic-pragmatists",
                           "answer": "A", "p_a": 0.8, "p_b": 0.1, "p_c": 0.1, "method": "logprob",
                           "latency_ms": 250.0} for q in store.questions("test", limit=30)])
    code = main(["--db", str(db_path), "simulate", "--backend", "openai", "--model", "m",
                 "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    first = err.strip().splitlines()[0]
    assert "this run plans 198,940 records, about 13.8 h at 4.0 records/s" in first

"""The simulation engine on the real embedded model: resume after kill -9, refusals, parsing.

These tests start real processes and a real llama.cpp model; they are marked ``model``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairpp_app.core import answers
from fairpp_app.core.errors import PermanentBackendError, UsageError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.jobs.simulation import run_simulation
from fairpp_app.store.database import Store

pytestmark = pytest.mark.model
FAIRPP = [sys.executable, "-m", "fairpp_app.cli"]


def _count(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*), count(DISTINCT question_id || '|' || respondent || '|' || run_id) "
            "FROM records").fetchone()
    finally:
        conn.close()


def test_kill_9_mid_run_then_resume_gives_350_records(db_path, isolated_home):
    """`fairpp simulate --limit 50 --personas all --split test`, killed with SIGKILL part way,
    then rerun: exactly 350 records, no duplicates, probabilities summing to 1, metrics read them.
    On the way: a second process on the live run is refused with the first's pid, and the
    killed run reads as interrupted."""
    env = {**os.environ, "FAIRPP_HOME": str(isolated_home)}
    cmd = FAIRPP + ["--db", str(db_path), "simulate", "--limit", "50", "--personas", "all",
                    "--split", "test", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen = _count(db_path)[0]
        except sqlite3.OperationalError:
            seen = 0  # tables busy while the run is created
        if seen >= 40:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()
    # A second process on the same run is refused while the first lives, naming its pid.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert f"pid {proc.pid}" in second.stderr and "Traceback" not in second.stderr
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial, distinct = _count(db_path)
    assert 40 <= partial < 350 and partial == distinct
    # Nobody saw it end: the next look at the runs calls it interrupted, not running.
    runs = subprocess.run(FAIRPP + ["--db", str(db_path), "runs", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert [r["status"] for r in json.loads(runs.stdout)] == ["interrupted"]

    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    total, distinct = _count(db_path)
    assert total == distinct == 350
    assert f"{partial} records already done" in done.stderr

    with Store(db_path) as store:
        sums = [r[0] for r in store.db.execute("SELECT p_a + p_b + p_c FROM records")]
        assert all(abs(s - 1) < 1e-6 for s in sums)
        run = store.list_runs()[0]
        assert run["status"] == "finished" and run["records"] == 350
        result = run_metrics(store, run["name"], builtin_personas(), "test")
    assert len(result["similarity"]) == 7
    assert all(sum(c[k] for k in "ABC") == 50 for c in result["counts"].values())

    metrics = subprocess.run(FAIRPP + ["--db", str(db_path), "metrics", "--run", run["name"],
                                       "--json"], env=env, capture_output=True, text=True)
    assert metrics.returncode == 0 and '"similarity"' in metrics.stdout


def test_prompt_template_change_is_refused(store, monkeypatch):
    personas = builtin_personas()
    cfg = dict(split="test", limit=1, personas="6", run="r1")
    assert run_simulation(store, SimulationConfig(**cfg), personas).status == "finished"
    with pytest.raises(UsageError, match="different prompt template"):
        run_simulation(store, SimulationConfig(**cfg, calibrate=True), personas)
    from fairpp_app.core import prompts

    monkeypatch.setitem(prompts.TEMPLATE, "instruction", "Answer with A, B or C.")
    with pytest.raises(UsageError, match="different prompt template"):
        run_simulation(store, SimulationConfig(**cfg), personas)
    assert store.record_count() == 1


def test_text_mode_keeps_raw_text_and_never_turns_failures_into_c(store):
    personas = builtin_personas()
    out = run_simulation(store, SimulationConfig(split="test", limit=4, personas="1,6",
                                                 mode="text", max_tokens=6), personas)
    assert out.status == "finished" and out.done == 8
    rows = list(store.db.query("SELECT raw_text, answer, method FROM records"))
    assert all(r["method"] == "text" and r["raw_text"] is not None for r in rows)
    for r in rows:
        assert r["answer"] == answers.parse_letter(r["raw_text"])
    assert out.unparsed == sum(r["answer"] is None for r in rows)


def test_debias_permute_averages_both_orders(store):
    personas = builtin_personas()
    plain = run_simulation(store, SimulationConfig(split="test", limit=3, personas="3", run="p"), personas)
    perm = run_simulation(store, SimulationConfig(split="test", limit=3, personas="3", run="q",
                                                  debias="permute"), personas)
    assert plain.done == perm.done == 3
    rows = {r["question_id"]: r for r in store.db.query(
        "SELECT question_id, p_a, p_b, p_c, method FROM records WHERE run_id = "
        "(SELECT id FROM runs WHERE name = 'q')")}
    assert {r["method"] for r in rows.values()} == {"logprob+permute"}
    assert all(abs(r["p_a"] + r["p_b"] + r["p_c"] - 1) < 1e-9 for r in rows.values())
    run = store.get_run("q")
    assert run["params"]["debias"] == "permute"


def test_unknown_model_for_embedded_is_a_clear_permanent_error(store):
    with pytest.raises(PermanentBackendError, match="only runs its own model"):
        run_simulation(store, SimulationConfig(model="llama-70b", limit=1), builtin_personas())


def test_cli_reports_missing_gguf_without_traceback(db_path, tmp_path):
    res = subprocess.run(FAIRPP + ["--db", str(db_path), "simulate", "--backend", "llamacpp",
                                   "--model", str(tmp_path / "nope.gguf"), "--limit", "1"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "GGUF model file not found" in res.stderr and "Traceback" not in res.stderr


def test_unknown_persona_and_backend_are_usage_errors(db_path):
    for args, needle in ((["--personas", "9"], "unknown persona '9'"),
                         (["--backend", "nosuch"], "unknown backend 'nosuch'")):
        res = subprocess.run(FAIRPP + ["--db", str(db_path), "simulate", "--limit", "1", *args],
                             capture_output=True, text=True)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr


def test_model_respondent_is_stored_as_model(store):
    out = run_simulation(store, SimulationConfig(split="test", limit=2, respondent="model"),
                         builtin_personas())
    assert out.done == 2
    rows = list(store.db.query("SELECT respondent, respondent_kind FROM records"))
    assert {(r["respondent"], r["respondent_kind"]) for r in rows} == {("gemma-3-270m", "model")}

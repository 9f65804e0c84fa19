"""Supervised jobs: a simulation in a child process, paused, killed and resumed for real;
the heartbeat that ticks on its own; the warning a CLI job prints beside another.

The child is the real ``fairpp simulate`` command on the embedded model, started the way the
app starts it (``jobs.supervisor.start``); the tests look at it only through the database,
the ``fairpp jobs`` command and the log file, as a second process would. The "other job"
beside a CLI command is a run or training this test process claims for real: the test is
its living owner.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs import supervisor
from fairpp_app.jobs.heartbeat import Heartbeat
from fairpp_app.store.database import Store
from tests.support.jobs import wait_until

FAIRPP = [sys.executable, "-m", "fairpp_app.cli"]
RUN = "job-run"
TOTAL = 20 * 7  # --limit 20, all seven personas


def _records(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*), count(DISTINCT question_id || '|' || respondent) FROM records").fetchone()
    except sqlite3.OperationalError:
        return 0, 0  # the tables are being created
    finally:
        conn.close()


def _wait_for_records(db: Path, job: supervisor.Job, at_least: int) -> int:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        seen = _records(db)[0]
        if seen >= at_least:
            return seen
        assert job.running(), supervisor.log_tail(job.log())
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} records after 240 s")


def _status(db: Path) -> str:
    with Store(db) as store:
        return store.get_run(RUN)["status"]


def _fairpp(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(FAIRPP + ["--db", str(db), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.model
def test_a_child_job_pauses_crashes_and_resumes_with_exact_counts(db_path, monkeypatch):
    monkeypatch.setenv("FAIRPP_TEST_KEY", "sk-secret-that-must-not-be-logged")
    config = SimulationConfig(run=RUN, split="test", limit=20, api_key_env="FAIRPP_TEST_KEY")
    argv = ["simulate", "--config-json", json.dumps(asdict(config))]

    # 1. Started as the app starts it; `fairpp jobs` sees it, with the child's pid.
    job = supervisor.start("simulate", argv, db_path)
    _wait_for_records(db_path, job, 14)
    listed = json.loads(_fairpp(db_path, "jobs", "--json").stdout)
    assert [(j["run"], j["pid"]) for j in listed] == [(RUN, job.pid)]
    assert listed[0]["total"] == TOTAL

    # 2. Paused from another process: the child writes what is in flight and ends the run paused.
    stopped = _fairpp(db_path, "jobs", "stop", RUN, "--pause")
    assert stopped.returncode == 0, stopped.stderr
    end = job.wait(timeout=120)
    assert (end.signal, end.crashed, end.run) == (None, False, RUN) and _status(db_path) == "paused"
    paused, distinct = _records(db_path)
    assert 14 <= paused < TOTAL and paused == distinct

    # 3. Resumed in a new child, then killed the way the OOM killer kills: crashed (SIGKILL).
    job = supervisor.start("simulate", argv, db_path)
    _wait_for_records(db_path, job, paused + 14)
    os.kill(job.pid, signal.SIGKILL)
    end = job.wait(timeout=60)
    assert end.signal == "SIGKILL" and end.crashed
    assert _status(db_path) == "crashed"
    with Store(db_path) as store:
        crash = [e for e in store.events(run_id=store.get_run(RUN)["id"]) if e["kind"] == "run_crashed"]
    assert [c["payload"]["signal"] for c in crash] == ["SIGKILL"]
    killed, distinct = _records(db_path)
    assert paused < killed < TOTAL and killed == distinct
    assert json.loads(_fairpp(db_path, "jobs", "--json").stdout) == []

    # 4. Resumed again: exactly the planned records, none twice, and the run finished.
    job = supervisor.start("simulate", argv, db_path)
    end = job.wait(timeout=300)
    assert end.exit_code == 0, end.log_tail
    assert _records(db_path) == (TOTAL, TOTAL) and _status(db_path) == "finished"

    # The log holds the three children's narration and never the key.
    log = _fairpp(db_path, "jobs", "log", RUN)
    assert log.returncode == 0 and log.stdout.count("==> fairpp simulate") == 3
    assert f"{killed} records already done" in log.stdout
    assert "sk-secret" not in supervisor.log_path(RUN).read_text()


def test_jobs_commands_say_what_is_missing(db_path):
    assert _fairpp(db_path, "jobs").stderr.strip() == "no job is running"
    stop = _fairpp(db_path, "jobs", "stop", "nothing")
    assert stop.returncode == 4 and "no job is working on 'nothing'" in stop.stderr
    log = _fairpp(db_path, "jobs", "log", "nothing")
    assert log.returncode == 4 and "no log for 'nothing'" in log.stderr


def _claimed(store: Store) -> tuple[dict, dict]:
    """A simulation run and a training this process owns and works on ``running``."""
    run = store.create_run("busy-sim", "simulation", backend="embedded", model="m",
                           mode="logprob", status="created")
    training = store.create_training("busy-train", "wdpo", "disengaged-traditionalists", "m",
                                     "busy-sim", {"config": {}}, status="created")
    store.claim_run(run["id"])
    store.claim_training(training["id"])
    return run, training


def test_the_heartbeat_ticks_on_its_own_for_a_run_and_a_training(db_path):
    with Store(db_path) as store:
        run, training = _claimed(store)

        def beats() -> tuple[float, float]:
            return (store.get_run("busy-sim")["heartbeat"],
                    store.get_training("busy-train")["heartbeat"])

        first = beats()
        # This process does nothing else meanwhile: only the heartbeat's thread writes.
        with Heartbeat(db_path, every_s=0.05):
            wait_until(lambda: all(b > f for b, f in zip(beats(), first, strict=True)),
                       "both heartbeats advance", timeout=30)
            store.release_run(run["id"], "paused")
            paused = store.get_run("busy-sim")["heartbeat"]
            later = beats()[1]
            wait_until(lambda: beats()[1] > later, "the training's next beat", timeout=30)
        # A released run is no longer this process's work: its heartbeat stays put.
        assert store.get_run("busy-sim")["heartbeat"] == paused


def test_a_bad_heartbeat_setting_is_refused(db_path, monkeypatch):
    monkeypatch.setenv("FAIRPP_HEARTBEAT_S", "soon")
    result = _fairpp(db_path, "train", "--resume", "nothing")
    assert result.returncode == 2 and "$FAIRPP_HEARTBEAT_S must be a positive number" in result.stderr


def test_cli_jobs_beside_a_live_job_warn_naming_it(db_path):
    """``fairpp train`` beside a running simulation and ``fairpp simulate`` beside a running
    training both name the other job; each then goes on (and here fails for its own reason)."""
    with Store(db_path) as store:
        run, training = _claimed(store)
        me = os.getpid()
        train = _fairpp(db_path, "train", "--resume", "no-such-training")
        assert f"warning: another job is running: simulation 'busy-sim' (pid {me})" in train.stderr
        assert f"training 'busy-train' (pid {me})" in train.stderr
        assert train.returncode == 4 and "Traceback" not in train.stderr  # then its own error

        store.release_run(run["id"], "paused")
        simulate = _fairpp(db_path, "simulate", "--backend", "llamacpp", "--limit", "1")
        assert f"warning: another job is running: training 'busy-train' (pid {me})" in simulate.stderr
        assert "busy-sim" not in simulate.stderr and "needs --model PATH" in simulate.stderr

        store.update_training(training["id"], status="paused")
        quiet = _fairpp(db_path, "simulate", "--backend", "llamacpp", "--limit", "1")
        assert "warning" not in quiet.stderr

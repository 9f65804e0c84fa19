"""Supervised trainings: ``fairpp train`` as a child process, paused, cancelled, killed and
crashed for real, then resumed to the exact step count.

The child is the real command on the tiny random model, started the way the app starts it
(``jobs.supervisor.start("train", ["train", "--config-json", ...])``); the tests look at it
through the database, ``fairpp jobs`` and the log file, as a second process would.
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

from fairpp_app.jobs import supervisor
from fairpp_app.store.database import Store
from tests.support.jobs import training_argv
from tests.support.training_data import PERSONA_RUN


@pytest.fixture
def trained_db(persona_store, db_path) -> Path:
    """The persona run's database. The fixture's connection stays open, as the app's Store
    does while it opens others to settle its children (see ``migrations.check_file``)."""
    return db_path


FAIRPP = [sys.executable, "-m", "fairpp_app.cli"]
STEPS = 300  # about 30 ms a step here: long enough for another process to reach it
SAVE_EVERY = 10


def _argv(tiny_dir: Path, name: str, steps: int = STEPS) -> list[str]:
    return training_argv(method="wsft", from_run=PERSONA_RUN, base=str(tiny_dir), name=name,
                         device="cpu", batch_size=2, grad_accum=1, max_steps=steps,
                         save_every=SAVE_EVERY, eval_every=0)


def _steps(db: Path, name: str) -> list[int]:
    """The train_step events of training ``name``, read the way a second process would."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT e.payload FROM events e JOIN trainings t ON e.training_id = t.id "
            "WHERE t.name = ? AND e.kind = 'train_step' ORDER BY e.id", [name]).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [json.loads(r[0])["step"] for r in rows]


def _wait_for_step(db: Path, job: supervisor.Job, name: str, at_least: int) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = _steps(db, name)
        if seen and seen[-1] >= at_least:
            return seen[-1]
        assert job.running(), supervisor.log_tail(job.log())
        time.sleep(0.1)
    raise AssertionError(f"no step {at_least} after 180 s")


def _training(db: Path, name: str) -> dict:
    with Store(db) as store:
        row = store.get_training(name)
        row["events"] = store.events(training_id=row["id"])
        return row


def _fairpp(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(FAIRPP + ["--db", str(db), *args], capture_output=True, text=True,
                          timeout=300)


def _resume_to_the_end(db: Path, name: str, before: int) -> None:
    """Resume in a new child: it starts at a checkpoint and steps on one by one to STEPS."""
    last_event = _training(db, name)["events"][-1]["id"]
    job = supervisor.start("train", ["train", "--resume", name, "--quiet"], db)
    end = job.wait(timeout=300)
    assert end.exit_code == 0, end.log_tail
    row = _training(db, name)
    assert row["status"] == "finished"
    after = [e for e in row["events"] if e["id"] > last_event]
    started = after[0]["payload"]
    assert after[0]["kind"] == "train_started"
    assert started["start_step"] % SAVE_EVERY == 0 and 0 < started["start_step"] <= before
    resumed = [e["payload"]["step"] for e in after if e["kind"] == "train_step"]
    assert resumed == list(range(started["start_step"] + 1, STEPS + 1))
    assert after[-1]["kind"] == "train_ended" and after[-1]["payload"]["step"] == STEPS


def test_a_supervised_training_killed_by_sigkill_is_crashed_and_resumes_exactly(
        trained_db, tiny_dir):
    name = "child-killed"
    job = supervisor.start("train", _argv(tiny_dir, name), trained_db)
    _wait_for_step(trained_db, job, name, SAVE_EVERY + 1)

    # `fairpp jobs` sees it as a training, with the child's pid and its step/total.
    listed = json.loads(_fairpp(trained_db, "jobs", "--json").stdout)
    assert [(j["run"], j["kind"], j["pid"], j["total"]) for j in listed] == [
        (name, "training", job.pid, STEPS)]
    assert listed[0]["step"] >= SAVE_EVERY + 1

    os.kill(job.pid, signal.SIGKILL)
    end = job.wait(timeout=60)
    row = _training(trained_db, name)
    assert (end.signal, end.crashed, end.run) == ("SIGKILL", True, name), (row["status"], row["events"][-3:])
    assert row["status"] == "crashed"
    crashes = [e["payload"] for e in row["events"] if e["kind"] == "run_crashed"]
    assert [(c["run"], c["signal"]) for c in crashes] == [(name, "SIGKILL")]
    assert json.loads(_fairpp(trained_db, "jobs", "--json").stdout) == []
    killed_at = max(_steps(trained_db, name))
    assert killed_at < STEPS

    _resume_to_the_end(trained_db, name, killed_at)
    log = _fairpp(trained_db, "jobs", "log", name)
    assert log.returncode == 0 and log.stdout.count("==> fairpp train") == 2


def test_a_signal_in_the_training_step_is_crashed_with_its_name(trained_db, tiny_dir, monkeypatch):
    name = "child-segv"
    monkeypatch.setenv("FAIRPP_TEST_CRASH", "training-step:SIGSEGV:3")
    job = supervisor.start("train", _argv(tiny_dir, name), trained_db)
    end = job.wait(timeout=180)
    assert (end.signal, end.crashed, end.run) == ("SIGSEGV", True, name)
    row = _training(trained_db, name)
    assert row["status"] == "crashed"
    crash = [e["payload"] for e in row["events"] if e["kind"] == "run_crashed"]
    assert [c["signal"] for c in crash] == ["SIGSEGV"] and crash[0]["stderr_tail"]
    assert _steps(trained_db, name) == [1, 2]  # the third step died before its event


def test_pause_and_cancel_reach_the_child_and_a_paused_training_resumes(
        trained_db, tiny_dir):
    name = "child-paused"
    job = supervisor.start("train", _argv(tiny_dir, name), trained_db)
    _wait_for_step(trained_db, job, name, 2)
    stopped = _fairpp(trained_db, "jobs", "stop", name, "--pause")
    assert stopped.returncode == 0, stopped.stderr
    end = job.wait(timeout=120)
    assert (end.exit_code, end.crashed) == (130, False), end.log_tail
    row = _training(trained_db, name)
    paused_at = _steps(trained_db, name)[-1]
    assert row["status"] == "paused" and paused_at < STEPS
    ended = row["events"][-1]
    assert ended["kind"] == "train_ended" and ended["payload"]["status"] == "paused"
    assert ended["payload"]["step"] == paused_at

    # A pause saves a checkpoint at the step it stopped on: the resume starts right there.
    last_event = row["events"][-1]["id"]
    job = supervisor.start("train", ["train", "--resume", name, "--quiet"], trained_db)
    _wait_for_step(trained_db, job, name, paused_at + 2)
    job.stop("cancel")
    end = job.wait(timeout=120)
    assert (end.exit_code, end.crashed) == (130, False), end.log_tail
    row = _training(trained_db, name)
    assert row["status"] == "cancelled"
    after = [e for e in row["events"] if e["id"] > last_event]
    assert after[0]["payload"]["start_step"] == paused_at
    assert after[-1]["payload"]["status"] == "cancelled"


def test_a_second_resume_of_a_live_training_is_refused_naming_the_first(
        trained_db, tiny_dir):
    name = "child-owned"
    # A first training that stops after a checkpoint, then a resume of it that keeps working.
    job = supervisor.start("train", _argv(tiny_dir, name), trained_db)
    _wait_for_step(trained_db, job, name, 2)
    job.stop("pause")
    job.wait(timeout=120)
    job = supervisor.start("train", ["train", "--resume", name, "--quiet"], trained_db)
    try:
        deadline = time.monotonic() + 120
        while _training(trained_db, name)["status"] != "running":
            assert job.running() and time.monotonic() < deadline, supervisor.log_tail(job.log())
            time.sleep(0.05)
        second = _fairpp(trained_db, "train", "--resume", name)
        assert second.returncode != 0
        assert f"pid {job.pid}" in second.stderr and "Traceback" not in second.stderr
        assert _training(trained_db, name)["status"] == "running"  # the refused one ended nothing
    finally:
        job.stop("cancel")
        end = job.wait(timeout=120)
    assert end.exit_code == 130 and _training(trained_db, name)["status"] == "cancelled"

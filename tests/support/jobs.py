"""Starting a supervised child the way the app does, and waiting on it from a test.

The Simulate, Train and reliability tests start real ``fairpp simulate`` / ``fairpp train``
children outside the screens (a job another process left running, one to adopt, one to
kill); they all build the config the same way and wait on a condition with a deadline,
never a fixed sleep.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path

from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs import supervisor
from fairpp_app.training.config import TrainingConfig

DEADLINE_S = 180.0


def simulation_argv(**fields) -> list[str]:
    """``fairpp simulate`` on a whole SimulationConfig (defaults, then ``fields``)."""
    config = SimulationConfig(**fields)
    return ["simulate", "--config-json", json.dumps(dataclasses.asdict(config)), "--quiet"]


def training_argv(**fields) -> list[str]:
    """``fairpp train`` on a whole TrainingConfig (defaults, then ``fields``)."""
    config = TrainingConfig(**fields)
    return ["train", "--config-json", json.dumps(config.as_json()), "--quiet"]


def start_simulation(db: Path, **fields) -> supervisor.Job:
    return supervisor.start("simulate", simulation_argv(**fields), db)


def start_training(db: Path, **fields) -> supervisor.Job:
    return supervisor.start("train", training_argv(**fields), db)


def wait_until(condition, what: str, timeout: float = DEADLINE_S, job=None) -> None:
    """Block until ``condition()`` holds; fail after ``timeout`` seconds, or at once with its
    log's last lines when ``job`` (a child the condition waits on) has ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        if job is not None and not job.running():
            raise AssertionError(f"the child ended before {what}: {supervisor.log_tail(job.log())}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def end_child(job: supervisor.Job, timeout: float = 120.0) -> None:
    """Cancel a child a test leaves running (a failed assertion) and wait for it."""
    if job.running():
        job.stop("cancel")
    job.wait(timeout=timeout)


def kill_when(proc, condition, what: str, timeout: float) -> None:
    """SIGKILL ``proc`` (a ``subprocess.Popen`` with piped stderr) as soon as ``condition()``
    holds, the way the OOM killer would end it; fail with its stderr if it ends first, or
    after ``timeout`` seconds with ``what`` never seen."""
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

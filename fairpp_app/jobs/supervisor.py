"""Long work as a child process the app supervises: a native crash becomes a status.

llama.cpp, torch and mlx are native code; a fault in them (SIGILL, SIGSEGV, the kernel's OOM
killer's SIGKILL) ends the process that runs them. So the terminal app never runs an engine
itself: it starts the same ``fairpp`` command line a user would type, as a child in its own
process session (closing the terminal or an SSH drop does not reach it), with the child's
stdout and stderr going to a log file in the data directory. The child owns its run (or, for
``fairpp train``, its training) in the database as any CLI process does (owner pid,
heartbeat; see ``Store.claim_run``), writes its records and events there, and ends it
itself: finished, paused, cancelled, stopped or failed. When the supervisor sees the child
die without having ended it, the run or training becomes ``crashed`` with the signal's name
or the exit code and the last lines of the log.

Stopping goes through signals, so it works from any process that can see the pid (a second
app, ``fairpp jobs stop``): SIGUSR1 asks for a pause, SIGTERM (or SIGINT) for a cancel; either
way the records in flight (a training: the current step, then a checkpoint) are written
before the child exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core.child import signal_name, spawn
from fairpp_app.core.events import RunCrashed
from fairpp_app.core.paths import logs_dir
from fairpp_app.store.database import Store

PAUSE_SIGNAL = signal.SIGUSR1
CANCEL_SIGNAL = signal.SIGTERM
LOG_TAIL_LINES = 12
#: The kinds of job whose child owns a training rather than a run.
TRAINING_KINDS = ("train",)
#: Set in a supervised child: the log file its stdout and stderr go to until it knows its run.
JOB_LOG_ENV = "FAIRPP_JOB_LOG"


def log_path(name: str) -> Path:
    """The log file of the jobs that worked on run (or training) ``name``; each appends."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return logs_dir() / f"{safe}.log"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = path.read_bytes()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def adopt_log(run_name: str) -> None:
    """In a supervised child, once its run is known: move its output to the run's log.

    The child starts writing to a log of its own (its run may not have a name before the
    backend has loaded: the default name includes the model's). From here on its stdout and
    stderr append to ``log_path(run_name)``, so every job that worked on a run, paused,
    crashed or resumed, leaves its lines in one file. Does nothing outside a supervised child.
    """
    pending = Path(os.environ.get(JOB_LOG_ENV, ""))
    if not pending.name or not pending.is_file():
        return
    target = log_path(run_name)
    if target == pending:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with open(target, "ab") as out:
        out.write(pending.read_bytes())
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    pending.unlink(missing_ok=True)
    os.environ[JOB_LOG_ENV] = str(target)


@dataclass
class JobEnd:
    """How a child ended: its exit code or signal, its run, and the last lines of its log."""

    exit_code: int | None
    signal: str | None
    run: str | None = None
    log_tail: list[str] = field(default_factory=list)
    crashed: bool = False  # the supervisor marked the run crashed

    def describe(self) -> str:
        if self.signal:
            return f"died by {self.signal}"
        return "exited normally" if self.exit_code == 0 else f"exited with code {self.exit_code}"


@dataclass
class Job:
    """A child working on one run, as seen by the process that started it."""

    kind: str
    db: Path
    pending_log: Path
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def trains(self) -> bool:
        """Whether this child owns a training (``fairpp train``) rather than a run."""
        return self.kind in TRAINING_KINDS

    def run(self) -> dict | None:
        """The run (or training) this child works on, once it has claimed it (None before)."""
        with Store(self.db) as store:
            return self._owned(store)

    def _owned(self, store: Store) -> dict | None:
        owned_by = store.training_owned_by if self.trains else store.run_owned_by
        return owned_by(self.pid, socket.gethostname())

    def log(self) -> Path:
        """Where the child's output is now: its run's log once it has adopted it."""
        if self.pending_log.is_file():
            return self.pending_log
        run = self.run()
        return log_path(run["name"]) if run else self.pending_log

    def stop(self, how: str) -> None:
        request_stop(self.pid, how)

    def wait_while(self, keep_waiting: Callable[[], bool], poll_s: float = 0.5) -> JobEnd | None:
        """``wait()`` in steps of ``poll_s``; None once ``keep_waiting()`` says stop (a screen's
        worker cancelled because the app quits and leaves the child running)."""
        while True:
            try:
                return self.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                if not keep_waiting():
                    return None

    def wait(self, timeout: float | None = None) -> JobEnd:
        """Block until the child ends, then settle its run or training (see the module doc)."""
        code = self.process.wait(timeout)
        end = JobEnd(exit_code=code if code >= 0 else None,
                     signal=signal_name(-code) if code < 0 else None)
        with Store(self.db) as store:
            row = self._owned(store)
            end.run = row["name"] if row else None
            end.log_tail = log_tail(self.log())
            if row is not None and code != 0:
                crash = RunCrashed(row["name"], end.signal, end.exit_code, end.log_tail)
                settle = store.settle_training if self.trains else store.settle_run
                end.crashed = settle(row["id"], crash)
        return end


def start(kind: str, argv: list[str], db: Path) -> Job:
    """Start ``fairpp --db DB ARGV...`` as a supervised child (see the module doc)."""
    logs_dir().mkdir(parents=True, exist_ok=True)
    pending = logs_dir() / f"pending-{kind}-{time.time_ns()}.log"
    cmd = [sys.executable, "-m", "fairpp_app.cli", "--db", str(db), *argv]
    with open(pending, "ab") as out:
        out.write(f"==> fairpp {' '.join(argv)}\n".encode())
        out.flush()
        process = spawn(cmd, stdout=out, stderr=out,
                        env={JOB_LOG_ENV: str(pending), "PYTHONUNBUFFERED": "1"})
    return Job(kind, Path(db), pending, process)


@dataclass
class LiveJob:
    """An engine job a living process works on now: a run (a simulation, an evaluation,
    scenarios) or a training, whoever started it (this app, another, a terminal)."""

    kind: str  # the run's kind, or "training"
    name: str
    pid: int
    host: str

    def describe(self) -> str:
        return f"{self.kind} '{self.name}' (pid {self.pid})"


def live_jobs(store: Store, host: str | None = None) -> list[LiveJob]:
    """The one answer to "which engine jobs run now": every run and training whose owner
    lives (the store reaps the rest), on ``host`` only when given. The app's queue and the
    CLI's warning both ask here, so a training counts wherever a simulation does."""
    found = [LiveJob(run["kind"], run["name"], int(run["owner"]["pid"]), run["owner"].get("host"))
             for run in store.live_runs()]
    found += [LiveJob("training", row["name"], int(row["owner"]["pid"]), row["owner"].get("host"))
              for row in store.live_trainings()]
    return [job for job in found if host is None or job.host == host]


def request_stop(pid: int, how: str) -> None:
    """Ask the process working on a run to pause or cancel; it writes what is in flight first."""
    sig = {"pause": PAUSE_SIGNAL, "cancel": CANCEL_SIGNAL}[how]
    os.kill(pid, sig)

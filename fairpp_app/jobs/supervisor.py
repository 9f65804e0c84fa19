"""Long work as a child process the app supervises: a native crash becomes a status.

llama.cpp, torch and mlx are native code; a fault in them (SIGILL, SIGSEGV, the kernel's OOM
killer's SIGKILL) ends the process that runs them. So the terminal app never runs an engine
itself: it starts the same ``fairpp`` command line a user would type, as a child in its own
process session (closing the terminal or an SSH drop does not reach it), with the child's
stdout and stderr going to a log file in the data directory. The child owns its run in the
database as any CLI process does (owner pid, heartbeat; see ``Store.claim_run``), writes its
records and events there, and ends the run itself: finished, paused, cancelled, stopped or
failed. When the supervisor sees the child die without having ended its run, the run becomes
``crashed`` with the signal's name or the exit code and the last lines of the log.

Stopping goes through signals, so it works from any process that can see the pid (a second
app, ``fairpp jobs stop``): SIGUSR1 asks for a pause, SIGTERM (or SIGINT) for a cancel; either
way the records in flight are written before the child exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core.child import signal_name
from fairpp_app.core.events import RunCrashed
from fairpp_app.core.paths import logs_dir
from fairpp_app.store.database import Store

PAUSE_SIGNAL = signal.SIGUSR1
CANCEL_SIGNAL = signal.SIGTERM
LOG_TAIL_LINES = 12


def log_path(name: str) -> Path:
    """The log file of the job working on run (or training) ``name``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return logs_dir() / f"{safe}.log"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = path.read_bytes()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@dataclass
class JobEnd:
    """How a child ended: its exit code or signal, and the last lines of its log."""

    exit_code: int | None
    signal: str | None
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
    name: str
    db: Path
    log: Path
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> JobEnd:
        """Block until the child ends, then settle its run (see module doc)."""
        code = self.process.wait(timeout)
        end = JobEnd(exit_code=code if code >= 0 else None,
                     signal=signal_name(-code) if code < 0 else None, log_tail=log_tail(self.log))
        if code != 0:
            end.crashed = settle(self.db, self.name, end)
        return end


def start(kind: str, name: str, argv: list[str], db: Path) -> Job:
    """Start ``fairpp --db DB ARGV...`` for run ``name`` as a supervised child."""
    log = log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fairpp_app.cli", "--db", str(db), *argv]
    with open(log, "ab") as out:
        out.write(f"==> fairpp {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Job(kind, name, Path(db), log, process)


def settle(db: Path, name: str, end: JobEnd) -> bool:
    """Mark run ``name`` crashed when its child died leaving it running; whether it did."""
    with Store(db) as store:
        run = store.find_run(name)
        if run is None:
            return False
        crash = RunCrashed(name, end.signal, end.exit_code, end.log_tail)
        return store.settle_run(run["id"], crash)


def request_stop(pid: int, how: str) -> None:
    """Ask the process working on a run to pause or cancel; it writes what is in flight first."""
    sig = {"pause": PAUSE_SIGNAL, "cancel": CANCEL_SIGNAL}[how]
    os.kill(pid, sig)

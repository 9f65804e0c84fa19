"""A heartbeat that ticks on its own in the process that owns a run or a training.

The owner of a run refreshes its heartbeat as records land and a training's owner as steps
end, but a long model load, a slow first batch or a backend that keeps a request waiting
writes nothing for minutes, and a reader on another host would take the owner for dead
(``ownership.STALE_S``). So every command that owns work (``fairpp simulate``, ``train``,
``evaluate``, ``scenarios``; the app's children are these commands) runs a daemon thread
for as long as it works: every ``interval()`` seconds it refreshes the heartbeat of the run
and the training this process owns and that are still ``running``. It asks the store by
pid, so it needs no word from the work about which run that is, and it stops mattering the
moment the work releases its run. It writes through a connection of its own: the owner's
connection may be inside a transaction of its thread.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import threading
from pathlib import Path

from fairpp_app.core.errors import FairppError, UsageError
from fairpp_app.store.database import Store

#: Seconds between beats; well inside ``ownership.STALE_S``.
HEARTBEAT_S = 10.0
HEARTBEAT_ENV = "FAIRPP_HEARTBEAT_S"


def interval() -> float:
    """Seconds between beats: ``$FAIRPP_HEARTBEAT_S`` (tests make it short) or the default."""
    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not text:
        return HEARTBEAT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"${HEARTBEAT_ENV} must be a positive number of seconds, got {text!r}")
    return value


def beat(store: Store) -> int:
    """Refresh the heartbeat of what this process owns and works on now; how many rows."""
    pid, host = os.getpid(), socket.gethostname()
    beaten = 0
    run = store.run_owned_by(pid, host)
    if run is not None and run["status"] == "running":
        store.heartbeat(run["id"])
        beaten += 1
    training = store.training_owned_by(pid, host)
    if training is not None and training["status"] == "running":
        store.heartbeat_training(training["id"])
        beaten += 1
    return beaten


class Heartbeat:
    """``with Heartbeat(db):`` beats every ``every_s`` seconds until the block ends."""

    def __init__(self, db: Path | str, every_s: float | None = None) -> None:
        self.db = Path(db)
        self.every_s = interval() if every_s is None else every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fairpp-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with Store(self.db) as store:
            while not self._stop.wait(self.every_s):
                try:
                    beat(store)
                except (sqlite3.Error, FairppError) as exc:
                    # A missed beat costs nothing (the next one comes); ending the work for
                    # it would. The log says why the heartbeat lagged.
                    print(f"fairpp: heartbeat not written: {exc}", file=sys.stderr)

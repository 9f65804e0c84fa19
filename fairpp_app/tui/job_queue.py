"""One heavy job at a time (or ``max_jobs``): the app's queue of jobs waiting to start.

An engine job (a simulation, a training) keeps every core busy, and two of them share the
cores and slow each other down (``bench/contention.py`` measures by how much). So a screen
asked to start one while ``max_jobs`` (see
``core.user_config.max_jobs``; 1 unless the user raised it) are running already puts it
here, and starts it when one of those ends, however it ends (finished, paused, cancelled,
crashed): each screen's poll starts the queue's head when it is of its kind, so jobs start
in the order they were asked for, whichever screen asked. What runs is counted by process:
the children this app started that still run, and every run or training a living process
on this host works on (another app, ``fairpp simulate``, ``fairpp train``), as
``supervisor.live_jobs`` finds them.

The queue lives in memory: quitting the app drops it, and the quit dialog says so, naming
the jobs that will not start.

Nothing here knows about screens: an entry carries what its screen needs to start it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from fairpp_app.jobs.supervisor import live_jobs


@dataclass
class Queued:
    """A job waiting: its kind ("simulate", "train"), what to call it, what starts it."""

    kind: str
    label: str
    payload: Any = None


@dataclass
class Running:
    pid: int
    label: str  # the run's name once known, else "process PID"


@dataclass
class JobQueue:
    limit: int = 1
    waiting: list[Queued] = field(default_factory=list)

    def running(self, jobs: list, store, extra: list[Running] = ()) -> list[Running]:
        """The heavy jobs running now, one per process (see the module doc)."""
        found = {job.pid: Running(job.pid, job.name)
                 for job in live_jobs(store, socket.gethostname())}
        for item in extra:  # the screen's own job: named by its run once it has one
            found.setdefault(item.pid, item)
        for job in jobs:
            if job.running():
                found.setdefault(job.pid, Running(job.pid, f"process {job.pid}"))
        return list(found.values())

    def full(self, running: list[Running]) -> bool:
        return len(running) >= self.limit

    def add(self, item: Queued) -> int:
        """Queue ``item``; its place (1 = next)."""
        self.waiting.append(item)
        return len(self.waiting)

    def next_is(self, kind: str) -> bool:
        """Whether the job to start next is of ``kind`` (its screen starts it)."""
        return bool(self.waiting) and self.waiting[0].kind == kind

    def take(self) -> Queued:
        """The next waiting job, removed from the queue."""
        return self.waiting.pop(0)

    def describe(self, running: list[Running]) -> str:
        """One line: what the first waiting job waits behind, and the queue."""
        if not self.waiting:
            return ""
        behind = ", ".join(r.label for r in running) or "the job ending now"
        names = "; ".join(f"{i}. {item.label}" for i, item in enumerate(self.waiting, 1))
        return f"queued behind {behind} (max_jobs {self.limit}): {names}"

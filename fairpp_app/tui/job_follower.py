"""What the Simulate and Train screens share about the child process they follow.

Both screens start a ``fairpp`` command as a supervised child (``jobs.supervisor``), find the
run or training it claims through the database, wait for it in a thread worker that posts
how it ended, queue a new job while ``max_jobs`` engine jobs run (``tui.job_queue``), and
show the job's log. Only what the screens draw differs, so that is all they keep: this
mixin owns the rest once, and a screen names its job kind, its queue line and how it
launches a queued job.

A screen using it sets ``self.job`` (the child it started, until it ends), ``self.pid``
(the process working on what it follows, its own child or an adopted one) and answers
``following()`` (the name of what it follows), ``busy`` (whether that is still at work) and
``may_launch()`` (whether a queued job of its kind may start on it now).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from fairpp_app.jobs import supervisor
from fairpp_app.tui.job_queue import Queued, Running


class JobFollower:
    #: The supervisor's kind of this screen's jobs, and the queue's: "simulate", "train".
    JOB_KIND = ""
    #: The id of the Static that shows the queue on this screen.
    QUEUE_LINE = ""

    job: supervisor.Job | None = None
    pid: int | None = None
    _started_at = 0.0

    @dataclass
    class JobEnded(Message):
        """A child this screen started has ended (posted by the worker that waits on it)."""

        job: supervisor.Job
        end: supervisor.JobEnd

    # ---- to be answered by the screen ----------------------------------------------------------

    def following(self) -> str | None:
        """The name of the run or training followed now (None before the child claims one)."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """Whether the job this screen follows is still at work."""
        raise NotImplementedError

    def may_launch(self) -> bool:
        """Whether a queued job of this screen's kind may start on it now."""
        raise NotImplementedError

    def launch_queued(self, item: Queued) -> None:
        """Start the queued job ``item`` (its payload is what the screen queued)."""
        raise NotImplementedError

    # ---- starting a child and waiting for it ---------------------------------------------------

    def start_child(self, argv: list[str], kind: str | None = None) -> supervisor.Job:
        """Start ``fairpp ARGV`` as a supervised child the app knows of (OSError if it cannot)."""
        started = time.time()
        job = supervisor.start(kind or self.JOB_KIND, argv, self.app.db_path)
        if kind is None:  # the screen's own job: what ``claimed`` looks for
            self._started_at = started
        self.app.jobs.append(job)
        return job

    def claimed(self, job: supervisor.Job, training: bool) -> dict | None:
        """The run (or training) ``job`` has claimed, once it has (None before)."""
        store, host = self.app.store, socket.gethostname()
        row = store.training_owned_by(job.pid, host) if training else store.run_owned_by(job.pid, host)
        # A row an earlier process with a recycled pid worked on is not this child's.
        if row is None or (row["status"] != "running" and row["updated_at"] < self._started_at):
            return None
        return row

    # Not exclusive: a screen may start a new child (a resume) while the worker that waited
    # on the last one is still posting its end; each worker settles its own child's crash.
    @work(thread=True, exit_on_error=False, group="jobs")
    def supervise(self, job: supervisor.Job) -> None:
        """Wait for the child to end; settles a run or training it left running (``crashed``)."""
        worker = get_current_worker()
        # None: the app quits and leaves the child running.
        end = job.wait_while(lambda: not worker.is_cancelled)
        if end is not None:
            self.post_message(self.JobEnded(job, end))

    # ---- the queue -----------------------------------------------------------------------------

    def running_jobs(self) -> list[Running]:
        """The engine jobs running now, this screen's own named by what it follows."""
        mine = []
        pid = self.job.pid if self.job is not None else self.pid if self.busy else None
        if pid is not None:
            mine = [Running(pid, self.following() or f"process {pid}")]
        return self.app.job_queue.running(self.app.jobs, self.app.store, mine)

    def start_or_queue(self, label: str, payload) -> bool:
        """Whether to start a job now; when ``max_jobs`` run, queue it instead and say so."""
        queue = self.app.job_queue
        running = self.running_jobs()
        if not queue.full(running):
            return True
        place = queue.add(Queued(self.JOB_KIND, label, payload))
        self.show_queue(running)
        self.notify(f"{label} queued behind {', '.join(r.label for r in running)} "
                    f"(place {place}); it starts when that job ends")
        return False

    def show_queue(self, running: list[Running] | None = None) -> None:
        queue, line = self.app.job_queue, self.query_one(self.QUEUE_LINE, Static)
        line.display = bool(queue.waiting)
        if queue.waiting:
            line.update(Text(queue.describe(running if running is not None
                                            else self.running_jobs()), style="bold yellow"))

    def drain(self) -> None:
        """Start the queue's head when it is this screen's kind and there is room (polled)."""
        queue = self.app.job_queue
        if not queue.next_is(self.JOB_KIND) or not self.may_launch():
            if self.query_one(self.QUEUE_LINE, Static).display != bool(queue.waiting):
                self.show_queue()
            return
        running = self.running_jobs()
        if queue.full(running):
            self.show_queue(running)
            return
        self.launch_queued(queue.take())
        self.show_queue()

    # ---- the log -------------------------------------------------------------------------------

    def show_log(self, fallback: str | None) -> None:
        """The log of the job followed now (or last), else of ``fallback`` (the selected row)."""
        from fairpp_app.tui.screens.log_dialog import LogScreen

        name = self.following()
        if self.job is not None:
            title, path = name or f"process {self.job.pid}", self.job.log()
        elif name or fallback:
            title = name or fallback
            path = supervisor.log_path(title)
        else:
            self.notify("no job has run yet: no log to show")
            return
        if not Path(path).is_file():
            self.notify(f"no log for {title} (logs are kept for jobs the app started)")
            return
        self.app.push_screen(LogScreen(title, path))

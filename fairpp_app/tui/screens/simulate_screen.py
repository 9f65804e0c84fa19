"""Simulate: the SimulationConfig form, a run in a supervised child process, its progress.

The form is generated from ``SimulationConfig`` (as the CLI flags are). F5 does not run the
engine here: llama.cpp and the other engines are native code, and a fault in them would end
the app. It starts ``fairpp simulate --config-json ...`` as a child (``jobs.supervisor``;
the config the form built is passed whole) and follows it the way any second process can:
through the database. A poll finds the run the child has claimed, reads that run's new events
(``RunStarted``, ``Progress``, ``RetryScheduled``, ``RunEnded``) from the events table and
draws them; a thread worker waits for the child to end and posts how it ended. The status
the run ends with is read from the store, so a crash (the supervisor marks it ``crashed``),
a pause and a cancel are told apart by the same table the CLI reads.

Pause and cancel are signals to the child (``supervisor.request_stop``), so they reach a
child this app did not start as well: when the screen opens while a simulation started by an
earlier session still runs on this host, it adopts it, follows its events and notices its
end when its status leaves ``running``. The records are the child's to write; resuming
starts a new child on the same config, which plans only the missing records. Starting,
waiting, queueing and the log key are ``tui.job_follower``'s, shared with the Train screen.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    RichLog,
    Select,
    Static,
    Switch,
)

from fairpp_app.backends.registry import BACKENDS, available
from fairpp_app.core.errors import (
    BackendError,
    FairppError,
    TransientBackendError,
    UsageError,
)
from fairpp_app.core.events import (
    Progress,
    RetryScheduled,
    RunCrashed,
    RunEnded,
    RunStarted,
    event_from,
)
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs import supervisor
from fairpp_app.jobs.simulation import LONG_RUN_S, estimate
from fairpp_app.tui.job_follower import JobFollower
from fairpp_app.tui.job_queue import Queued
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.screens.confirm_dialog import ConfirmScreen
from fairpp_app.tui.widgets.config_form import ConfigForm

#: Where the form starts: a first run that finishes in a minute on a laptop CPU (20 test
#: questions x 7 personas), not the CLI's whole bank (28,420 x 7, about 14 hours).
FORM_START = {"split": "test", "limit": 20}
RUNS_REFRESH_S = 2.0
POLL_S = 0.5  # how often the database is read for the followed run's events

def advice(error: BaseException | str, backend: str, stopped: bool = False) -> str:
    """What the user can do about a failure, in one or two sentences."""
    if isinstance(error, UsageError):
        return "Fix the setting named above and start again."
    hint = BACKENDS[backend].cls.ADVICE if backend in BACKENDS else ""
    if stopped or isinstance(error, TransientBackendError):
        return (hint + " The records so far are saved: resume (F6) once the backend answers "
                "again.").strip()
    return hint


def config_from_run(run: dict) -> dict:
    """Form values that continue a stored run (same name, backend, model and settings)."""
    params = run.get("params") or {}
    values = {"backend": run["backend"], "model": params.get("path") or run["model"],
              "mode": run["mode"], "run": run["name"]}
    for f in dataclasses.fields(SimulationConfig):
        if f.name in params:
            values[f.name] = params[f.name]
    if run["backend"] in BACKENDS:
        values.update(BACKENDS[run["backend"]].cls.form_values(params))
    return values


class SimulateScreen(JobFollower, BaseScreen):
    SUB_TITLE = "Simulate"
    BINDINGS = [
        Binding("f5", "start", "Start"),
        Binding("f6", "pause", "Pause/resume"),
        Binding("f7", "cancel", "Cancel"),
        Binding("f8", "resume_selected", "Resume run"),
        Binding("l", "show_log", "Log"),
    ]
    PALETTE = [
        ("Start a simulation", "start", "with the settings in the form"),
        ("Pause or resume the simulation", "pause", "pausing keeps every finished record"),
        ("Cancel the simulation", "cancel", "stop; the records so far are kept"),
        ("Resume the selected run", "resume_selected",
         "continue a stopped run from the runs table"),
        ("Show the job's log", "show_log",
         "the last 200 lines the current (or last, or selected) run's process wrote"),
    ]

    JOB_KIND = "simulate"
    QUEUE_LINE = "#sim-queue"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = "idle"  # idle, starting, running, pausing, paused, cancelling
        self.config: SimulationConfig | None = None
        self.job: supervisor.Job | None = None  # the child this screen started, until it ends
        self.run_id: int | None = None  # the run followed: this screen's child's, or adopted
        self.run_name: str | None = None
        self.pid: int | None = None  # the process working on that run
        self.last_event = 0  # the newest event drawn
        self.errors = 0
        self.last_status: str | None = None  # the status the latest run ended with
        self._ended_by: RunEnded | None = None
        self._total: int | None = None  # the followed run's planned records, once known
        self._started_at = 0.0
        self._runs_drawn = 0.0

    def compose(self) -> ComposeResult:
        backends = [(name if available(name) else f"{name} (needs {info.needs})", name)
                    for name, info in BACKENDS.items()]
        yield Header()
        with Horizontal():
            yield ConfigForm(SimulationConfig, choices={"backend": backends}, defaults=FORM_START,
                             id="sim-form")
            with Vertical(id="sim-side"):
                yield Static(id="sim-plan")
                with Horizontal(id="sim-buttons"):
                    yield Button("Start F5", id="sim-start", variant="primary")
                    yield Button("Pause F6", id="sim-pause")
                    yield Button("Cancel F7", id="sim-cancel", variant="error")
                yield Static("idle", id="sim-state")
                yield Static(id="sim-queue")
                yield ProgressBar(id="sim-progress", show_eta=False)
                yield Static(id="sim-stats")
                yield Static(id="sim-error", classes="error")
                yield RichLog(id="sim-log", wrap=True, markup=True, max_lines=500, min_width=20)
                yield Static("Runs  (F8 resumes the selected one)", classes="section")
                yield DataTable(id="sim-runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sim-runs", DataTable)
        table.add_column("run", key="name", width=22)
        table.add_column("status", key="status", width=9)
        table.add_column("records", key="records", width=9)
        table.add_column("backend / model", key="who", width=28)
        self.query_one("#sim-error").display = False
        self.query_one("#sim-queue").display = False
        self.query_one("#sim-progress").display = False
        self.fill_runs()
        self._buttons()
        self.show_plan()
        self.adopt()
        self.set_interval(POLL_S, self.poll)

    def on_screen_resume(self) -> None:
        self.fill_runs()
        self.show_plan()
        self.adopt()

    @on(Input.Changed, "#sim-form Input")
    @on(Select.Changed, "#sim-form Select")
    @on(Switch.Changed, "#sim-form Switch")
    def _form_changed(self) -> None:
        self.show_plan()

    def show_plan(self):
        """The planned records and their time, from the form as it is; None when the form
        does not make a valid config (the line says what is wrong)."""
        line = self.query_one("#sim-plan", Static)
        try:
            config = self.query_one(ConfigForm).build()
            plan = estimate(self.app.store, config, self.app.personas)
        except FairppError as exc:
            line.update(Text(f"plan: {exc}", style="red"))
            return None
        long = plan.seconds is not None and plan.seconds > LONG_RUN_S
        line.update(Text(f"F5 plans {plan.describe()}; a resumed run skips what it has",
                         style="bold yellow" if long else ""))
        return plan

    def fill_runs(self) -> None:
        self._runs_drawn = time.monotonic()
        table = self.query_one("#sim-runs", DataTable)
        row = table.cursor_row
        table.clear()
        for run in reversed(self.app.store.list_runs()):
            if run["kind"] != "simulation":
                continue
            table.add_row(run["name"], run["status"], f"{run['records']:,}",
                          f"{run['backend']} / {run['model']} / {run['mode']}", key=run["name"])
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1), animate=False)

    def run_status(self, name: str) -> str | None:
        run = self.app.store.find_run(name)
        return run["status"] if run else None

    # ---- state --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.state in ("starting", "running", "pausing", "cancelling")

    def _set_state(self, state: str, text: str = "") -> None:
        self.state = state
        self.query_one("#sim-state", Static).update(text or state)
        self._buttons()

    def _buttons(self) -> None:
        self.query_one("#sim-start", Button).disabled = self.busy
        pause = self.query_one("#sim-pause", Button)
        pause.label = "Resume F6" if self.state == "paused" else "Pause F6"
        pause.disabled = self.state not in ("running", "paused")
        self.query_one("#sim-cancel", Button).disabled = self.state not in (
            "starting", "running", "paused")

    def _error(self, message: str, what_to_do: str = "") -> None:
        panel = self.query_one("#sim-error", Static)
        panel.display = bool(message)
        text = Text(message, style="bold")
        if what_to_do:
            text.append("\n" + what_to_do, style="")
        panel.update(text)

    # ---- actions ------------------------------------------------------------------------------

    def action_start(self, config: SimulationConfig | None = None) -> None:
        """Start (or, while ``max_jobs`` jobs run, queue) a simulation of the form's config."""
        if config is None:
            try:
                config = self.query_one(ConfigForm).build()
            except FairppError as exc:
                self._error(str(exc), advice(exc, ""))
                return
            plan = self.show_plan()
            if plan is not None and plan.seconds is not None and plan.seconds > LONG_RUN_S:
                def confirmed(yes: bool | None) -> None:
                    if yes:
                        self._start(config)

                self.app.push_screen(ConfirmScreen(
                    f"This simulation plans {plan.describe()}.\n\nStart it? (Records are saved "
                    "as they come; F6 pauses and resumes later.)"), confirmed)
                return
        self._start(config)

    def _start(self, config: SimulationConfig) -> None:
        """Start the child on ``config`` now, or queue it while ``max_jobs`` jobs run."""
        if self.start_or_queue(config.run or f"a new {config.backend} run", config):
            self._launch(config)

    def following(self) -> str | None:
        return self.run_name

    def may_launch(self) -> bool:
        # While running, too: with max_jobs above 1 the screen follows the newest child.
        return self.state not in ("starting", "pausing", "cancelling")

    def launch_queued(self, item: Queued) -> None:
        self.query_one("#sim-log", RichLog).write(f"starting queued [b]{item.label}[/b]")
        self._launch(item.payload)

    def _launch(self, config: SimulationConfig) -> None:
        """Start the child on ``config``; the poll and the worker follow it from here."""
        self.config = config
        self.errors = 0
        self._error("")
        store = self.app.store
        if store.question_count() == 0:  # the CLI would build it; the app asks for it on Home
            message = "the question bank is empty; build it on Home (1, then b)"
            self._error(message, advice(UsageError(message), config.backend))
            self.notify(message, title="simulation not started", severity="error", timeout=10)
            return
        # Every event of the child's run comes after the newest event now in the database.
        latest = store.latest_event()
        self._follow(None, None, None, after=latest["id"] if latest else 0)
        argv = ["simulate", "--config-json", json.dumps(dataclasses.asdict(config)), "--quiet"]
        try:
            job = self.start_child(argv)
        except OSError as exc:
            self._error(f"the simulation process could not start: {exc}")
            return
        self.job, self.pid = job, job.pid
        bar = self.query_one("#sim-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#sim-stats", Static).update("")
        self._set_state("starting", f"starting {config.backend} in process {job.pid}…")
        self.supervise(job)

    def _follow(self, run_id: int | None, name: str | None, pid: int | None, after: int) -> None:
        self.run_id, self.run_name, self.pid, self.last_event = run_id, name, pid, after
        self._ended_by, self._total = None, None
        self.last_status = None

    def adopt(self) -> None:
        """Follow a simulation that runs on this host without this screen having started it
        (left running by an earlier session of the app, or ``fairpp simulate``)."""
        if self.state != "idle":
            return
        host = socket.gethostname()
        live = [run for run in self.app.store.live_runs()
                if run["kind"] == "simulation" and run["owner"].get("host") == host]
        if not live:
            return
        run, store = live[-1], self.app.store
        pid = int(run["owner"]["pid"])
        latest = store.latest_event(run_id=run["id"])
        self.config = None
        self._follow(run["id"], run["name"], pid, after=latest["id"] if latest else 0)
        self.query_one("#sim-log", RichLog).write(
            f"following run [b]{run['name']}[/b], worked on by process {pid}")
        self.query_one("#sim-progress", ProgressBar).display = True
        started = store.latest_event(run_id=run["id"], kind="run_started")
        for row in filter(None, [started, {"kind": "progress", "payload": run["progress"]}
                                 if run["progress"] else None]):
            self.draw(event_from(row["kind"], row["payload"]))
        self._set_state("running", f"running [b]{run['name']}[/b] in process {pid} "
                                   "(started before this window opened)")

    def action_pause(self) -> None:
        if self.state == "running":
            self._set_state("pausing", "pausing after the records in flight…")
            self._signal("pause")
        elif self.state == "paused":
            if self.config is not None:
                self.action_start(self.config)
            elif self.run_name is not None:  # an adopted run: continue it from its settings
                self.query_one(ConfigForm).load(config_from_run(self.app.store.get_run(self.run_name)))
                self.action_start()

    def action_cancel(self) -> None:
        if self.state in ("starting", "running"):
            self._set_state("cancelling", "cancelling after the records in flight…")
            self._signal("cancel")
        elif self.state == "paused":
            self._set_state("idle", "cancelled; the records so far are saved")

    def _signal(self, how: str) -> None:
        """Pause or cancel the child: this screen's own, or an adopted run's process."""
        try:
            if self.job is not None:
                self.job.stop(how)
            elif self.pid is not None:
                supervisor.request_stop(self.pid, how)
        except ProcessLookupError:
            pass  # it has just ended: the worker or the poll reports how

    def action_resume_selected(self) -> None:
        table = self.query_one("#sim-runs", DataTable)
        if not table.row_count:
            self.notify("no simulation run to resume yet")
            return
        name = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        run = self.app.store.get_run(name)
        form = self.query_one(ConfigForm)
        form.load(config_from_run(run))
        self.query_one("#sim-log", RichLog).write(f"resuming run [b]{name}[/b]")
        self.action_start()

    def action_show_log(self) -> None:
        """The log of the job followed now (or last), else of the run selected in the table."""
        table = self.query_one("#sim-runs", DataTable)
        selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value \
            if table.row_count else None
        self.show_log(selected)

    @on(Button.Pressed, "#sim-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#sim-pause")
    def _pause_pressed(self) -> None:
        self.action_pause()

    @on(Button.Pressed, "#sim-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    # ---- following the child ------------------------------------------------------------------

    def poll(self) -> None:
        """Draw the followed run's new events; notice an adopted run's end by its status;
        start a queued simulation when there is room."""
        self.drain()
        if not self.busy:
            return
        store = self.app.store
        if self.run_id is None and self.job is not None:
            run = self.claimed(self.job, training=False)
            if run is None:
                return
            self.run_id, self.run_name = run["id"], run["name"]
        if self.run_id is None:
            return
        for row in store.events(run_id=self.run_id, after_id=self.last_event):
            self.last_event = row["id"]
            event = event_from(row["kind"], row["payload"])
            if event is not None:
                self.draw(event)
        if time.monotonic() - self._runs_drawn >= RUNS_REFRESH_S:  # its record count grows
            self.fill_runs()
        if self.job is None:  # adopted: no worker waits on its process
            status = self.run_status(self.run_name)
            if status != "running":
                self._ended(status, None)

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this: the error panel says what to do."""
        backend = self.config.backend if self.config else ""
        self.job = None
        self._error(f"following the simulation process failed: {error}", advice(error, backend))
        self._set_state("idle", "failed")
        self.fill_runs()
        return "simulation failed"

    def draw(self, event) -> None:
        log = self.query_one("#sim-log", RichLog)
        bar = self.query_one("#sim-progress", ProgressBar)
        if isinstance(event, RunStarted):
            self._total = event.planned + event.already_done
            bar.update(total=max(1, event.planned + event.already_done),
                       progress=event.already_done)
            if self.state in ("starting", "running"):
                self._set_state("running",
                                f"running [b]{event.run}[/b] on {event.backend}/{event.model}")
            log.write(f"run [b]{event.run}[/b]: {event.already_done:,} records already done, "
                      f"{event.planned:,} to go ({event.mode})")
            self.fill_runs()
        elif isinstance(event, Progress):
            self._total = event.total
            bar.update(total=max(1, event.total), progress=event.done)
            eta = "?" if event.eta_s is None else f"{event.eta_s:,.0f} s"
            self.query_one("#sim-stats", Static).update(
                f"{event.done:,}/{event.total:,} records · {event.rate:.1f} rec/s · ETA {eta} · "
                f"{event.errors} errors · {event.unparsed} unparsed")
        elif isinstance(event, RetryScheduled):
            self.errors += 1
            log.write(f"[yellow]backend error[/] ({event.error}); retry {event.attempt} in "
                      f"{event.delay_s:.1f}s")
        elif isinstance(event, RunEnded):
            self._ended_by = event
            log.write(f"run {event.run} {event.status}: {event.done:,}/{event.total:,}"
                      + (f" — {event.message}" if event.message else ""))
        elif isinstance(event, RunCrashed):
            log.write(f"[red]run {event.run} {event.describe()}[/]")

    def on_job_follower_job_ended(self, message: JobFollower.JobEnded) -> None:
        if message.job is not self.job:
            return
        self.poll()  # the events the child wrote last
        self.job = None
        end = message.end
        name = self.run_name or end.run
        self.run_name = name
        self._ended(self.run_status(name) if name else None, end)

    def _ended(self, status: str | None, end: supervisor.JobEnd | None) -> None:
        """The followed run is over: say how, from its status in the store."""
        name, backend = self.run_name, self.config.backend if self.config else ""
        self.last_status, self.pid = status, None
        tail = end.log_tail if end else []
        if status is None:  # the child ended before it had a run
            self._no_run(end, backend)
        elif status == "paused":
            self._set_state("paused", f"paused {name} at {self._counts()}; F6 resumes")
            self.notify(f"{name} paused at {self._counts()}")
        elif status in ("crashed", "interrupted"):
            how = f"the simulation process {end.describe()}" if end else \
                "the simulation process ended without ending its run"
            self._error(f"{how}; run {name} is {status} with {self._counts()} records saved",
                        f"Resume it with F8 (it plans only the missing records); "
                        f"`fairpp jobs log {name}` shows the whole log."
                        + "".join(f"\n  {line}" for line in tail[-6:]))
            self._set_state("idle", f"{name} {status} ({how})")
            self.notify(how, title=f"{name} {status}", severity="error", timeout=10)
        else:
            message = self._ended_by.message if self._ended_by else ""
            self._set_state("idle", f"{name} {status}: {self._counts()} records")
            if status in ("stopped", "failed"):
                self._error(message or f"run {name} {status}",
                            advice(BackendError(message), backend, stopped=status == "stopped"))
            self.notify(f"{name} {status}: {self._counts()} records", severity="information"
                        if status in ("finished", "cancelled") else "warning")
        self.app.data_changed()
        self.fill_runs()

    def _counts(self) -> str:
        done = self.app.store.record_count(self.run_id) if self.run_id is not None else 0
        total = self._ended_by.total if self._ended_by else self._total
        return f"{done:,}/{total:,}" if total else f"{done:,}"

    def _no_run(self, end: supervisor.JobEnd | None, backend: str) -> None:
        """The child ended before claiming a run: a setting or the engine failed at start."""
        tail = end.log_tail if end else []
        if self.state == "cancelling":
            self._set_state("idle", "cancelled before the run started")
            return
        said = [line.removeprefix("fairpp: error: ") for line in tail
                if line.startswith("fairpp: error: ")]
        if end is not None and end.signal:
            message = f"the simulation process {end.describe()} before its run started"
        elif said:
            message = said[-1]
        else:
            message = f"the simulation process {end.describe() if end else 'ended'}"
        what_to_do = advice(message, backend)
        if not said:
            what_to_do += "".join(f"\n  {line}" for line in tail[-6:])
        self._error(message, what_to_do.strip())
        self._set_state("idle", "failed")
        self.notify(message, title="simulation failed", severity="error", timeout=10)

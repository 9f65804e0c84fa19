"""Simulate: the SimulationConfig form, a run in a thread worker, its progress and its runs.

The form is generated from ``SimulationConfig`` (as the CLI flags are) and the run is
``simulate.run_simulation`` itself, in an exclusive thread worker with its own Store.
The engine's events (``RunStarted``, ``Progress``, ``RetryScheduled``, ``RunEnded``) come
back with ``post_message``, which is safe from any thread, including the engine's pool
threads for HTTP backends.

Pausing sets the engine's cancel event; the run ends ``cancelled`` with its records saved,
and resuming reruns the same config, which plans only the missing records. Any stored run
can be resumed the same way from the runs table. Backend failures end up in the error
panel with what to try next; nothing here raises into Textual.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
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
    user_message,
)
from fairpp_app.core.events import Progress, RetryScheduled, RunEnded, RunStarted
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import LONG_RUN_S, estimate
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.screens.confirm_dialog import ConfirmScreen
from fairpp_app.tui.widgets.config_form import ConfigForm

#: Where the form starts: a first run that finishes in a minute on a laptop CPU (20 test
#: questions x 7 personas), not the CLI's whole bank (28,420 x 7, about 14 hours).
FORM_START = {"split": "test", "limit": 20}
RUNS_REFRESH_S = 2.0

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


class SimulateScreen(BaseScreen):
    SUB_TITLE = "Simulate"
    BINDINGS = [
        Binding("f5", "start", "Start"),
        Binding("f6", "pause", "Pause/resume"),
        Binding("f7", "cancel", "Cancel"),
        Binding("f8", "resume_selected", "Resume run"),
    ]
    PALETTE = [
        ("Start a simulation", "start", "with the settings in the form"),
        ("Pause or resume the simulation", "pause", "pausing keeps every finished record"),
        ("Cancel the simulation", "cancel", "stop; the records so far are kept"),
        ("Resume the selected run", "resume_selected",
         "continue a stopped run from the runs table"),
    ]

    @dataclass
    class EngineEvent(Message):
        event: object

    @dataclass
    class Finished(Message):
        outcome: object

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = "idle"  # idle, running, pausing, paused, cancelling
        self.config: SimulationConfig | None = None
        self.cancel_event = threading.Event()
        self.errors = 0
        self.last_outcome = None
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
        self.query_one("#sim-progress").display = False
        self.fill_runs()
        self._buttons()
        self.show_plan()

    def on_screen_resume(self) -> None:
        self.fill_runs()
        self.show_plan()

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

    def _set_state(self, state: str, text: str = "") -> None:
        self.state = state
        self.query_one("#sim-state", Static).update(text or state)
        self._buttons()

    def _buttons(self) -> None:
        busy = self.state in ("running", "pausing", "cancelling")
        self.query_one("#sim-start", Button).disabled = busy
        pause = self.query_one("#sim-pause", Button)
        pause.label = "Resume F6" if self.state == "paused" else "Pause F6"
        pause.disabled = self.state not in ("running", "paused")
        self.query_one("#sim-cancel", Button).disabled = self.state not in ("running", "paused")

    def _error(self, message: str, what_to_do: str = "") -> None:
        panel = self.query_one("#sim-error", Static)
        panel.display = bool(message)
        text = Text(message, style="bold")
        if what_to_do:
            text.append("\n" + what_to_do, style="")
        panel.update(text)

    # ---- actions ------------------------------------------------------------------------------

    def action_start(self, config: SimulationConfig | None = None) -> None:
        if self.state in ("running", "pausing", "cancelling"):
            self.notify("a simulation is already running; pause or cancel it first")
            return
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
        self.config = config
        self.cancel_event = threading.Event()
        self.errors = 0
        self._error("")
        bar = self.query_one("#sim-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#sim-stats", Static).update("")
        self._set_state("running", f"starting {config.backend}…")
        self.simulate(config)

    def action_pause(self) -> None:
        if self.state == "running":
            self._set_state("pausing", "pausing after the records in flight…")
            self.cancel_event.set()
        elif self.state == "paused" and self.config is not None:
            self.action_start(self.config)

    def action_cancel(self) -> None:
        if self.state == "running":
            self._set_state("cancelling", "cancelling after the records in flight…")
            self.cancel_event.set()
        elif self.state == "paused":
            self._set_state("idle", "cancelled; the records so far are saved")

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

    @on(Button.Pressed, "#sim-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#sim-pause")
    def _pause_pressed(self) -> None:
        self.action_pause()

    @on(Button.Pressed, "#sim-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    # ---- the worker ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="simulate")
    def simulate(self, config: SimulationConfig) -> None:
        from fairpp_app.jobs.simulation import run_simulation
        from fairpp_app.store.database import Store

        with Store(self.app.db_path) as store:
            if store.question_count() == 0:
                raise UsageError("the question bank is empty; build it on Home (1, then b)")
            outcome = run_simulation(store, config, list(self.app.personas),
                                     listener=lambda e: self.post_message(self.EngineEvent(e)),
                                     cancel=self.cancel_event)
        self.post_message(self.Finished(outcome))

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this: the error panel says what to do."""
        backend = self.config.backend if self.config else ""
        self.last_outcome = None
        self._error(user_message(error), advice(error, backend))
        self._set_state("idle", "failed")
        self.fill_runs()
        return "simulation failed"

    def on_simulate_screen_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        log = self.query_one("#sim-log", RichLog)
        bar = self.query_one("#sim-progress", ProgressBar)
        if isinstance(event, RunStarted):
            bar.update(total=max(1, event.planned + event.already_done),
                       progress=event.already_done)
            self._set_state("running",
                            f"running [b]{event.run}[/b] on {event.backend}/{event.model}")
            log.write(f"run [b]{event.run}[/b]: {event.already_done:,} records already done, "
                      f"{event.planned:,} to go ({event.mode})")
            self.fill_runs()
        elif isinstance(event, Progress):
            bar.update(total=max(1, event.total), progress=event.done)
            now = time.monotonic()
            if now - self._runs_drawn >= RUNS_REFRESH_S:  # the run's record count grows
                self._runs_drawn = now
                self.fill_runs()
            eta = "?" if event.eta_s is None else f"{event.eta_s:,.0f} s"
            self.query_one("#sim-stats", Static).update(
                f"{event.done:,}/{event.total:,} records · {event.rate:.1f} rec/s · ETA {eta} · "
                f"{event.errors} errors · {event.unparsed} unparsed")
        elif isinstance(event, RetryScheduled):
            self.errors += 1
            log.write(f"[yellow]backend error[/] ({event.error}); retry {event.attempt} in "
                      f"{event.delay_s:.1f}s")
        elif isinstance(event, RunEnded):
            log.write(f"run {event.run} {event.status}: {event.done:,}/{event.total:,}"
                      + (f" — {event.message}" if event.message else ""))

    def on_simulate_screen_finished(self, message: Finished) -> None:
        backend = self.config.backend if self.config else ""
        self.last_outcome = out = message.outcome
        summary = (f"{out.status}: {out.done:,}/{out.total:,} records ({out.written:,} new, "
                   f"{out.unparsed:,} unparsed)")
        if out.status == "cancelled" and self.state == "pausing":
            self._set_state("paused", f"paused {out.run} at {out.done:,}/{out.total:,}; "
                                      "F6 resumes")
        else:
            self._set_state("idle", f"{out.run} {summary}")
        if out.status in ("stopped", "failed"):
            self._error(out.message, advice(BackendError(out.message), backend,
                                            stopped=out.status == "stopped"))
        self.notify(f"{out.run} {summary}", severity="information"
                    if out.status in ("finished", "cancelled") else "warning")
        self.app.data_changed()
        self.fill_runs()

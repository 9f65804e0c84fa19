"""Train: the TrainingConfig form, a training in a thread worker, and its curves.

The form is generated from ``training.config.TrainingConfig`` (as the CLI flags are) and
the work is ``training.runner.run_training``, in an exclusive thread worker with its own
Store and a cancel event (the trainer stops at the end of a step and saves a checkpoint).
The charts never listen to the trainer directly: they replay the selected training's
``train_step`` / ``train_eval`` events from the events table and poll for new ones, so a
training started here, one started with ``fairpp train`` in another terminal, and one
that finished last week are drawn the same way. A failure (a missing torch stack
included) reaches the app's worker handler, which shows it here and as a notification.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Static

from fairpp_app.core.errors import FairppError, user_message
from fairpp_app.training.config import TrainingConfig
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.widgets.config_form import ConfigForm
from fairpp_app.tui.widgets.plots import LineChart

POLL_S = 1.0


class TrainScreen(BaseScreen):
    SUB_TITLE = "Train"
    BINDINGS = [
        Binding("f5", "start", "Start"),
        Binding("f7", "cancel", "Cancel"),
        Binding("f8", "resume_selected", "Resume selected"),
        Binding("g", "reload", "Reload"),
    ]
    PALETTE = [
        ("Train: start a training", "start", "with the settings in the form"),
        ("Train: cancel the training", "cancel", "stops after the current step, checkpoint saved"),
        ("Train: resume the selected training", "resume_selected", "continue from its checkpoint"),
        ("Train: reload trainings", "reload", "re-read trainings and their events"),
    ]

    @dataclass
    class Finished(Message):
        outcome: object

    @dataclass
    class Started(Message):
        name: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.training_id: int | None = None
        self.last_event = 0
        self.loss: dict[str, tuple[list, list]] = {}
        self.similarity: dict[str, tuple[list, list]] = {}
        self.running = False
        self.cancel_event = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield ConfigForm(TrainingConfig, choices=self._choices(), id="train-form")
            with Vertical(id="train-side"):
                with Horizontal(id="train-buttons"):
                    yield Button("Start F5", id="train-start", variant="primary")
                    yield Button("Cancel F7", id="train-cancel", variant="error", disabled=True)
                    yield Button("Resume F8", id="train-resume")
                yield Static("idle", id="train-state")
                yield Static(id="train-error", classes="error")
                yield DataTable(id="trainings", cursor_type="row", zebra_stripes=True)
                yield LineChart(id="train-loss")
                yield LineChart(id="train-sim")
        yield Footer()

    def _choices(self) -> dict:
        from fairpp_app.store import browse

        personas = [(f"P{p.number} {p.name}", str(p.number)) for p in self.app.personas]
        runs = [(r["name"], r["name"])
                for r in browse.runs_with_records(self.app.store, personas_only=True)]
        choices = {"target": personas}
        if runs:
            choices["from_run"] = runs
        return choices

    def on_mount(self) -> None:
        table = self.query_one("#trainings", DataTable)
        table.add_column("training", key="name", width=20)
        table.add_column("method", key="method", width=6)
        table.add_column("target", key="target", width=14)
        table.add_column("status", key="status", width=10)
        self.query_one("#train-error").display = False
        self.action_reload()
        self.set_interval(POLL_S, self.poll)

    def on_screen_resume(self) -> None:
        self.action_reload()
        self._refresh_runs()

    def _refresh_runs(self) -> None:
        """Runs made since the form was built become choices for from_run."""
        from textual.widgets import Select

        found = self.query("#field-from_run")
        runs = self._choices().get("from_run")
        if not found or not runs or not isinstance(found.first(), Select):
            return
        select = found.first()
        current = select.value
        select.set_options(runs)
        if current in [v for _, v in runs]:
            select.value = current

    # ---- trainings and their events ----------------------------------------------------------

    def action_reload(self) -> None:
        table = self.query_one("#trainings", DataTable)
        selected = self.training_id
        table.clear()
        rows = list(reversed(self.app.store.list_trainings()))
        for row in rows:
            table.add_row(row["name"], row["method"], row["target"], row["status"],
                          key=str(row["id"]))
        ids = [r["id"] for r in rows]
        if selected in ids:
            table.move_cursor(row=ids.index(selected), animate=False)
        elif ids:
            self.select(ids[0])

    @on(DataTable.RowHighlighted, "#trainings")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.select(int(event.row_key.value))

    def select(self, training_id: int) -> None:
        if training_id == self.training_id:
            return
        self.training_id, self.last_event = training_id, 0
        self.loss, self.similarity = {"loss": ([], []), "reward margin": ([], [])}, {}
        target = self.app.store.training_target(training_id)
        self.target_label = self._label(target) if target else None
        self.poll(force=True)

    def poll(self, force: bool = False) -> None:
        """Draw the events written since the last poll (a live training or a replay)."""
        if self.training_id is None:
            return
        events = self.app.store.events(training_id=self.training_id, after_id=self.last_event)
        if not events and not force:
            return
        for e in events:
            p = e["payload"]
            if e["kind"] == "train_step":
                xs, ys = self.loss["loss"]
                xs.append(p["step"])
                ys.append(p["loss"])
                if p.get("reward_margin") is not None:  # DPO methods only
                    xs, ys = self.loss["reward margin"]
                    xs.append(p["step"])
                    ys.append(p["reward_margin"])
            elif e["kind"] == "train_eval":
                for persona, value in (p.get("similarity") or {}).items():
                    if value is None:
                        continue
                    xs, ys = self.similarity.setdefault(self._label(persona), ([], []))
                    xs.append(p["step"])
                    ys.append(value)
            elif e["kind"] == "train_ended":
                self.action_reload()
        if events:
            self.last_event = events[-1]["id"]
        self.query_one("#train-loss", LineChart).show("training loss and reward margin", self.loss)
        ordered = dict(sorted(self.similarity.items(), key=lambda kv: self._order(kv[0])))
        self.query_one("#train-sim", LineChart).show(
            "similarity to each persona (held-out questions)", ordered,
            highlight=getattr(self, "target_label", None))

    def _order(self, label: str) -> tuple[int, str]:
        digits = label[1:]
        return (int(digits), label) if label.startswith("P") and digits.isdigit() else (10**6, label)

    def _label(self, slug: str) -> str:
        return next((f"P{p.number}" for p in self.app.personas if p.slug == slug), slug)

    # ---- starting and stopping -----------------------------------------------------------------

    def _state(self, text: str, running: bool) -> None:
        self.running = running
        self.query_one("#train-state", Static).update(text)
        self.query_one("#train-start", Button).disabled = running
        self.query_one("#train-resume", Button).disabled = running
        self.query_one("#train-cancel", Button).disabled = not running

    def _error(self, message: str) -> None:
        panel = self.query_one("#train-error", Static)
        panel.display = bool(message)
        panel.update(message)

    @on(Button.Pressed, "#train-start")
    def action_start(self) -> None:
        if self.running:
            return
        try:
            config = self.query_one(ConfigForm).build()
            config.require_source()
        except FairppError as exc:
            self._error(str(exc))
            return
        self._launch(config, None)

    @on(Button.Pressed, "#train-resume")
    def action_resume_selected(self) -> None:
        table = self.query_one("#trainings", DataTable)
        if self.running or not table.row_count:
            return
        name = str(table.get_row_at(table.cursor_row)[0])
        self._launch(None, name)

    @on(Button.Pressed, "#train-cancel")
    def action_cancel(self) -> None:
        if self.running:
            self.cancel_event.set()
            self._state("cancelling after the current step (a checkpoint is saved)…", True)

    def _launch(self, config, resume: str | None) -> None:
        self.cancel_event = threading.Event()
        self._error("")
        self._state(f"resuming {resume}…" if resume else "preparing the training data…", True)
        self.train(config, resume)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def train(self, config, resume: str | None) -> None:
        from fairpp_app.store.database import Store
        from fairpp_app.training.runner import run_training

        with Store(self.app.db_path) as store:
            outcome = run_training(store, list(self.app.personas), config, resume=resume,
                                   listener=self._listen, cancel=self.cancel_event)
        self.post_message(self.Finished(outcome))

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this: the error panel and state say it."""
        self._error(user_message(error))
        self._state("failed", False)
        self.action_reload()
        self.poll()
        return "training failed"

    def _listen(self, event) -> None:
        if getattr(event, "kind", "") == "train_started":
            self.post_message(self.Started(event.training))

    def on_train_screen_started(self, message: Started) -> None:
        self._state(f"training {message.name}…", True)
        row = self.app.store.find_training(message.name)
        self.action_reload()
        if row is not None:
            self.select(row["id"])

    def on_train_screen_finished(self, message: Finished) -> None:
        out = message.outcome
        self._state(f"{out.name} {out.status} at step {out.step}"
                    + (f": {out.message}" if out.message else ""), False)
        self.notify(f"training {out.name} {out.status}")
        self.action_reload()
        self.poll()

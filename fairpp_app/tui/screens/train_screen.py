"""Train: the TrainingConfig form, a training in a child process, and its curves.

The form is generated from ``training.config.TrainingConfig`` (as the CLI flags are) and
the work is ``fairpp train --config-json ...`` started as a supervised child
(``jobs.supervisor``), so a native crash in torch becomes a ``crashed`` training with the
signal and the log's last lines while the app keeps running. Pause and Cancel are signals to
that child (it stops after the current step and saves a checkpoint); a training left running
when the app quit (or started in a terminal) is adopted when the screen opens. F5 while
``max_jobs`` engine jobs run (a simulation or a training, this app's or any other process's
on this host) queues the training behind them; ``l`` shows the followed (or selected)
training's log. Starting, waiting, queueing and the log are ``tui.job_follower``'s, shared
with the Simulate screen.
The charts never listen to the trainer directly: they replay the selected training's
``train_step`` / ``train_eval`` events from the events table and poll for new ones, so a
training started here, one started with ``fairpp train`` in another terminal, and one
that finished last week are drawn the same way. A failure (a missing torch stack
included) reaches the app's worker handler, which shows it here and as a notification.
"""

from __future__ import annotations

import json
import socket

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Static

from fairpp_app.core.errors import FairppError, user_message
from fairpp_app.core.targets import parse_target
from fairpp_app.jobs import supervisor
from fairpp_app.training.config import TrainingConfig
from fairpp_app.tui.job_follower import JobFollower
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.widgets.config_form import ConfigForm
from fairpp_app.tui.widgets.plots import LineChart

POLL_S = 1.0


class TrainScreen(JobFollower, BaseScreen):
    SUB_TITLE = "Train"
    BINDINGS = [
        Binding("f5", "start", "Start"),
        Binding("f6", "pause", "Pause"),
        Binding("f7", "cancel", "Cancel"),
        Binding("f8", "resume_selected", "Resume selected"),
        Binding("e", "evaluate", "Evaluate selected"),
        Binding("g", "reload", "Reload"),
        Binding("l", "show_log", "Log"),
    ]
    PALETTE = [
        ("Train: start a training", "start", "with the settings in the form"),
        ("Train: pause the training", "pause", "stops after the current step; F8 resumes it"),
        ("Train: cancel the training", "cancel", "stops after the current step, checkpoint saved"),
        ("Train: resume the selected training", "resume_selected", "continue from its checkpoint"),
        ("Train: evaluate the selected training", "evaluate",
         "its adapter answers the test split as run eval-NAME, in a child process"),
        ("Train: reload trainings", "reload", "re-read trainings and their events"),
        ("Train: show the job's log", "show_log",
         "the last 200 lines the current (or last, or selected) training's process wrote"),
    ]
    JOB_KIND = "train"
    QUEUE_LINE = "#train-queue"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.training_id: int | None = None
        self.last_event = 0
        self.loss: dict[str, tuple[list, list]] = {}
        self.similarity: dict[str, tuple[list, list]] = {}
        self.running = False
        self.job: supervisor.Job | None = None  # the child this screen started, until it ends
        self.pid: int | None = None  # the process working on the followed training
        self.followed: str | None = None  # the name of the training that process works on
        self._started_at = 0.0
        self.eval_job: supervisor.Job | None = None  # the evaluation child, until it ends
        self.eval_of: str | None = None  # the training it evaluates

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
                yield Static(id="train-queue")
                yield Static(id="train-error", classes="error")
                yield Static(id="train-eval")
                yield DataTable(id="trainings", cursor_type="row", zebra_stripes=True)
                yield LineChart(id="train-loss")
                yield LineChart(id="train-sim")
        yield Footer()

    def _choices(self) -> dict:
        from fairpp_app.store import browse

        # The target is typed, as on the command line: a persona (6) or a group (3:0.7,6:0.3).
        runs = [(r["name"], r["name"])
                for r in browse.runs_with_records(self.app.store, personas_only=True)]
        choices = {}
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
        self.query_one("#train-eval").display = False
        self.query_one("#train-queue").display = False
        self.action_reload()
        self._adopt()
        self.set_interval(POLL_S, self.poll)

    def _adopt(self) -> None:
        """Follow a training a living process works on now (left running, or from a terminal)."""
        live = [t for t in self.app.store.live_trainings()
                if t["owner"].get("host") == socket.gethostname()]
        if not live:
            return
        row = live[-1]
        self.pid, self.followed = int(row["owner"]["pid"]), row["name"]
        self._state(f"training {row['name']} in process {self.pid}…", True)
        self.action_reload()
        self.select(row["id"])

    def on_screen_resume(self) -> None:
        self.action_reload()
        self._refresh_runs()
        if not self.running:  # one started in a terminal since the screen was last shown
            self._adopt()

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
        """Draw the events written since the last poll (a live training or a replay); start a
        queued training when there is room."""
        self.drain()
        self._find_child_training()
        self._eval_progress()
        if self.job is None and self.followed is not None and self.running:
            row = self.app.store.find_training(self.followed)
            if row is not None and row["status"] != "running":  # an adopted training ended
                self._ended(row, None)
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

    def _find_child_training(self) -> None:
        """Once this screen's child has claimed its training: select it and say so."""
        if self.job is None or self.followed is not None:
            return
        row = self.claimed(self.job, training=True)
        if row is None:
            return
        self.followed = row["name"]
        self._state(f"training {row['name']} in process {self.job.pid}…", True)
        self.action_reload()
        self.select(row["id"])

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
        """Start (or, while ``max_jobs`` engine jobs run, queue) a training of the form's config."""
        try:
            config = self.query_one(ConfigForm).build()
            config.require_source()
            parse_target(config.target, self.app.personas)  # a typo shows here, not in the child
        except FairppError as exc:
            self._error(str(exc))
            return
        label = config.name or f"a new {config.method} training"
        if self.start_or_queue(label, (config, None)):
            self._launch(config, None)

    @on(Button.Pressed, "#train-resume")
    def action_resume_selected(self) -> None:
        table = self.query_one("#trainings", DataTable)
        if self.running or not table.row_count:
            return
        name = str(table.get_row_at(table.cursor_row)[0])
        if self.start_or_queue(f"resuming {name}", (None, name)):
            self._launch(None, name)

    def action_show_log(self) -> None:
        """The log of the training followed now (or last), else of the selected one."""
        table = self.query_one("#trainings", DataTable)
        self.show_log(str(table.get_row_at(table.cursor_row)[0]) if table.row_count else None)

    # What the job follower (tui.job_follower) asks of this screen.

    def following(self) -> str | None:
        return self.followed

    @property
    def busy(self) -> bool:
        return self.running

    def may_launch(self) -> bool:
        # One training followed at a time: a queued one waits for this screen's to end.
        return not self.running

    def launch_queued(self, item) -> None:
        config, resume = item.payload
        self._launch(config, resume)

    def action_pause(self) -> None:
        self._stop("pause")

    @on(Button.Pressed, "#train-cancel")
    def action_cancel(self) -> None:
        self._stop("cancel")

    def _stop(self, how: str) -> None:
        if not self.running or self.pid is None:
            return
        try:
            supervisor.request_stop(self.pid, how)
        except ProcessLookupError:
            return
        verb = "pausing" if how == "pause" else "cancelling"
        self._state(f"{verb} after the current step (a checkpoint is saved)…", True)

    def _launch(self, config, resume: str | None) -> None:
        self._error("")
        if resume:
            argv = ["train", "--resume", resume, "--quiet"]
        else:
            argv = ["train", "--config-json", json.dumps(config.as_json()), "--quiet"]
        try:
            job = self.start_child(argv)
        except OSError as exc:
            self._error(f"the training process could not start: {exc}")
            return
        self.job, self.pid, self.followed = job, job.pid, None
        self._state(f"resuming {resume} in process {job.pid}…" if resume else
                    f"preparing the training data in process {job.pid}…", True)
        self.supervise(job)

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this: the error panel and state say it."""
        self._error(user_message(error))
        self._state("failed", False)
        self.action_reload()
        self.poll()
        return "training failed"

    def on_job_follower_job_ended(self, message: JobFollower.JobEnded) -> None:
        if message.job is self.eval_job:
            self._eval_ended(message.end)
        if message.job is not self.job:
            return
        self._find_child_training()
        row = self.app.store.find_training(self.followed) if self.followed else None
        self._ended(row, message.end)

    def _ended(self, row: dict | None, end: supervisor.JobEnd | None) -> None:
        """The followed training is over: say how, from its row and its last events."""
        self.job, self.pid, self.followed = None, None, None
        tail = "".join(f"\n  {line}" for line in (end.log_tail if end else [])[-6:])
        if row is None:  # the child ended before it had a training: a setting or the data
            self._error((f"the training process {end.describe()}" if end else "failed") + tail)
            self._state("failed", False)
            self.notify("training failed", severity="error")
            self.action_reload()
            return
        name, status = row["name"], row["status"]
        ended = [e for e in self.app.store.events(training_id=row["id"])
                 if e["kind"] in ("train_ended", "train_step")]
        step = ended[-1]["payload"].get("step", 0) if ended else 0
        message = (ended[-1]["payload"].get("message") or "") if ended and \
            ended[-1]["kind"] == "train_ended" else ""
        if status in ("crashed", "interrupted"):
            how = f"the training process {end.describe()}" if end else \
                "the training process ended without ending its training"
            self._error(f"{how}; training {name} is {status} after step {step}. Resume it with "
                        f"F8 (from its last checkpoint); `fairpp jobs log {name}` shows the whole "
                        "log." + tail)
            self._state(f"{name} {status} ({how})", False)
            self.notify(how, title=f"{name} {status}", severity="error", timeout=10)
        else:
            if status == "failed":
                self._error(message or f"training {name} failed")
            self._state(f"{name} {status} at step {step}" + (f": {message}" if message else ""),
                        False)
            self.notify(f"training {name} {status}",
                        severity="information" if status != "failed" else "warning")
        self.action_reload()
        self.poll()

    # ---- evaluating a finished training ---------------------------------------------------------

    def action_evaluate(self) -> None:
        """Answer the test split with the selected training's adapter (``fairpp evaluate``),
        in a supervised child: its eval run's progress and result are shown here."""
        table = self.query_one("#trainings", DataTable)
        if self.eval_job is not None or not table.row_count:
            return
        name, status = (str(v) for v in table.get_row_at(table.cursor_row)[0:4:3])
        if status != "finished":
            self._error(f"training {name} has not finished (status {status}): only a finished "
                        "training has an adapter to evaluate")
            return
        self._error("")
        try:
            job = self.start_child(["evaluate", "--adapter", name], kind="evaluate")
        except OSError as exc:
            self._error(f"the evaluation process could not start: {exc}")
            return
        self.eval_job, self.eval_of = job, name
        self._eval_line(f"evaluating {name} in process {job.pid}…")
        self.supervise(job)

    def _eval_line(self, text: str) -> None:
        line = self.query_one("#train-eval", Static)
        line.display = True
        line.update(text)

    def _eval_progress(self) -> None:
        if self.eval_job is None:
            return
        run = self.app.store.run_owned_by(self.eval_job.pid, socket.gethostname())
        if run is None:
            return
        latest = self.app.store.latest_event(run_id=run["id"], kind="progress")
        if latest is not None:
            p = latest["payload"]
            self._eval_line(f"evaluating {self.eval_of}: {p.get('done', 0):,}/"
                            f"{p.get('total', 0):,} answers as run {run['name']}")

    def _eval_ended(self, end: supervisor.JobEnd) -> None:
        name = self.eval_of
        self.eval_job = self.eval_of = None
        run = self.app.store.find_run(end.run) if end.run else None
        if run is None:
            tail = "".join(f"\n  {line}" for line in end.log_tail[-6:])
            self._eval_line(f"evaluating {name} failed: the process {end.describe()}")
            self._error(f"the evaluation of {name} ended before it had a run" + tail)
            self.notify(f"evaluation of {name} failed", severity="error")
            return
        done = self.app.store.record_count(run["id"])
        latest = self.app.store.latest_event(run_id=run["id"], kind="progress")
        total = latest["payload"].get("total") if latest else None
        counts = f"{done:,}/{total:,}" if total else f"{done:,}"
        self._eval_line(f"run {run['name']} {run['status']}: {counts} answers"
                        + (f" ({end.describe()})" if run["status"] == "crashed" else ""))
        self.notify(f"evaluation of {name} {run['status']}: run {run['name']}",
                    severity="information" if run["status"] == "finished" else "warning")
        self.app.data_changed()

"""The Textual app: one mode per screen, the shared state they read, and ``run_app``.

The app holds only what several screens share: the open Store (UI thread), the personas,
the target persona, the chosen run, the question filter and a cache of computed weights.
Everything else lives in the screens (``fairpp_app/tui/screens``), and every number they
show comes from the same domain functions the CLI calls.

Screen workers run with ``exit_on_error=False`` and catch nothing themselves: a failure
reaches ``on_worker_state_changed`` here (``BaseScreen`` passes its workers' state changes
on), the one place that turns it into what the user sees. A screen that shows failures on
itself too (an error panel, a state line) overrides ``BaseScreen.worker_failed``, which
updates it and returns the notification's title.

Simulations and trainings run as child processes (``jobs.supervisor``) that can outlive the
app: quitting while one this app started still runs asks whether to stop it, leave it running
or stay. The queue of jobs waiting to start is not kept: quitting with jobs in it asks first,
names them in the dialog and again on stderr once the app has gone.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from fairpp_app.core.errors import FairppError, user_message
from fairpp_app.core.personas import builtin_personas, load_personas
from fairpp_app.store.browse import QuestionFilter
from fairpp_app.store.database import Store
from fairpp_app.tui.job_queue import JobQueue
from fairpp_app.tui.screens.analysis_screen import AnalysisScreen
from fairpp_app.tui.screens.home_screen import HomeScreen
from fairpp_app.tui.screens.personas_screen import PersonasScreen
from fairpp_app.tui.screens.questions_screen import QuestionsScreen
from fairpp_app.tui.screens.simulate_screen import SimulateScreen
from fairpp_app.tui.screens.train_screen import TrainScreen
from fairpp_app.tui.widgets.palette import FairppCommands

log = logging.getLogger(__name__)

STOP_WAIT_S = 15.0  # how long quitting waits for a cancelled child to write what is in flight

DEFAULT_TARGET = 6  # the paper's target persona: Disengaged Traditionalists

#: (mode, title, what it shows), in the order of the number keys.
NAVIGATION = [
    ("home", "Home", "database, counts, backends, recent runs"),
    ("questions", "Questions", "browse and filter the bank; Enter inspects"),
    ("personas", "Personas", "descriptions, prompt preview, your own personas"),
    ("simulate", "Simulate", "let personas answer through a backend"),
    ("analysis", "Analysis", "similarity, agreement, dimensions, tiers, map, reference, consistency"),
    ("train", "Train", "fine-tune toward a persona"),
]


class FairppApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "fairpp"
    SUB_TITLE = "Fair-PP personas, questions and preferences"  # each screen names itself
    COMMANDS = App.COMMANDS | {FairppCommands}
    MODES = {"home": HomeScreen, "questions": QuestionsScreen, "personas": PersonasScreen,
             "simulate": SimulateScreen, "analysis": AnalysisScreen, "train": TrainScreen}
    DEFAULT_MODE = "home"
    NAVIGATION = NAVIGATION
    BINDINGS = [
        # One footer entry stands for all the number keys: "1-6 Screens".
        *[Binding(str(i), f"goto('{mode}')", "Screens" if i == 1 else title, show=i == 1,
                  key_display=f"1-{len(NAVIGATION)}" if i == 1 else None)
          for i, (mode, title, _) in enumerate(NAVIGATION, start=1)],
        # Priority, so that it reaches the app while an input has focus (inputs ignore it).
        Binding("escape", "leave_input", "Leave field", show=False, priority=True),
        Binding("f1,question_mark", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", show=False),
    ]

    def __init__(self, db_path: Path | str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.db_path = Path(db_path)
        self.store = Store(self.db_path)
        self.persona_error: FairppError | None = None
        self.sync_error: FairppError | None = None
        self.personas = self._load_personas()
        self.target = self._default_target()
        self.run_name: str | None = None
        self.question_filter = QuestionFilter()
        self.inspected_qid: str | None = None
        self.weight_cache: dict[tuple, tuple[dict, str]] = {}
        self.weight_pending: set[tuple] = set()
        self.jobs: list = []  # the children (jobs.supervisor.Job) this app started
        self.job_queue = JobQueue(limit=self._max_jobs())  # heavy jobs waiting (job_queue)
        self.dropped: list[str] = []  # the queued jobs quitting left unstarted

    @staticmethod
    def _max_jobs() -> int:
        from fairpp_app.core.user_config import max_jobs

        try:
            return max_jobs()
        except FairppError:  # a bad setting: the CLI says what; the app keeps the default
            return 1

    def _read_personas(self):
        try:
            return load_personas()
        except FairppError as exc:  # a broken user file must not keep the app from starting
            self.persona_error = exc
            return builtin_personas()

    def _load_personas(self):
        try:  # the store reads them under its write lock: no older copy lands last
            return self.store.sync_personas(self._read_personas)
        except FairppError as exc:  # the CLI refuses with this message; the app shows it
            self.sync_error = exc
            return self._read_personas()

    def _default_target(self) -> str:
        by_number = {p.number: p.slug for p in self.personas}
        return by_number.get(DEFAULT_TARGET) or self.personas[0].slug

    def on_mount(self) -> None:
        self._persona_errors()

    def _persona_errors(self) -> None:
        if self.persona_error is not None:
            self.show_error(self.persona_error, "your personas file is ignored")
        if self.sync_error is not None:
            self.show_error(self.sync_error, "personas not saved in the database")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every screen worker's failure: shown, logged when unexpected, never the app's end."""
        if event.state != WorkerState.ERROR:
            return
        worker, error = event.worker, event.worker.error
        if error is None:
            return
        if not isinstance(error, FairppError):
            log.error("worker %s failed", worker.name, exc_info=error)
            self.log.error(f"worker {worker.name} failed", error)
        hook = getattr(worker.node, "worker_failed", None)
        title = hook(worker, error) if hook is not None else None
        self.show_error(error, title or "error")

    # ---- shared helpers --------------------------------------------------------------------

    def show_error(self, error: BaseException, title: str = "error") -> None:
        """A FairppError's message as written; anything else as unexpected, with its type."""
        self.notify(user_message(error), title=title, severity="error", timeout=10)

    def reload_personas(self) -> None:
        self.persona_error = self.sync_error = None
        self.personas = self._load_personas()
        self._persona_errors()
        if self.target not in {p.slug for p in self.personas}:
            self.target = self._default_target()

    def data_changed(self) -> None:
        """Records or questions were written: drop what was computed from the old ones."""
        self.weight_cache.clear()

    # ---- actions ---------------------------------------------------------------------------

    async def action_goto(self, mode: str) -> None:
        if self.current_mode != mode:
            await self.switch_mode(mode)

    async def action_do(self, mode: str, action: str) -> None:
        """Go to a screen and run one of its actions (the command palette's way in)."""
        await self.action_goto(mode)
        await self.screen.run_action(action)

    def action_leave_input(self) -> None:
        """Escape takes focus out of a text field, so that number keys and the screen's own
        keys work again; anywhere else, and in dialogs (where the number keys do not reach
        the app), Escape keeps its usual meaning (close, cancel, go back)."""
        from textual.actions import SkipAction
        from textual.screen import ModalScreen
        from textual.widgets import Input, TextArea

        if isinstance(self.screen, ModalScreen) or not isinstance(self.focused, (Input, TextArea)):
            raise SkipAction()
        self.screen.set_focus(None)

    def action_help(self) -> None:
        from fairpp_app.tui.screens.help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Quit; while a child this app started still runs, or jobs wait in the queue, ask
        first (the dialog names both: see ``quit_dialog``)."""
        from fairpp_app.tui.screens.quit_dialog import QuitScreen

        running = [job for job in self.jobs if job.running()]
        queued = [item.label for item in self.job_queue.waiting]
        if not running and not queued:
            self.exit()
            return
        names = []
        for job in running:
            run = job.run()
            names.append(run["name"] if run else f"process {job.pid}")

        def answered(choice: str | None) -> None:
            if choice is not None:
                self.dropped = queued  # run_app says so once the screen is back
            if choice == "leave":
                self.exit()
            elif choice == "stop":
                self.run_worker(self._stop_and_quit(running), group="quit")

        self.push_screen(QuitScreen(names, queued), answered)

    async def _stop_and_quit(self, jobs: list) -> None:
        """Cancel the children (each writes its records in flight), wait briefly, quit."""
        for job in jobs:
            try:
                job.stop("cancel")
            except ProcessLookupError:
                pass
        self.notify("stopping the jobs; each writes what is in flight (a training: a checkpoint)")
        deadline = time.monotonic() + STOP_WAIT_S
        while any(job.running() for job in jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.exit()

    def on_unmount(self) -> None:
        self.store.close()


def run_app(db_path: Path | str) -> int:
    """Run the terminal app on a database file; the exit code for ``fairpp``."""
    try:
        app = FairppApp(db_path)
    except FairppError as exc:
        print(f"fairpp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    app.run()
    if app.dropped:
        from fairpp_app.tui.screens.quit_dialog import queued_line

        print(f"fairpp: {queued_line(app.dropped)}", file=sys.stderr)
    return app.return_code or 0

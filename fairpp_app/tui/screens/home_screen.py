"""Home: what the database holds, which backends can run, recent runs, and first steps.

An empty database gets one key that builds the question bank. The bank is built by the
same function as ``fairpp questions build`` and written in chunks from a thread worker,
so the progress bar moves and the screen stays responsive.
"""

from __future__ import annotations

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from fairpp_app.core.questions import SPLITS
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.widgets.backends_panel import BackendsPanel

CHUNK = 2000

#: The loop of the tool, each step one key away; shown while the database has no run.
FIRST_STEPS = (
    "[b]First steps[/b]  (number keys switch screens from anywhere)\n"
    "  [b]4[/b]  Simulate   20 test questions x 7 personas (a minute); [b]F5[/b] starts\n"
    "  [b]2[/b]  Questions  pick one; [b]Enter[/b] shows every persona's answer\n"
    "  [b]5[/b]  Analysis   how close the personas sit to each other\n"
    "  [b]6[/b]  Train      fine-tune a model toward one persona\n"
    "  [b]?[/b]  the keys of the screen you are on")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class HomeScreen(BaseScreen):
    SUB_TITLE = "Home"
    BINDINGS = [
        Binding("b", "build_bank", "Build bank"),
        Binding("r", "refresh", "Refresh"),
        Binding("c", "check_engine", "Check engine"),
    ]
    PALETTE = [
        ("Build the question bank", "build_bank", "write the 28,420 template questions"),
        ("Refresh home", "refresh", "re-read counts, runs and backends"),
        ("Check the embedded engine", "check_engine",
         "score a few prompts in a child process, as `fairpp doctor` does"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="home"):
            yield Static(id="db-info")
            with Vertical(id="first-run"):
                yield Static(id="first-run-text")
                yield ProgressBar(id="build-progress", show_eta=False)
            with Horizontal(id="home-panels"):
                yield Static(id="counts", classes="panel")
                yield BackendsPanel(id="backends", classes="panel")
            yield Static("Recent runs", classes="section")
            yield DataTable(id="recent-runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#recent-runs", DataTable)
        table.add_columns("run", "kind", "backend / model", "status", "records")
        self.building = False
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def action_refresh(self) -> None:
        self.refresh_view()
        self.query_one(BackendsPanel).check_servers()

    def refresh_view(self) -> None:
        store = self.app.store
        counts = store.counts()
        size = store.path.stat().st_size if store.path.exists() else 0
        self.query_one("#db-info", Static).update(
            f"[b]Database[/b] {self.app.db_path}  ({human_size(size)}, schema {store.version})")
        table = Table(title="Contents", title_justify="left", show_header=False, box=None,
                      padding=(0, 1))
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("questions", f"{counts['questions']:,}")
        banks = store.bank_counts()
        if len(banks) <= 1:  # fairpp's own bank alone: its splits
            for split in SPLITS:
                table.add_row(f"  {split}", f"{store.question_count(split, bank=None):,}")
        else:  # a split is one bank's: each bank with its own splits
            for bank, splits in banks.items():
                table.add_row(f"  {bank} bank", f"{sum(splits.values()):,}")
                for split in (s for s in SPLITS if s in splits):
                    table.add_row(f"    {split}", f"{splits[split]:,}")
        for key, label in (("personas", "personas"), ("runs", "runs"), ("records", "records"),
                           ("trainings", "trained adapters")):
            table.add_row(label, f"{counts[key]:,}")
        self.query_one("#counts", Static).update(table)
        self._first_run(counts["questions"] == 0, counts["runs"] == 0)
        runs = self.query_one("#recent-runs", DataTable)
        runs.clear()
        for run in reversed(store.list_runs()[-10:]):
            who = " / ".join(x for x in (run["backend"], run["model"]) if x) or "-"
            runs.add_row(run["name"], run["kind"], who, run["status"], f"{run['records']:,}",
                         key=run["name"])
        if not runs.row_count:
            runs.add_row("no runs yet", "", "", "", "")

    def _first_run(self, empty: bool, no_runs: bool = False) -> None:
        box = self.query_one("#first-run")
        box.display = empty or no_runs or self.building
        if not empty and no_runs and not self.building:
            self.query_one("#first-run-text", Static).update(FIRST_STEPS)
        elif empty and not self.building:
            self.query_one("#first-run-text", Static).update(
                "[b]This database is empty.[/b] Press [b]b[/b] to build the question bank "
                "(28,420 template questions with their train/test split; a few seconds). "
                "Then let personas answer in Simulate ([b]4[/b]), or import the official "
                "answers with `fairpp import fairpp-csv FILE`.")
        self.query_one("#build-progress").display = self.building

    def action_check_engine(self) -> None:
        self.notify("checking the embedded engine in a child process…")
        self.check_engine()

    @work(thread=True, exclusive=True, exit_on_error=False, group="doctor")
    def check_engine(self) -> None:
        from fairpp_app.jobs.doctor import check

        verdict = check("embedded")
        self.app.call_from_thread(self._checked, verdict)

    def _checked(self, verdict) -> None:
        self.notify(verdict.summary, title="embedded engine",
                    severity="information" if verdict.status == "ok" else "error")
        self.query_one(BackendsPanel).draw()

    def action_build_bank(self) -> None:
        if self.building:
            self.notify("the question bank is already being built")
            return
        self.building = True
        self._first_run(True)
        self.query_one("#first-run-text", Static).update("Building the question bank…")
        self.build_bank(self.query_one("#build-progress", ProgressBar))

    @work(thread=True, exclusive=True, exit_on_error=False, group="bank")
    def build_bank(self, progress: ProgressBar) -> None:
        from fairpp_app.core.questions import build_bank
        from fairpp_app.store.database import Store

        bank = build_bank()
        self.app.call_from_thread(progress.update, total=len(bank), progress=0)
        with Store(self.app.db_path) as store:
            for start in range(0, len(bank), CHUNK):
                store.upsert_questions(bank[start:start + CHUNK])
                self.app.call_from_thread(progress.update, progress=start + CHUNK)
        self.app.call_from_thread(self._built, len(bank))

    def _built(self, n: int) -> None:
        self.building = False
        self.notify(f"question bank built: {n:,} template questions")
        self.app.data_changed()
        self.refresh_view()

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this; a failed build can be tried again."""
        if worker.group == "bank":
            self.building = False
            self.refresh_view()
        return None

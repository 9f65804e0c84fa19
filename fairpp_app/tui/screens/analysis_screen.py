"""Analysis: where a run's respondents stand relative to the personas.

All numbers come from ``positioning.position_run`` (which builds on ``analysis.run_metrics``,
the CLI's ``fairpp metrics``), computed in a thread worker because a full run is a quarter
of a million records. Each tab draws one view; ``s`` writes the current view's numbers as
CSV, ``v`` the current picture as a Textual SVG screenshot and ``f`` the view as a figure
(PNG and SVG, drawn by ``jobs.figures`` as the HTML report draws it), all into the exports
folder of the data dir.

Two views are computed apart, each when its tab is shown (``analysis_side_views``):
Reference (every respondent against every segment of an imported human survey, with
intervals) and Consistency (answer consistency and distance from uniform).

Beside the run's own respondents, the model respondents of other runs can join the other views:
a stored position set (``fairpp position --name``) from the bar, or any runs ticked in the
``m`` dialog; each is labelled by its model (or the set's label).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Label, Select, Static, TabbedContent, TabPane

from fairpp_app.core.errors import user_message
from fairpp_app.core.metrics import MIN_SIMILARITY
from fairpp_app.core.questions import dimension_poles
from fairpp_app.jobs.position_sets import set_picks
from fairpp_app.jobs.positioning import Pick, Positioning, exports_dir, shared_point_labels, write_csv
from fairpp_app.jobs.run_metrics import SPLIT_CHOICES
from fairpp_app.store import browse
from fairpp_app.tui.screens.analysis_side_views import SIDE_VIEWS, SideViewsScreen
from fairpp_app.tui.screens.runs_dialog import RunsDialog
from fairpp_app.tui.widgets.bars import LETTER_COLOURS, bar, legend, stacked
from fairpp_app.tui.widgets.heatmap import Heatmap
from fairpp_app.tui.widgets.plots import RespondentMap
from fairpp_app.tui.widgets.reference_view import ReferenceView

TABS = (("similarity", "Similarity"), ("respondents", "Respondents"),
        ("dimensions", "Dimensions"), ("agreement", "Agreement"), ("tiers", "Tiers"),
        ("map", "Map"), ("reference", "Reference"), ("consistency", "Consistency"))


class AnalysisScreen(SideViewsScreen):
    SUB_TITLE = "Analysis"
    BINDINGS = [
        Binding("s", "save_csv", "Save CSV"),
        Binding("v", "save_svg", "Save SVG"),
        Binding("f", "save_figure", "Save figure"),
        Binding("m", "choose_runs", "Models"),
        Binding("g", "compute", "Recompute"),
        Binding("right_square_bracket", "tab(1)", "Next view", show=False),
        Binding("left_square_bracket", "tab(-1)", "Previous view", show=False),
    ]
    PALETTE = [
        ("Analysis: save the current view as CSV", "save_csv", "into the exports folder"),
        ("Analysis: save the current view as SVG", "save_svg", "a screenshot of this screen"),
        ("Analysis: save the current view as a figure", "save_figure",
         "PNG and SVG drawn as in the HTML report"),
        ("Analysis: choose model runs to show beside the personas", "choose_runs", ""),
        ("Analysis: recompute", "compute", "re-read the run"),
        ("Analysis: next view", "tab(1)", ""),
        ("Analysis: previous view", "tab(-1)", ""),
        *[(f"Analysis: show {title.lower()}", f"show_tab('{key}')", "") for key, title in TABS],
    ]

    @dataclass
    class Computed(Message):
        result: Positioning
        picks: tuple[Pick, ...] = ()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.result: Positioning | None = None
        self.split = "all"
        self.pending: tuple | None = None
        self.picks: list[Pick] = []

    def compose(self) -> ComposeResult:
        app = self.app
        runs = browse.runs_with_records(app.store)
        names = self.run_names = [r["name"] for r in runs]
        if app.run_name not in names:
            app.run_name = names[0] if names else None
        yield Header()
        with Horizontal(id="analysis-bar"):
            yield Label("run", classes="bar-label")
            yield Select([(r["name"], r["name"]) for r in runs],
                         value=app.run_name or Select.NULL, prompt="no run with answers",
                         id="an-run", compact=True)
            yield Label("split", classes="bar-label")
            yield Select([(s, s) for s in SPLIT_CHOICES], value="all", allow_blank=False,
                         id="an-split", compact=True)
            yield Label("target", classes="bar-label")
            yield Select([(f"P{p.number} {p.name}", p.slug) for p in app.personas],
                         value=app.target, allow_blank=False, id="an-target",
                         compact=True)
            yield Label("set", classes="bar-label")
            self.set_names = [row["name"] for row in app.store.list_position_sets()]
            yield Select([(n, n) for n in self.set_names], prompt="no position set", id="an-set",
                         compact=True)
        yield Static(id="an-status")
        with TabbedContent(id="an-tabs"):
            with TabPane("Similarity", id="similarity"):
                with VerticalScroll():
                    yield Static(id="sim-caption")
                    yield Heatmap(id="sim-heatmap")
            with TabPane("Respondents", id="respondents"):
                yield VerticalScroll(Static(id="resp-bars"))
            with TabPane("Dimensions", id="dimensions"):
                yield VerticalScroll(Static(id="dim-bars"))
            with TabPane("Agreement", id="agreement"):
                with VerticalScroll():
                    yield Static(id="agree-caption")
                    yield Heatmap(id="agree-heatmap")
            with TabPane("Tiers", id="tiers"):
                yield VerticalScroll(Static(id="tier-bars"))
            with TabPane("Map", id="map"):
                yield RespondentMap(id="an-map")
            with TabPane("Reference", id="reference"):
                yield ReferenceView(id="an-reference")
            with TabPane("Consistency", id="consistency"):
                yield VerticalScroll(Static(id="cons-body"))
        yield Footer()

    def on_mount(self) -> None:
        self._offer_surveys()
        self.action_compute()

    def on_screen_resume(self) -> None:
        # Runs finished or imported since this screen was made join the list; a run chosen
        # in the inspector meanwhile is the one shown.
        runs = [r["name"] for r in browse.runs_with_records(self.app.store)]
        if self.app.run_name not in runs:
            self.app.run_name = runs[0] if runs else None
        if runs != self.run_names:
            self.run_names = runs
            select = self.query_one("#an-run", Select)
            with self.prevent(Select.Changed):
                select.set_options([(name, name) for name in runs])
                if self.app.run_name:
                    select.value = self.app.run_name
        sets = [row["name"] for row in self.app.store.list_position_sets()]
        if sets != self.set_names:  # a set stored meanwhile (by the CLI)
            self.set_names = sets
            with self.prevent(Select.Changed):
                self.query_one("#an-set", Select).set_options([(n, n) for n in sets])
        self._offer_surveys()  # a survey imported meanwhile (by the CLI)
        if self.app.run_name and (self.result is None or self.result.run != self.app.run_name
                                  or self.result.target != self.app.target):
            with self.prevent(Select.Changed):
                self.query_one("#an-run", Select).value = self.app.run_name
                self.query_one("#an-target", Select).value = self.app.target
            self.action_compute()

    # ---- computing ----------------------------------------------------------------------------

    def action_compute(self) -> None:
        name = self.app.run_name
        status = self.query_one("#an-status", Static)
        if not name:
            status.update("No run with answers yet: simulate (4) or import one.")
            return
        self.side.clear()  # recomputed when shown: the run, split or records changed
        self.refresh_side()
        key = (name, self.split, self.app.target, tuple(self.picks))
        if key == self.pending:
            return  # already on its way
        self.pending = key
        status.update(f"computing {name} ({self.split})…")
        self.compute(*key)

    @work(thread=True, exclusive=True, exit_on_error=False, group="analysis")
    def compute(self, run: str, split: str, target: str, picks: tuple[Pick, ...]) -> None:
        from fairpp_app.jobs.positioning import position_run
        from fairpp_app.store.database import Store

        with Store(self.app.db_path) as store:
            result = position_run(store, run, list(self.app.personas), split, target, list(picks))
        self.post_message(self.Computed(result, picks))

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """The app's worker-failure handler calls this; the status line (or the failed
        side view) says it too."""
        if worker.group in SIDE_VIEWS:
            return super().worker_failed(worker, error)
        self.pending = None
        self.query_one("#an-status", Static).update(Text(user_message(error), style="red"))
        return None

    def on_analysis_screen_computed(self, message: Computed) -> None:
        r = message.result
        if (r.run, r.split, r.target, message.picks) != self.pending:
            return  # a superseded request finishing late
        self.pending = None
        status = self.query_one("#an-status", Static)
        self.result = r
        if not r.respondents:
            status.update(f"run {r.run} has no answers in split {r.split}")
        else:
            n = max(r.answered.values(), default=0)
            models = [name for names in r.picked for name in names]
            beside = f" · beside: {', '.join(models)}" if models else ""
            status.update(Text.from_markup(
                f"run [b]{r.run}[/b] · split {r.split} · {len(r.respondents)} respondents · up "
                f"to {n:,} questions each") + Text(beside))
        self.draw()

    # ---- drawing --------------------------------------------------------------------------------

    def label(self, slug: str) -> str:
        for p in self.app.personas:
            if p.slug == slug:
                return f"P{p.number} {p.name}"
        return slug

    def short(self, slug: str) -> str:
        for p in self.app.personas:
            if p.slug == slug:
                return f"P{p.number}"
        return slug[:10]

    def draw(self) -> None:
        r = self.result
        if r is None:
            return
        labels = {s: self.label(s) for s in r.respondents}
        shorts = {s: self.short(s) for s in r.personas}
        self.query_one("#sim-caption", Static).update(Text.assemble(
            "Persona × persona similarity (1 − JS distance of A/B/C shares)\n",
            legend(MIN_SIMILARITY, 1.0, 16)))
        self.query_one("#sim-heatmap", Heatmap).show(
            r.personas, r.personas, r.similarity, MIN_SIMILARITY, 1.0, labels, shorts)
        self.query_one("#agree-caption", Static).update(Text.assemble(
            "Respondent × persona agreement (share of questions answered alike)\n",
            legend(0.0, 1.0, 16)))
        self.query_one("#agree-heatmap", Heatmap).show(
            r.respondents, r.personas, r.agreement, 0.0, 1.0, labels, shorts)
        self.query_one("#resp-bars", Static).update(self._respondent_bars(r, labels))
        self.query_one("#dim-bars", Static).update(self._dimension_bars(r, labels))
        self.query_one("#tier-bars", Static).update(self._tier_bars(r))
        self.query_one(RespondentMap).show(
            r.coords, shared_point_labels(r.coords, {s: self.short(s) for s in r.respondents}),
            r.personas, r.explained)

    def _respondent_bars(self, r: Positioning, labels: dict) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right")
        # Models first: they are what this view is opened for once runs are placed beside.
        models = [x for x in r.respondents if x not in r.personas]
        for resp in [*models, *r.personas]:
            table.add_row(Text(labels[resp], style="bold"), "", "")
            sims = r.similarity.get(resp, {})
            best = max((v for v in sims.values() if v is not None), default=None)
            for p in r.personas:
                v = sims.get(p)
                style = "bold green" if v is not None and v == best else "cyan"
                table.add_row(f"  {labels.get(p, p)}", bar(v, 24, MIN_SIMILARITY, 1.0, style),
                              "-" if v is None else f"{v:.3f}")
        return table

    def _dimension_bars(self, r: Positioning, labels: dict) -> Group:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        key = Text("shares of ")
        for letter in "ABC":
            key.append(f" {letter} ", style=f"bold {LETTER_COLOURS[letter]}")
        key.append(" per dimension (A = first pole, B = second pole, C = no preference)")
        for resp in r.respondents:
            table.add_row(Text(labels.get(resp, resp), style="bold"), "", "")
            for d, shares in r.shares.get(resp, {}).items():
                a, b = dimension_poles(d)
                table.add_row(f"  {d} {a[:12]}/{b[:12]}", stacked(shares, 24),
                              "  ".join(f"{x:.2f}" for x in shares))
        return Group(key, table)

    def _tier_bars(self, r: Positioning) -> Group | Text:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right")
        table.add_column(justify="right")
        if not r.tiers:
            return Text(f"persona {r.target} has no answers in this run")
        title = Text(f"Tiers for target {self.label(r.target)}: tier = 1 + the number of other "
                     "personas answering differently", style="bold")
        table.add_row("tier", "", "questions", "weight each")
        top = max(t["count"] for t in r.tiers) or 1
        for t in r.tiers:
            table.add_row(f"  {t['tier']}", bar(t["count"], 30, 0, top, "magenta"),
                          f"{t['count']:,}", f"{t['weight']:.6f}")
        return Group(title, table)

    # ---- controls -------------------------------------------------------------------------

    @on(Select.Changed, "#an-run")
    def _run_changed(self, event: Select.Changed) -> None:
        name = None if event.value is Select.NULL else event.value
        if name != self.app.run_name or self.result is None or self.result.run != name:
            self.app.run_name = name
            self.action_compute()

    @on(Select.Changed, "#an-split")
    def _split_changed(self, event: Select.Changed) -> None:
        if event.value != self.split:
            self.split = event.value
            self.action_compute()

    @on(Select.Changed, "#an-target")
    def _target_changed(self, event: Select.Changed) -> None:
        if event.value != self.app.target:
            self.app.target = event.value
            self.action_compute()

    def current_view(self) -> str:
        return self.query_one(TabbedContent).active or TABS[0][0]

    def action_tab(self, step: int) -> None:
        keys = [k for k, _ in TABS]
        i = keys.index(self.current_view())
        self.query_one(TabbedContent).active = keys[(i + step) % len(keys)]

    def action_show_tab(self, key: str) -> None:
        self.query_one(TabbedContent).active = key

    def _export_name(self, ext: str) -> str:
        return f"{self._export_stem()}.{ext}"

    def _export_stem(self) -> str:
        view = self.current_view()
        if view in SIDE_VIEWS:
            run, split, survey = self.side_key(view)
            view = f"reference-{survey}" if survey else view
        else:
            run, split = self.result.run, self.result.split
        return f"{run}-{split}-{view}".replace("/", "-")

    def _computed(self) -> bool:
        """Whether the view shown has figures to save (a warning says so when not)."""
        view = self.current_view()
        if (self.side_result(view) if view in SIDE_VIEWS else self.result) is None:
            self.notify("nothing computed yet", severity="warning")
            return False
        return True

    def action_save_csv(self) -> None:
        if not self._computed():
            return
        view = self.current_view()
        header, rows = self.side_table(view) if view in SIDE_VIEWS else self.result.table(view)
        path = write_csv(exports_dir() / self._export_name("csv"), header, rows)
        self.last_export = path
        self.notify(f"saved {path}", title="CSV")

    @dataclass
    class FigureSaved(Message):
        paths: list

    def action_save_figure(self) -> None:
        if not self._computed():
            return
        view = self.current_view()
        result = self.side_result(view) if view in SIDE_VIEWS else self.result
        self.save_figure(result, view, self._export_stem())

    @work(thread=True, exit_on_error=False, group="figure")
    def save_figure(self, result: Positioning | dict, view: str, stem: str) -> None:
        from fairpp_app.jobs import figures

        slugs = [p.slug for p in self.app.personas]
        labels = {s: self.label(s) for s in [*slugs, *self._respondents(result)]}
        short = {s: self.short(s) for s in slugs}
        if view in SIDE_VIEWS:
            drawn = self.side_figure(view, result, stem, {**labels, **short})
        else:
            drawn = figures.view_figure(result, view, labels, short)
        # "-figure": beside the screenshot `v` writes under the view's own name.
        paths = figures.write_files(drawn, exports_dir(), f"{stem}-figure")
        self.post_message(self.FigureSaved(paths))

    @staticmethod
    def _respondents(result: Positioning | dict) -> list[str]:
        return result["respondents"] if isinstance(result, dict) else result.respondents

    def on_analysis_screen_figure_saved(self, message: FigureSaved) -> None:
        self.last_export = message.paths[0]
        self.notify(f"saved {message.paths[0]} and .png", title="Figure")

    def action_choose_runs(self) -> None:
        current = self.app.run_name
        runs = [r for r in browse.runs_with_records(self.app.store) if r["name"] != current]
        if not runs:
            self.notify("no other run with answers to place beside the personas", severity="warning")
            return

        def chosen(names: list[str] | None) -> None:
            if names is None:
                return
            labels = {p.run: p.label for p in self.picks}
            picks = [Pick(n, labels.get(n)) for n in names]
            if picks != self.picks:
                self.picks = picks
                self.action_compute()

        self.app.push_screen(RunsDialog(runs, [p.run for p in self.picks]), chosen)

    @on(Select.Changed, "#an-set")
    def _set_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:
            self.picks = []
        else:
            chosen = self.app.store.get_position_set(event.value)
            self.picks = set_picks(chosen)
            self.app.run_name = chosen["persona_run"]
            self.split = chosen["split"]
            with self.prevent(Select.Changed):
                self.query_one("#an-run", Select).value = chosen["persona_run"]
                self.query_one("#an-split", Select).value = chosen["split"]
        self.action_compute()

    def action_save_svg(self) -> None:
        if not self._computed():
            return
        folder = exports_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = self.app.save_screenshot(self._export_name("svg"), str(folder))
        self.last_export = path
        self.notify(f"saved {path}", title="SVG")

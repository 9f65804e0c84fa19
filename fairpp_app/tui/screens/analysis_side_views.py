"""The Analysis screen's side views: Reference and Consistency, computed apart.

These two answer other questions than the positioning views (how close the respondents
are to people, whether they keep their answers) and cost more (a thousand draws per
survey segment; a second pass over the run's records), so each is computed in its own
worker group only once its tab is shown, and kept until the run, split or survey changes.
Both read the run's own respondents, as ``fairpp metrics --reference`` does: models placed
beside from other runs join the positioning views only.

``AnalysisScreen`` derives from this class (the workers must belong to a screen: a
worker's ``StateChanged`` reaches only the node that started it, and ``BaseScreen`` passes
a screen's on to the app's one failure handler); it supplies ``current_view``, ``label``,
``split``, ``picks`` and the tabs named in ``SIDE_VIEWS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.message import Message
from textual.widgets import Select, Static, TabbedContent

from fairpp_app.core.errors import user_message
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.widgets import consistency_view
from fairpp_app.tui.widgets.reference_view import NO_SURVEY, ReferenceView, reference_table

#: The side views' tab ids; each is also its worker's group.
SIDE_VIEWS = ("reference", "consistency")


class SideViewsScreen(BaseScreen):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.survey: str | None = None
        # view -> (key, result) computed, and view -> key on its way (see side_key).
        self.side: dict[str, tuple[tuple, dict]] = {}
        self.side_pending: dict[str, tuple] = {}

    def worker_failed(self, worker, error: BaseException) -> str | None:
        """A side view's failure is written in that view."""
        self.side_pending.pop(worker.group, None)
        self._side_note(worker.group, Text(user_message(error), style="red"))
        return None

    def _offer_surveys(self) -> None:
        names = [row["name"] for row in self.app.store.list_surveys()]
        with self.prevent(Select.Changed):
            self.survey = self.query_one(ReferenceView).set_surveys(names, self.survey)


    def side_key(self, view: str) -> tuple | None:
        """What a side view's figures depend on; None when there is nothing to compute."""
        if not self.app.run_name or (view == "reference" and not self.survey):
            return None
        return (self.app.run_name, self.split, self.survey if view == "reference" else None)

    def refresh_side(self) -> None:
        """Compute the side view shown, unless its figures are there or on their way."""
        view = self.current_view()
        if view not in SIDE_VIEWS:
            return
        key = self.side_key(view)
        if key is None:
            if not self.app.run_name:
                self._side_note(view, "No run with answers yet: simulate (4) or import one.")
            elif not self.query_one(ReferenceView).surveys:
                self._side_note(view, NO_SURVEY)
            else:
                self._side_note(view, "Pick a survey above.")
            return
        if self.side.get(view, (None,))[0] == key or self.side_pending.get(view) == key:
            return
        self.side_pending[view] = key
        what = f"survey {key[2]}" if view == "reference" else "answer consistency"
        self._side_note(view, f"computing {what} for {key[0]} ({key[1]})…")
        if view == "reference":
            self.compute_reference(key)
        else:
            self.compute_consistency(key)

    @dataclass
    class SideComputed(Message):
        view: str
        key: tuple
        result: dict

    @work(thread=True, exclusive=True, exit_on_error=False, group="reference")
    def compute_reference(self, key: tuple) -> None:
        from fairpp_app.jobs.survey import compare
        from fairpp_app.store.database import Store

        run, split, survey = key
        with Store(self.app.db_path) as store:
            result = compare(store, run, survey, list(self.app.personas), split)
        self.post_message(self.SideComputed("reference", key, result))

    @work(thread=True, exclusive=True, exit_on_error=False, group="consistency")
    def compute_consistency(self, key: tuple) -> None:
        from fairpp_app.jobs.run_metrics import run_metrics
        from fairpp_app.store.database import Store

        run, split, _ = key
        with Store(self.app.db_path) as store:
            result = run_metrics(store, run, list(self.app.personas), split)
        self.post_message(self.SideComputed("consistency", key, result))

    def on_side_views_screen_side_computed(self, message: SideComputed) -> None:
        if message.key != self.side_key(message.view):
            return  # the run, split or survey changed while it was computed
        self.side_pending.pop(message.view, None)
        self.side[message.view] = (message.key, message.result)
        self.draw_side(message.view)

    def draw_side(self, view: str) -> None:
        result = self.side[view][1]
        labels = {s: self.label(s) for s in [*result["respondents"],
                                             *(p.slug for p in self.app.personas)]}
        # Said rather than left out silently: the other views show the models placed beside.
        aside = (Text("models placed beside from other runs are not compared here (as in "
                      "`fairpp metrics`, one run's respondents)", style="dim")
                 if self.picks else None)
        if not result["respondents"]:
            self._side_note(view, f"run {result['run']} has no answers in split {result['split']}")
        elif view == "reference":
            self.query_one(ReferenceView).show(result, labels, aside)
        else:
            self._side_note(view, consistency_view.render(result, labels, aside))

    def _side_note(self, view: str, text) -> None:
        if view == "reference":
            self.query_one(ReferenceView).note(text)
        else:
            self.query_one("#cons-body", Static).update(text)

    def side_result(self, view: str) -> dict | None:
        """The side view's figures if they are those of what the screen shows now."""
        key, result = self.side.get(view, (None, None))
        return result if key is not None and key == self.side_key(view) else None

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.refresh_side()

    @on(Select.Changed, "#an-survey")
    def _survey_changed(self, event: Select.Changed) -> None:
        name = None if event.value is Select.NULL else event.value
        if name != self.survey:
            self.survey = name
            self.refresh_side()

    def side_table(self, view: str) -> tuple[list[str], list[list]]:
        """The side view's figures as (header, rows) for CSV."""
        result = self.side_result(view)
        if view == "reference":
            return reference_table(result)
        return consistency_view.consistency_table(result)

    @staticmethod
    def side_figure(view: str, result: dict, stem: str, labels: dict[str, str]):
        """A side view's figures drawn by ``jobs.figures`` (in the figure worker)."""
        from fairpp_app.jobs import figures

        if view == "reference":
            return figures.reference_figure(stem, result, labels)
        return figures.consistency_figure(stem, result, labels)

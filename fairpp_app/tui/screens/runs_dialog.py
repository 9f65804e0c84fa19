"""Which runs' models the Analysis screen places among the personas: a checklist in a modal.

A stored position set (``fairpp position --name``) picks its runs at once from the
Analysis screen's bar; this dialog is for any other mix, evaluated adapters' ``eval-NAME``
runs included. Toggling is the list's own (space or enter); Escape applies the ticks, so
there is no second key to learn.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static


class RunsDialog(ModalScreen[list[str]]):
    BINDINGS = [Binding("escape,m", "done", "Apply")]

    def __init__(self, runs: list[dict], chosen: list[str]) -> None:
        super().__init__()
        self.runs, self.chosen = runs, chosen

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="runs-dialog"):
            yield Static("[b]Models beside the personas[/b]: tick the runs whose model "
                         "respondents join the view (space toggles, Esc applies)",
                         classes="dialog-title", markup=True)
            yield SelectionList[str](
                *[(f"{r['name']}  ({r['records']:,} records)", r["name"], r["name"] in self.chosen)
                  for r in self.runs], id="runs-list")

    def action_done(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

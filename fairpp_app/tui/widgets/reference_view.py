"""The Analysis screen's Reference view: a run's respondents against human survey segments.

The numbers are ``survey.compare``'s (the CLI's ``fairpp metrics --reference``). The view
is one block per segment, respondents down the side, rather than the CLI's respondent x
segment tables: every figure carries its 95% interval, and a row of seven segments'
"0.812 [0.790, 0.833]" cells does not fit a terminal, while a block per segment scrolls.
The survey selector lives in the view because nothing else on the screen depends on it;
it is hidden while the database holds no survey, and a line says how to import one.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, Select, Static

from fairpp_app.core.metrics import MIN_SIMILARITY
from fairpp_app.tui.widgets.bars import bar

FIGURES = ("similarity", "agreement", "match")
EXPLAINED = (
    "similarity: 1 − JS distance between the segment's mean answer shares and the "
    "respondent's, over the items both have",
    "agreement: share of items where the respondent chose the segment's most common answer",
    "match: chance that a random member of the segment gives the respondent's answer",
)
NO_SURVEY = ("No survey imported. `fairpp import survey FILE --name NAME` brings human answer "
             "shares per segment (README: Human reference data); this view then compares "
             "every respondent with every segment.")


def with_interval(summary: dict, key: str) -> str:
    value = summary.get(key)
    if value is None:
        return "-"
    lo, hi = summary[f"{key}_ci"]
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def reference_table(ref: dict) -> tuple[list[str], list[list]]:
    """The comparison as (header, rows) for CSV: one row per segment and respondent."""
    header = ["segment", "persona", "respondent", "items"]
    for key in FIGURES:
        header += [key, f"{key}_lo", f"{key}_hi"]
    rows = []
    for seg in ref["segments"]:
        for r in ref["respondents"]:
            c = ref["comparison"][r][seg["segment"]]
            row = [seg["segment"], seg["persona"], r, c["items"]]
            for key in FIGURES:
                ci = c.get(f"{key}_ci") or (None, None)
                row += [c.get(key), *ci]
            rows.append(row)
    return header, rows


class ReferenceView(VerticalScroll):
    """The survey selector and the comparison; ``show`` draws a ``compare`` result."""

    surveys: list[str] = []  # the names offered

    def compose(self) -> ComposeResult:
        with Horizontal(id="ref-bar"):
            yield Label("survey", classes="bar-label")
            yield Select([], prompt="no survey", id="an-survey", compact=True)
        yield Static(id="ref-body")

    def set_surveys(self, names: list[str], chosen: str | None) -> str | None:
        """Offer ``names``; returns the survey selected (``chosen`` if offered, else the
        newest), None when there is none. The caller keeps ``Select.Changed`` quiet."""
        self.surveys = names
        select = self.query_one("#an-survey", Select)
        self.query_one("#ref-bar").display = bool(names)
        select.set_options([(n, n) for n in names])
        if not names:
            self.query_one("#ref-body", Static).update(NO_SURVEY)
            return None
        chosen = chosen if chosen in names else names[-1]
        select.value = chosen
        return chosen

    def note(self, text: str | Text) -> None:
        self.query_one("#ref-body", Static).update(text)

    def show(self, ref: dict, labels: dict[str, str], aside: Text | None = None) -> None:
        """Draw ``ref`` (``survey.compare``'s dict); ``labels`` name respondents and personas;
        ``aside``: a line under the heading."""
        head = Text.assemble(
            (f"Survey {ref['survey']} against run {ref['run']} ({ref['split']} split)", "bold"),
            f": 95% intervals from the sample sizes ({ref['draws']:,} draws); "
            "* marks the segment's own persona\n",
            "\n".join(EXPLAINED), style="")
        blocks: list = [head, *([aside] if aside else [])]
        for seg in ref["segments"]:
            blocks += ["", self._segment(ref, seg, labels)]
        self.note(Group(*blocks))

    def _segment(self, ref: dict, seg: dict, labels: dict[str, str]) -> Group:
        name, persona = seg["segment"], seg["persona"]
        closest = ref["closest_persona"].get(name)
        people = seg["people"]
        title = Text.assemble(
            (name, "bold"), f" → {labels.get(persona, persona)} · {seg['items']} items · "
            f"{people['min']}–{people['max']} people per item (median {people['median']:g}) · "
            f"distance from uniform {seg['uniform_distance']:.3f} · closest persona ",
            (labels.get(closest, closest) if closest else "-",
             "bold green" if closest == persona else "bold yellow"))
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
        table.add_column("respondent", no_wrap=True)
        table.add_column("similarity", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("agreement", no_wrap=True)
        table.add_column("match", no_wrap=True)
        table.add_column("items", justify="right")
        best = max((ref["comparison"][r][name]["similarity"] for r in ref["respondents"]
                    if ref["comparison"][r][name]["similarity"] is not None), default=None)
        for r in ref["respondents"]:
            c = ref["comparison"][r][name]
            own = r == persona
            style = "bold green" if c["similarity"] is not None and c["similarity"] == best else "cyan"
            table.add_row(Text(("* " if own else "  ") + labels.get(r, r),
                               style="bold" if own else ""),
                          bar(c["similarity"], 16, MIN_SIMILARITY, 1.0, style),
                          with_interval(c, "similarity"), with_interval(c, "agreement"),
                          with_interval(c, "match"), str(c["items"]))
        return Group(title, table)

"""The Analysis screen's Consistency view: whether each respondent keeps its answer.

The figures are ``run_metrics``'s ``consistency`` and ``uniform_distance`` (the CLI's
``fairpp metrics`` "answer consistency" table), read from the run the respondents answered
in. Each check is explained in one line above the table, because a share means little
without what was held fixed; a check a run has no data for shows "-" and the line says
what would produce it.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from fairpp_app.tui.widgets.bars import bar

CHECKS = (("order", "questions"), ("framing", "pairs"), ("wording", "pairs"))
EXPLAINED = {
    "order": "order: share of questions whose answer stays when options A and B are swapped; "
             "flips: one order chose A, the other B; n: questions scored in both orders "
             "(runs simulated with --debias permute)",
    "framing": "framing: share of framing 1/framing 2 pairs (same problem, group and "
               "dimension) answered with the same pole; flips: A in one, B in the other; "
               "pairs: both answers parsed",
    "wording": "wording: share of questions answered with the same pole in fairpp's and the "
               "official wording; flips and pairs as for framing",
    "uniform": "from uniform: JS distance of the answer shares from ⅓ ⅓ ⅓ (near 0: shares "
               "close to uniform, which look similar to many personas whatever the answers); "
               "p: mean over questions, from the option probabilities",
}


def respondents_of(result: dict) -> list[str]:
    """The run's respondents, then any the consistency figures name besides (a respondent
    with answers to the other bank only)."""
    return [*result["respondents"],
            *(r for r in result.get("consistency", {}) if r not in result["respondents"])]


def checks_present(result: dict) -> list[str]:
    """The checks shown: order and framing always, wording once a run has it."""
    wording = any((c or {}).get("wording") for c in result["consistency"].values())
    return ["order", "framing", *(["wording"] if wording else [])]


def consistency_table(result: dict) -> tuple[list[str], list[list]]:
    """``run_metrics``'s consistency figures as (header, rows) for CSV."""
    checks = checks_present(result)
    header = ["respondent"]
    for check, count in CHECKS:
        if check in checks:
            header += [f"{check}_share", f"{check}_flips", f"{check}_{count}"]
    header += ["uniform_shares", "uniform_probabilities"]
    rows = []
    for r in respondents_of(result):
        c = result["consistency"].get(r) or {}
        row = [r]
        for check, count in CHECKS:
            if check in checks:
                figures = c.get(check) or {}
                row += [figures.get("share"), figures.get("flips"), figures.get(count)]
        u = result["uniform_distance"].get(r) or {}
        rows.append([*row, u.get("shares"), u.get("probabilities")])
    return header, rows


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def render(result: dict, labels: dict[str, str], aside: Text | None = None) -> Group:
    """The table and its explanations, for ``result`` of ``run_metrics``; ``aside``: a line
    under them."""
    checks = checks_present(result)
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    table.add_column("respondent", no_wrap=True)
    for check, count in CHECKS:
        if check in checks:
            table.add_column(check, no_wrap=True)
            table.add_column("", justify="right")
            table.add_column("flips", justify="right")
            table.add_column("n" if check == "order" else count, justify="right")
    table.add_column("from uniform", justify="right")
    table.add_column("p", justify="right")
    for r in respondents_of(result):
        c = result["consistency"].get(r) or {}
        cells: list = [labels.get(r, r)]
        for check, count in CHECKS:
            if check in checks:
                figures = c.get(check) or {}
                share = figures.get("share")
                cells += [bar(share, 12, 0.0, 1.0, "green"), _num(share), _num(figures.get("flips")),
                          _num(figures.get(count))]
        u = result["uniform_distance"].get(r) or {}
        table.add_row(*cells, _num(u.get("shares")), _num(u.get("probabilities")))
    lines = [Text(f"Answer consistency in run {result['run']} ({result['split']} split)",
                  style="bold")]
    lines += [Text(EXPLAINED[k], style="dim") for k in (*checks, "uniform")]
    if not any((result["consistency"].get(r) or {}).get("order") for r in result["respondents"]):
        lines.append(Text("no record of this run was scored in both option orders: simulate "
                          "with --debias permute (runs from before schema 6 kept only the "
                          "average)", style="yellow"))
    if aside:
        lines.append(aside)
    return Group(*lines, Text(""), table)

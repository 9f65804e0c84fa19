"""A matrix drawn as a table whose cells are coloured by value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable

from fairpp_app.tui.widgets.bars import heat_cell

LABEL_WIDTH = 22


class Heatmap(DataTable):
    """Rows x columns of numbers on a colour scale from ``lo`` to ``hi``."""

    DEFAULT_CSS = """
    Heatmap { height: auto; max-height: 100%; }
    """

    def __init__(self, **kwargs) -> None:
        # No cell padding: the cells carry their own spaces, so the colour fills the cell.
        # The row labels are a fixed column, so they stay in view whatever the scroll.
        super().__init__(cursor_type="cell", zebra_stripes=False, cell_padding=0,
                         fixed_columns=1, **kwargs)
        self.values: dict[str, dict[str, float | None]] = {}

    def show(self, rows: Sequence[str], columns: Sequence[str],
             values: Mapping[str, Mapping[str, float | None]], lo: float, hi: float,
             row_labels: Mapping[str, str] | None = None,
             column_labels: Mapping[str, str] | None = None) -> None:
        self.clear(columns=True)
        self.values = {r: dict(values.get(r, {})) for r in rows}
        self.add_column(Text(""), key="_row")
        for c in columns:
            label = (column_labels or {}).get(c, c)
            self.add_column(Text(label, justify="center"), key=c, width=max(7, len(label)))
        for r in rows:
            label = (row_labels or {}).get(r, r)
            if len(label) > LABEL_WIDTH:
                label = label[:LABEL_WIDTH - 1] + "…"
            self.add_row(Text(f" {label} ", style="bold"),
                         *(heat_cell(self.values[r].get(c), lo, hi) for c in columns), key=r)
        self.move_cursor(row=0, column=1, animate=False)
        self.scroll_home(animate=False)

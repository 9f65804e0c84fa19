"""A DataTable that holds one page of a longer list and asks for the next page at its edges.

The question bank is too long to put in a table at once; the screen loads a page, and
when the cursor tries to move past the first or last row this table posts ``PageEdge``
so the screen can load the neighbouring page and keep the cursor moving.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.widgets import DataTable


class PagedTable(DataTable):
    @dataclass
    class PageEdge(Message):
        """The cursor pushed against the top (``direction=-1``) or bottom (``+1``) edge."""

        table: PagedTable
        direction: int

        @property
        def control(self) -> PagedTable:
            return self.table

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.PageEdge(self, 1))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.PageEdge(self, -1))
            return
        super().action_cursor_up()

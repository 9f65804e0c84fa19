"""Questions: the whole bank, one page at a time, with filters; Enter opens the inspector.

The table never holds more than one page (``PAGE_SIZE`` rows). Paging and filtering are
SQL in ``fairpp_app.store.browse``, answered from indexes in milliseconds, so they run on the UI
thread and the table is always in step with the filter. Moving the cursor past either end
of the page loads the neighbouring page. The filter column (eight Selects, the costliest
part of the screen to build) is mounted lazily, right after the first page is on screen.

The list shows one bank at a time, fairpp's own unless the bank Select at the top of the
filter column (which lists the banks there are) says otherwise; the other filters offer the
values of the bank shown.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from fairpp_app.core.questions import dimension_poles
from fairpp_app.store import browse
from fairpp_app.tui.widgets.paged_table import PagedTable

PAGE_SIZE = 100
# The question text comes early so that it is on screen at 80 columns.
COLUMNS = (("id", "id", 16), ("split", "split", 5), ("d", "dimension", 1), ("f", "framing", 1),
           ("group", "group_name", 14), ("question", "text", 0), ("topic", "topic", 26))
NARROW = 100  # below this width the filter column starts hidden (f shows it)
FILTERS_WIDTH = 30  # as in app.tcss
MIN_TEXT = 40
LABELS = {"topic": "topic", "category": "category", "problem": "problem",
          "group_type": "group type", "group": "group", "dimension": "dimension",
          "framing": "framing", "split": "split"}
TEXT_DEBOUNCE_S = 0.3


def _option_label(name: str, value) -> str:
    if name == "dimension":
        a, b = dimension_poles(int(value))
        return f"{value} {a} / {b}"
    if name == "framing":
        return {1: "1 which criterion", 2: "2 which explanation"}.get(value, str(value))
    return str(value)


class QuestionsScreen(Screen):
    SUB_TITLE = "Questions"
    AUTO_FOCUS = "#q-table"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("f", "toggle_filters", "Filters"),
        Binding("x", "clear_filters", "Clear filters"),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", show=False),
    ]
    PALETTE = [
        ("Search questions", "search", "free text over question, options, problem and group"),
        ("Clear question filters", "clear_filters", "show the whole bank"),
        ("Show or hide question filters", "toggle_filters", "the filter column"),
        ("Next page of questions", "page(1)", f"{PAGE_SIZE} questions per page"),
        ("Previous page of questions", "page(-1)", ""),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filter = browse.QuestionFilter()
        self.page_offset = 0
        self.total = 0
        self.rows: dict[str, dict] = {}
        self._text_timer = None

    def compose(self) -> ComposeResult:
        facets = browse.facet_values(self.app.store, self.filter.bank)
        self.bank_state = self._bank_state()
        yield Header()
        with Horizontal():
            hidden = "-hidden" if self.app.size.width < NARROW else ""
            with Lazy(VerticalScroll(id="filters", classes=hidden)):
                yield Input(placeholder="search text  (/)", id="f-text", compact=True)
                yield Label("bank", classes="filter-label")
                yield Select(self._bank_options(), value=self.filter.bank, allow_blank=False,
                             id="f-bank", compact=True)
                for name, label in LABELS.items():
                    yield Label(label, classes="filter-label")
                    yield Select([(_option_label(name, v), v) for v in facets[name]],
                                 prompt="any", id=f"f-{name}", compact=True)
                yield Button("Clear filters (x)", id="clear-filters")
            with Vertical(id="table-pane"):
                yield Static(id="q-status")
                yield PagedTable(id="q-table", cursor_type="row", zebra_stripes=True)
                yield Static(id="q-preview")
        yield Footer()

    def on_mount(self) -> None:
        self.text_width = 0
        self._fit_columns()
        self.apply(self.filter)

    def _filters_shown(self) -> bool:
        filters = self.query("#filters")
        if filters:
            return not filters.first().has_class("-hidden")
        return self.app.size.width >= NARROW  # not mounted yet (lazy)

    def _fit_columns(self) -> bool:
        """Give the question text the width the other columns leave; True when it changed."""
        space = self.app.size.width - (FILTERS_WIDTH if self._filters_shown() else 0) - 2
        fixed = sum(w for _, key, w in COLUMNS if key != "text") + 2 * len(COLUMNS)
        width = max(MIN_TEXT, space - fixed)
        if width == self.text_width:
            return False
        self.text_width = width
        table = self.query_one(PagedTable)
        table.clear(columns=True)
        for label, key, w in COLUMNS:
            table.add_column(label, key=key, width=width if key == "text" else w)
        return True

    def on_resize(self) -> None:
        self._refit()

    def _refit(self) -> None:
        if self._fit_columns() and self.total:
            self.load(self.page_offset, self.query_one(PagedTable).cursor_row)

    def _bank_state(self) -> tuple:
        """What the change check compares: every bank's size (the bank shown among them)."""
        return tuple(sorted((bank, sum(splits.values()))
                            for bank, splits in self.app.store.bank_counts().items()))

    def _bank_options(self) -> list[tuple[str, str]]:
        sizes = dict(self.bank_state) or {self.filter.bank: 0}
        return [(f"{bank} ({n:,})", bank) for bank, n in sizes.items()]

    def on_screen_resume(self) -> None:
        # The bank may have been built or grown (scenarios, an import of the official
        # release) since this screen was made.
        if self._bank_state() != self.bank_state:
            self._refresh_facets()
            self.apply(self.filter)
        # Come back where the inspector left off.
        qid = getattr(self.app, "inspected_qid", None)
        if qid and self.current_id() != qid:
            self.show_question(qid)

    # ---- loading ---------------------------------------------------------------------------

    def _refresh_facets(self) -> None:
        """The filter widgets' options for the bank shown; the other filters start over."""
        self.bank_state = self._bank_state()
        self.filter = self.filter.with_(**dict.fromkeys(LABELS))
        if not self.query("#filters"):
            return
        facets = browse.facet_values(self.app.store, self.filter.bank)
        with self.prevent(Select.Changed):
            banks = self.query_one("#f-bank", Select)
            banks.set_options(self._bank_options())
            banks.value = self.filter.bank
            for name in LABELS:
                select = self.query_one(f"#f-{name}", Select)
                select.set_options([(_option_label(name, v), v) for v in facets[name]])

    def apply(self, flt: browse.QuestionFilter) -> None:
        """Show the first page of a filter (also the app's filter, for the inspector)."""
        self.filter = flt
        self.app.question_filter = flt
        self.total = browse.count(self.app.store, flt)
        self.load(0)

    def load(self, offset: int, cursor: int = 0) -> None:
        self.page_offset = max(0, offset)
        rows = browse.page(self.app.store, self.filter, self.page_offset, PAGE_SIZE)
        self.rows = {row["id"]: row for row in rows}
        table = self.query_one(PagedTable)
        table.clear()
        for row in rows:
            text = row["text"] if len(row["text"]) <= 200 else row["text"][:199] + "…"
            table.add_row(*(text if key == "text" else row[key] for _, key, _ in COLUMNS),
                          key=row["id"])
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)
        self._status(len(rows))

    def _status(self, n: int) -> None:
        status = self.query_one("#q-status", Static)
        if self.total == 0:
            empty = self.app.store.question_count(bank=None) == 0
            status.update("No questions yet: build the bank on Home (1, then b)." if empty
                          else f"No question matches {self.filter.describe()}.")
            return
        first, last = self.page_offset + 1, self.page_offset + n
        bank = f"{self.filter.bank} bank  ·  " if len(self.bank_state) > 1 else ""
        status.update(f"[b]{first:,}–{last:,}[/b] of {self.total:,}  ·  {bank}"
                      f"{self.filter.describe()}  ·  Enter inspects, \\[ ] pages")

    def current_id(self) -> str | None:
        table = self.query_one(PagedTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def show_question(self, qid: str) -> None:
        pos = browse.position(self.app.store, self.filter, qid)
        if pos is None:
            return
        self.load(pos // PAGE_SIZE * PAGE_SIZE, pos % PAGE_SIZE)

    # ---- events ----------------------------------------------------------------------------

    @on(Select.Changed, "#f-bank")
    def _bank_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL and event.value != self.filter.bank:
            self.filter = self.filter.with_(bank=event.value)
            self._refresh_facets()
            self.apply(self.filter)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        name = event.select.id.removeprefix("f-")
        if name == "bank":
            return  # _bank_changed: a bank is never "any"
        value = None if event.value is Select.NULL else event.value
        if getattr(self.filter, name) != value:
            self.apply(self.filter.with_(**{name: value}))

    @on(Input.Changed, "#f-text")
    def _text_changed(self, event: Input.Changed) -> None:
        if self._text_timer is not None:
            self._text_timer.stop()
        self._text_timer = self.set_timer(TEXT_DEBOUNCE_S, self._apply_text)

    @on(Input.Submitted, "#f-text")
    def _text_submitted(self) -> None:
        self._apply_text()
        self.query_one(PagedTable).focus()

    def _apply_text(self) -> None:
        text = self.query_one("#f-text", Input).value
        if text != self.filter.text:
            self.apply(self.filter.with_(text=text))

    @on(PagedTable.PageEdge)
    def _page_edge(self, event: PagedTable.PageEdge) -> None:
        self.action_page(event.direction, at_edge=True)

    @on(DataTable.RowHighlighted, "#q-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.rows.get(event.row_key.value)
        if row is not None:
            self.query_one("#q-preview", Static).update(
                f"[b]{row['topic']}[/b] › {row['problem']} › {row['group_name']}\n"
                + row["text"].replace("[", r"\["))

    @on(DataTable.RowSelected, "#q-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        from fairpp_app.tui.screens.inspector_screen import InspectorScreen

        self.app.push_screen(InspectorScreen(event.row_key.value, self.filter))

    @on(Button.Pressed, "#clear-filters")
    def _clear_pressed(self) -> None:
        self.action_clear_filters()

    # ---- actions ---------------------------------------------------------------------------

    def action_page(self, direction: int, at_edge: bool = False) -> None:
        target = self.page_offset + direction * PAGE_SIZE
        if target < 0 or target >= self.total:
            return
        self.load(target, PAGE_SIZE - 1 if direction < 0 and at_edge else 0)

    def action_search(self) -> None:
        filters = self.query("#filters")
        if filters:
            filters.first().remove_class("-hidden")
            self.query_one("#f-text", Input).focus()
            self._refit()

    def action_toggle_filters(self) -> None:
        filters = self.query("#filters")
        if filters:
            hidden = filters.first().toggle_class("-hidden").has_class("-hidden")
            if hidden:
                self.query_one(PagedTable).focus()
            self._refit()

    def action_clear_filters(self) -> None:
        if not self.query("#filters"):
            return
        with self.prevent(Select.Changed, Input.Changed):
            for name in LABELS:
                self.query_one(f"#f-{name}", Select).clear()
            self.query_one("#f-text", Input).value = ""
        self.apply(browse.QuestionFilter(bank=self.filter.bank))  # the bank is not a filter

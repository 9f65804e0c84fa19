"""Questions: one page at a time, filters narrow it, Enter opens the inspector."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static

from fairpp_app.store import browse
from fairpp_app.tui.screens.inspector_screen import InspectorScreen
from fairpp_app.tui.screens.questions_screen import PAGE_SIZE, QuestionsScreen
from fairpp_app.tui.widgets.paged_table import PagedTable
from tests.support.tui_data import SIZE, plain

pytestmark = pytest.mark.asyncio


async def _open(app, pilot) -> QuestionsScreen:
    await pilot.press("2")
    await pilot.pause()
    assert isinstance(app.screen, QuestionsScreen)
    return app.screen


async def test_first_page_only_and_paging(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        table = screen.query_one(PagedTable)
        assert table.row_count == PAGE_SIZE  # never the whole bank
        assert "of 28,420" in plain(screen.query_one("#q-status", Static))
        first = browse.page(store, browse.QuestionFilter(), 0, PAGE_SIZE)
        assert screen.current_id() == first[0]["id"]
        await pilot.press("right_square_bracket")
        assert screen.page_offset == PAGE_SIZE
        assert "101–200" in plain(screen.query_one("#q-status", Static))
        # Moving up from the first row of a page loads the previous page, cursor at its end.
        await pilot.press("up")
        assert screen.page_offset == 0
        assert table.cursor_row == PAGE_SIZE - 1


async def test_filters_narrow_the_table(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#f-split", Select).value = "test"
        await pilot.pause()
        assert screen.total == store.question_count("test") == 5669
        screen.query_one("#f-dimension", Select).value = 3
        screen.query_one("#f-group", Select).value = "women"
        await pilot.pause()
        expected = store.db.execute(
            "SELECT count(*) FROM questions WHERE split='test' AND dimension=3 AND "
            "group_name='women'").fetchone()[0]
        assert screen.total == expected > 0
        assert all(r["group_name"] == "women" and r["dimension"] == 3
                   for r in screen.rows.values())
        # Free text, applied on Enter.
        await pilot.click("#f-text")
        await pilot.press(*"housing", "enter")
        assert screen.filter.text == "housing"
        assert all("housing" in (r["text"] + r["problem"]).lower() for r in screen.rows.values())
        assert "text~'housing'" in plain(screen.query_one("#q-status", Static))
        await pilot.press("x")
        assert screen.filter == browse.QuestionFilter()
        assert screen.total == 28420
        assert screen.query_one("#f-text", Input).value == ""


async def test_no_match_says_so(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.apply(browse.QuestionFilter(text="no question has this text"))
        await pilot.pause()
        assert screen.total == 0
        assert "No question matches" in plain(screen.query_one("#q-status", Static))


async def test_enter_opens_the_inspector_on_that_question(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#f-split", Select).value = "test"
        await pilot.pause()
        await pilot.press("down", "down")
        qid = screen.current_id()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InspectorScreen)
        assert app.screen.qid == qid
        assert app.screen.filter.split == "test"
        await pilot.press("n")
        nxt = app.screen.qid
        await pilot.press("escape")
        await pilot.pause()
        # Back on the list, the cursor follows the question the inspector ended on.
        assert app.screen is screen and screen.current_id() == nxt


async def test_one_bank_at_a_time_and_the_official_one_once_imported(store, bank, make_app,
                                                                     tmp_path):
    """The list starts on fairpp's bank; the bank Select offers the official one once an
    import made it (seen on coming back to the screen), and then shows only its questions."""
    from textual.widgets._select import InvalidSelectValueError

    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.jobs.importing import import_fairpp
    from tests.support.official_files import official_frame, pairs, row_ids, write

    questions = pairs(bank, 4, seed=60)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        banks = screen.query_one("#f-bank", Select)
        assert banks.value == "fairpp" and screen.total == 28420
        with pytest.raises(InvalidSelectValueError):
            banks.value = "official"  # not there yet
        assert " bank " not in plain(screen.query_one("#q-status", Static))

        import_fairpp(app.store, write(official_frame(questions)[0], tmp_path / "r.csv"),
                      builtin_personas(), split="test")
        await pilot.press("1")
        await pilot.press("2")
        await pilot.pause()
        assert app.screen is screen and screen.total == 28420  # still fairpp's
        assert "fairpp bank" in plain(screen.query_one("#q-status", Static))
        banks.value = "official"
        await pilot.pause()
        ids = row_ids(store, questions)
        assert screen.total == 8 and list(screen.rows) == ids
        assert "official bank" in plain(screen.query_one("#q-status", Static))
        # The other filters offer the official bank's values and keep to it.
        groups = {q.group_name for q in questions}
        screen.query_one("#f-group", Select).value = questions[0].group_name
        await pilot.pause()
        assert set(screen.rows) == {i for i, q in zip(ids, questions)
                                    if q.group_name == questions[0].group_name}
        assert groups <= set(browse.facet_values(store, "official")["group"])
        await pilot.press("x")  # clears the filters, not the bank
        assert screen.filter == browse.QuestionFilter(bank="official") and screen.total == 8
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InspectorScreen) and app.screen.qid == ids[0]
        await pilot.press("n")
        assert app.screen.qid == ids[1]
        assert "2 of 8 in bank=official" in plain(app.screen.query_one("#q-meta", Static))

"""Personas: add, clone, edit and delete your own; built-ins stay read-only."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Static, TextArea

from fairpp_app.core.paths import user_personas_path
from fairpp_app.core.personas import load_personas, parse_personas
from fairpp_app.core.prompts import build_prompt
from fairpp_app.tui.screens.confirm_dialog import ConfirmScreen
from fairpp_app.tui.screens.persona_dialog import PersonaFormScreen
from fairpp_app.tui.screens.personas_screen import PersonasScreen
from tests.support.tui_data import SIZE, plain

pytestmark = pytest.mark.asyncio
DESCRIPTION = ("You work night shifts as a nurse in a regional hospital. You value fairness "
               "at work and think effort should be rewarded, but not at the cost of patients.")


async def _open(app, pilot) -> PersonasScreen:
    await pilot.press("3")
    await pilot.pause()
    assert isinstance(app.screen, PersonasScreen)
    return app.screen


async def _fill(app, pilot, **values) -> None:
    form = app.screen
    assert isinstance(form, PersonaFormScreen)
    for name, value in values.items():
        if name == "description":
            form.query_one("#pf-description", TextArea).text = value
        else:
            form.query_one(f"#pf-{name}", Input).value = str(value)
    await pilot.press("ctrl+s")
    await pilot.pause()


def _select(screen: PersonasScreen, number: int) -> None:
    table = screen.query_one("#persona-list", DataTable)
    table.move_cursor(row=[p.number for p in screen.app.personas].index(number))


async def test_add_edit_clone_delete_write_a_valid_file(store, make_app):
    app = make_app()
    path = user_personas_path()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        preview = plain(screen.query_one("#prompt-preview", Static))
        q = store.questions(limit=1)[0]
        assert build_prompt(q, app.personas[0]).as_text().splitlines()[0] in preview

        await pilot.press("a")
        await _fill(app, pilot, slug="night-nurses", name="Night nurses", description=DESCRIPTION)
        assert app.screen is screen
        mine = parse_personas(path.read_text("utf-8"), str(path), builtin=False)
        assert [(p.number, p.slug) for p in mine] == [(8, "night-nurses")]
        assert [p.number for p in load_personas()] == list(range(1, 9))
        assert screen.query_one("#persona-list", DataTable).row_count == 8
        assert screen.selected().slug == "night-nurses"

        await pilot.press("e")
        await _fill(app, pilot, name="Night-shift nurses")
        assert [p.name for p in load_personas() if p.number == 8] == ["Night-shift nurses"]

        _select(screen, 2)
        await pilot.press("c")
        await _fill(app, pilot)
        clone = load_personas()[-1]
        assert (clone.number, clone.slug) == (9, "civic-pragmatists-copy")
        assert clone.description == app.personas[1].description

        _select(screen, 8)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert [p.number for p in load_personas()] == [1, 2, 3, 4, 5, 6, 7, 9]
        assert [p.number for p in app.personas] == [1, 2, 3, 4, 5, 6, 7, 9]


async def test_invalid_values_keep_the_form_open_with_the_reason(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await _open(app, pilot)
        await pilot.press("a")
        await _fill(app, pilot, slug="Not A Slug", name="Someone", description=DESCRIPTION)
        assert isinstance(app.screen, PersonaFormScreen)
        assert "slug" in plain(app.screen.query_one("#pf-error", Static))
        await _fill(app, pilot, slug="progressive-activists")  # a built-in's slug
        assert "already belongs to persona 1" in plain(app.screen.query_one("#pf-error", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PersonasScreen)
        assert not user_personas_path().exists()


async def test_builtins_cannot_be_edited_or_deleted(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        _select(screen, 6)
        await pilot.press("x")
        await pilot.pause()
        assert app.screen is screen  # no confirmation: refused outright
        await pilot.press("e")
        await pilot.pause()
        assert app.screen is screen
        messages = [n.message for n in app._notifications]
        assert any("cannot be deleted" in m for m in messages)
        assert any("read-only" in m for m in messages)
        assert not user_personas_path().exists()
        assert len(app.personas) == 7

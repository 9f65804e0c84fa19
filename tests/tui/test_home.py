"""Home: counts, backends, recent runs; the first-run build of the bank; help and palette."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Select, Static

from fairpp_app.tui.screens.help_screen import HelpScreen
from fairpp_app.tui.screens.home_screen import HomeScreen
from fairpp_app.tui.widgets.backends_panel import BackendsPanel
from fairpp_app.tui.widgets.palette import FairppCommands
from tests.support.tui_data import RUN, SIZE, plain, wait_for_workers

pytestmark = pytest.mark.asyncio


async def test_home_counts_backends_and_runs(synthetic, make_app):
    store, run, _ = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_workers(app)
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        counts = plain(app.screen.query_one("#counts", Static))
        for number in ("28,420", "22,751", "5,669", f"{store.record_count():,}"):
            assert number in counts
        runs = app.screen.query_one("#recent-runs", DataTable)
        assert runs.get_row(RUN)[3] == "finished"
        panel = app.screen.query_one(BackendsPanel)
        assert panel.status("ollama")[1].startswith("no server at")  # probed, no longer "checking"
        ok, why = panel.status("openai")
        assert why == "OPENAI_API_KEY unset"
        assert not app.screen.query_one("#first-run").display


async def test_openai_key_is_reported_but_never_shown(db_path, make_app, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        panel = app.screen.query_one(BackendsPanel)
        assert panel.status("openai")[1] == "OPENAI_API_KEY set"
        assert "sk-secret" not in app.export_screenshot()


async def test_first_run_builds_the_bank_in_a_worker(tmp_path, make_app):
    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#first-run").display
        assert "empty" in plain(app.screen.query_one("#first-run-text", Static))
        await pilot.press("b")
        await wait_for_workers(app)
        await pilot.pause()
        assert app.store.question_count() == 28420
        assert app.store.question_count("test") == 5669
        # The box stays, now with the first steps of the loop: there is no run yet.
        assert "First steps" in plain(app.screen.query_one("#first-run-text", Static))
        assert not app.screen.query_one("#build-progress").display
        assert any("question bank built" in n.message for n in app._notifications)


async def test_screens_made_before_the_bank_catch_up(tmp_path, make_app):
    from fairpp_app.tui.screens.questions_screen import QuestionsScreen

    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        questions = app.screen
        assert isinstance(questions, QuestionsScreen) and questions.total == 0
        assert "build the bank" in plain(questions.query_one("#q-status", Static))
        await pilot.press("1", "b")
        await wait_for_workers(app)
        await pilot.press("2")
        await pilot.pause()
        assert app.screen is questions and questions.total == 28420
        questions.query_one("#f-split", Select).value = "test"  # the filters know the bank now
        await pilot.pause()
        assert questions.total == 5669


async def test_help_lists_every_screen_and_palette_reaches_them(db_path, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shot = " ".join(plain(w) for w in app.screen.query(Static))
        for title in ("Questions", "Inspector", "Simulate", "Disagreement", "Save CSV"):
            assert title in shot
        await pilot.press("escape")
        provider = FairppCommands(app.screen)
        titles = [title for title, _, _ in provider.entries()]
        for _, title, _ in app.NAVIGATION:
            assert f"Go to {title}" in titles
        assert "Start a simulation" in titles and "Add a persona" in titles
        hits = [hit async for hit in provider.search("analysis csv")]
        assert hits and "CSV" in hits[0].text
        # Every screen action named in a palette entry exists on its screen.
        from textual.actions import parse

        for mode, cls in app.MODES.items():
            for _, action, _ in getattr(cls, "PALETTE", ()):
                _, name, _ = parse(action)
                assert callable(getattr(cls, f"action_{name}", None)), (mode, action)
        # Choosing a command runs it: go to Personas through the palette's callback.
        go = next(cb for title, cb, _ in provider.entries() if title == "Go to Personas")
        await go()
        await pilot.pause()
        assert app.current_mode == "personas"


async def test_number_keys_switch_screens(db_path, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for key, mode in zip("234561", ("questions", "personas", "simulate", "analysis",
                                        "train", "home")):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
        await wait_for_workers(app)


async def test_a_renumbered_persona_is_shown_not_swallowed(db_path, make_app):
    """The CLI refuses a persona slug stored under another number; the app shows the same
    message as a notification at start and keeps running on the personas files."""
    from fairpp_app.core.paths import user_personas_path

    path = user_personas_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    persona = ('[[persona]]\nnumber = {}\nslug = "night-owls"\nname = "Night Owls"\n'
               'description = "They answer after midnight."\n')
    path.write_text(persona.format(20), "utf-8")
    make_app().store.close()  # the first start stores persona 20
    path.write_text(persona.format(21), "utf-8")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and errors[0].title == "personas not saved in the database"
        assert "persona 'night-owls' is persona 20" in errors[0].message
        assert 21 in {p.number for p in app.personas}

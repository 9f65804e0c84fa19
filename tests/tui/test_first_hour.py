"""What a new user tripped over in the first hour: each item fails without its fix.

Escape leaves a text field so number keys switch screens again; the Simulate form starts
small and says what F5 will cost, asking before a run of more than an hour; Home walks
through the loop when there is no run; the inspector prints its probabilities; every
screen names itself in the header."""

from __future__ import annotations

import pytest
from textual.widgets import Header, Input, Static

from fairpp_app.jobs.simulation import estimate
from fairpp_app.tui.screens.confirm_dialog import ConfirmScreen
from fairpp_app.tui.screens.inspector_screen import InspectorScreen
from fairpp_app.tui.screens.simulate_screen import SimulateScreen
from fairpp_app.tui.widgets.config_form import ConfigForm
from tests.support.tui_data import SIZE, plain, wait_for_workers

pytestmark = pytest.mark.asyncio


async def test_escape_leaves_a_field_and_a_digit_then_switches_screen(db_path, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        limit = app.screen.query_one("#field-limit", Input)
        limit.focus()
        await pilot.press("end", "5")
        assert limit.value == "205"
        await pilot.press("escape")
        assert app.focused is None
        await pilot.press("2")
        await pilot.pause()
        assert app.current_mode == "questions"
        assert limit.value == "205"  # the digit went to the app, not into the field


async def test_escape_still_goes_back_where_no_field_has_focus(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(InspectorScreen(qs[0].id))
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, InspectorScreen)


async def test_the_footer_says_how_to_switch_screens(db_path, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = {b.binding.key_display: b.binding.description
                 for b in app.active_bindings.values() if b.binding.show}
        assert shown.get("1-6") == "Screens"


async def test_the_default_form_plans_a_short_first_run(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        config = app.screen.query_one(ConfigForm).build()
        plan = estimate(app.store, config, app.personas)
        assert plan.records == 140 and config.split == "test"
        assert "F5 plans 140 records" in plain(app.screen.query_one("#sim-plan", Static))
        app.screen.query_one("#field-limit", Input).value = ""
        await pilot.pause()
        assert "F5 plans 39,683 records" in plain(app.screen.query_one("#sim-plan", Static))


async def test_a_run_of_more_than_an_hour_asks_first(store, make_app):
    """An earlier embedded run answered at 4 records/s (250 ms a record, this CPU's speed):
    the whole bank (28,420 x 7) at that speed is more than an hour, the default form is not."""
    run = store.create_run("earlier", "simulation", backend="embedded", model="gemma-3-270m",
                           mode="logprob", status="finished")
    store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": "civic-pragmatists",
                           "answer": "A", "p_a": 0.8, "p_b": 0.1, "p_c": 0.1, "method": "logprob",
                           "latency_ms": 250.0} for q in store.questions("test", limit=30)])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SimulateScreen)
        line = plain(screen.query_one("#sim-plan", Static))
        assert "140 records, about 35 s at 4.0 records/s (measured in earlier embedded runs)" in line
        screen.query_one("#field-split", expect_type=None).value = "all"
        screen.query_one("#field-limit", Input).value = ""
        await pilot.pause()
        assert "about 13.8 h at 4.0 records/s" in plain(screen.query_one("#sim-plan", Static))
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "198,940 records" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and screen.state == "idle"


async def test_home_walks_through_the_loop_when_there_is_no_run(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = plain(app.screen.query_one("#first-run-text", Static))
        assert "First steps" in text
        for step in ("4  Simulate", "2  Questions", "5  Analysis", "6  Train"):
            assert step in text


async def test_the_inspector_prints_the_probabilities_and_the_chosen_option(synthetic, make_app):
    st, run, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(InspectorScreen(qs[2].id))
        await pilot.pause()
        text = plain(app.screen.query_one("#answers", Static))
        record = next(r for r in st.record_frame(run["id"]).to_dict("records")
                      if r["question_id"] == qs[2].id and r["respondent"] == "civic-pragmatists")
        for p in (record["p_a"], record["p_b"], record["p_c"]):
            assert f"{p:.2f}" in text
        assert qs[2].option_a[:20] in text and qs[2].option_b[:20] in text


async def test_every_screen_names_itself_in_the_header(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for key, title in zip("234561", ("Questions", "Personas", "Simulate", "Analysis",
                                        "Train", "Home")):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen.sub_title == title
            assert title in str(app.screen.query_one(Header).screen_sub_title)
        await app.push_screen(InspectorScreen(qs[0].id))
        await pilot.pause()
        assert app.screen.query_one(Header).screen_sub_title == "Inspector"
        await wait_for_workers(app)

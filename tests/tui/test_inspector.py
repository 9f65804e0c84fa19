"""Inspector: stepping through a filter, to disagreements and to unparsed answers."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from fairpp_app.jobs import run_metrics
from fairpp_app.store import browse
from fairpp_app.tui.screens.inspector_screen import InspectorScreen
from tests.support.tui_data import MODEL, RUN, SIZE, plain, wait_for_workers

pytestmark = pytest.mark.asyncio
TEST_SPLIT = browse.QuestionFilter(split="test")


async def _inspect(app, pilot, qid: str) -> InspectorScreen:
    await app.push_screen(InspectorScreen(qid, TEST_SPLIT))
    await pilot.pause()
    return app.screen


async def test_steps_through_the_filter(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[0].id)
        assert app.run_name == RUN
        await pilot.press("n")
        assert screen.qid == qs[1].id
        await pilot.press("n", "n")
        assert screen.qid == qs[3].id
        await pilot.press("p")
        assert screen.qid == qs[2].id
        await pilot.press("p", "p", "p")  # past the first question: stays, says so
        assert screen.qid == qs[0].id
        assert any("first question" in n.message for n in app._notifications)
        assert "1 of 5,669" in plain(screen.query_one("#q-meta", Static))


async def test_next_disagreement_and_next_unparsed(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[0].id)
        await pilot.press("d")
        assert screen.qid == qs[2].id  # 0, 1 agree; 2 has one dissenter
        await pilot.press("d")
        assert screen.qid == qs[5].id  # 4 agrees apart from an unparsed answer
        await pilot.press("p", "p", "p", "p", "p")
        await pilot.press("u")
        assert screen.qid == qs[4].id


async def test_answers_majority_tier_and_weight(synthetic, make_app):
    store, run, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[2].id)
        await wait_for_workers(app)  # the split's weights are computed once
        await pilot.pause()
        assert len(screen.records) == 8  # seven personas and the model
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        battlers = next(line for line in lines if "P3 Disengaged Battlers" in line)
        assert battlers.split()[3] == "B"
        assert any(f"model: {MODEL}" in line for line in lines)
        summary = plain(screen.query_one("#q-summary", Static))
        assert "majority A" in summary
        # Target 6 answered A; one other persona (3) answered B: tier 2.
        weights, source = run_metrics.split_weights(store, run["id"], RUN,
                                               "disengaged-traditionalists", "test",
                                               [p.slug for p in app.personas])
        assert source == "computed" and weights[qs[2].id][0] == 2
        assert f"tier 2, weight {weights[qs[2].id][1]:.6f} (computed" in summary

        await pilot.press("n", "n")  # question 4: the target's answer is unparsed
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        target = next(line for line in lines if "P6 Disengaged Traditionalists" in line)
        assert "??" in target and "unparsed: I would rather not say" in target
        summary = plain(screen.query_one("#q-summary", Static))
        assert "no tier or weight" in summary and "1 unparsed" in summary


async def test_stored_weights_are_preferred(synthetic, make_app):
    from fairpp_app.core.personas import builtin_personas, resolve
    from fairpp_app.jobs.run_metrics import run_weights

    store, run, qs = synthetic
    personas = builtin_personas()
    run_weights(store, RUN, resolve("6", personas), personas, split="test")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[2].id)
        await wait_for_workers(app)
        await pilot.pause()
        assert "(stored, split test)" in plain(screen.query_one("#q-summary", Static))


async def test_without_a_run_it_says_what_to_do(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        qid = store.questions("test", limit=1)[0].id
        screen = await _inspect(app, pilot, qid)
        assert "No run with answers yet" in plain(screen.query_one("#q-summary", Static))
        await pilot.press("d")
        assert any("choose a run" in n.message for n in app._notifications)

"""Analysis: the views of a synthetic run, and their CSV and SVG exports."""

from __future__ import annotations

import csv

import pytest
from textual.widgets import Static, TabbedContent

from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.positioning import exports_dir
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.tui.screens.analysis_screen import AnalysisScreen
from fairpp_app.tui.widgets.heatmap import Heatmap
from tests.support.tui_data import MODEL, RUN, SIZE, plain, wait_for_workers

pytestmark = pytest.mark.asyncio


async def _open(app, pilot) -> AnalysisScreen:
    await pilot.press("5")
    await wait_for_workers(app)
    await pilot.pause()
    assert isinstance(app.screen, AnalysisScreen)
    return app.screen


async def test_heatmap_shows_the_metrics_of_the_run(synthetic, make_app):
    store, _, _ = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        expected = run_metrics(store, RUN, builtin_personas())
        heatmap = screen.query_one("#sim-heatmap", Heatmap)
        assert heatmap.row_count == 7
        slugs = expected["personas"]
        for a in slugs:
            for b in slugs:
                assert heatmap.values[a][b] == pytest.approx(expected["similarity"][a][b])
        cell = heatmap.get_row(slugs[0])[2]
        assert cell.plain.strip() == f"{expected['similarity'][slugs[0]][slugs[1]]:.3f}"
        agreement = screen.query_one("#agree-heatmap", Heatmap)
        assert agreement.row_count == 8  # the model respondent is placed among the personas
        assert agreement.values[MODEL]["loyal-nationals"] == pytest.approx(
            expected["agreement"][MODEL]["loyal-nationals"])
        assert "P6 Disengaged Traditionalists" in plain(screen.query_one("#tier-bars", Static))
        assert set(screen.result.coords) == set(expected["respondents"])


async def test_views_save_as_csv_and_svg(synthetic, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("s")
        path = exports_dir() / f"{RUN}-all-similarity.csv"
        rows = list(csv.reader(path.open()))
        assert rows[0][0] == "respondent" and len(rows) == 8 and len(rows[0]) == 8
        await pilot.press("v")
        svg = (exports_dir() / f"{RUN}-all-similarity.svg").read_text()
        assert svg.startswith("<svg") and "Similarity" in svg

        screen.query_one(TabbedContent).active = "tiers"
        await pilot.pause()
        await pilot.press("s")
        tiers = list(csv.reader((exports_dir() / f"{RUN}-all-tiers.csv").open()))
        assert tiers[0] == ["tier", "questions", "weight"] and len(tiers) == 8
        counts = sum(int(r[1]) for r in tiers[1:])
        assert 0 < counts <= 240
        await pilot.press("right_square_bracket")
        assert screen.current_view() == "map"
        await pilot.press("s")
        assert (exports_dir() / f"{RUN}-all-map.csv").exists()


async def test_split_and_target_recompute(synthetic, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        from textual.widgets import Select

        screen.query_one("#an-split", Select).value = "train"  # the run only covers test
        await wait_for_workers(app)
        await pilot.pause()
        assert "no answers in split train" in plain(screen.query_one("#an-status", Static))
        screen.query_one("#an-split", Select).value = "test"
        screen.query_one("#an-target", Select).value = "loyal-nationals"
        await wait_for_workers(app)
        await pilot.pause()
        assert screen.result.target == "loyal-nationals" and app.target == "loyal-nationals"
        assert screen.result.split == "test"


async def test_no_run_yet(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        assert "No run with answers yet" in plain(screen.query_one("#an-status", Static))
        await pilot.press("s")
        assert any("nothing computed" in n.message for n in app._notifications)


async def test_an_unexpected_worker_error_is_shown_logged_and_survived(synthetic, make_app,
                                                                      monkeypatch, caplog):
    """A bug in a worker (not a FairppError) reaches the app's one worker-failure handler:
    the status line and a notification name it as unexpected with its type, it is logged,
    and the app goes on (the screen computes again once the bug is gone)."""
    import fairpp_app.jobs.positioning as positioning

    real = positioning.position_run

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(positioning, "position_run", broken)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        status = plain(screen.query_one("#an-status", Static))
        assert "unexpected error (RuntimeError): boom" in status
        assert any(n.severity == "error" and "unexpected error (RuntimeError): boom" in n.message
                   for n in app._notifications)
        assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)
        assert app.is_running and screen.result is None
        monkeypatch.setattr(positioning, "position_run", real)
        screen.action_compute()
        await wait_for_workers(app)
        await pilot.pause()
        assert screen.result is not None and screen.result.run == RUN


async def test_a_user_error_in_a_worker_shows_its_own_message(synthetic, make_app,
                                                             monkeypatch):
    """A FairppError from a worker is shown as written, without "unexpected"."""
    import fairpp_app.jobs.positioning as positioning
    from fairpp_app.core.errors import UsageError

    def refused(*args, **kwargs):
        raise UsageError("no such split here")

    monkeypatch.setattr(positioning, "position_run", refused)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        assert plain(screen.query_one("#an-status", Static)).strip() == "no such split here"
        messages = [n.message for n in app._notifications if n.severity == "error"]
        assert messages == ["no such split here"]

"""Analysis with models of other runs beside the personas: a stored position set, the
runs dialog, and the figure key (PNG and SVG drawn by the report's plotting code)."""

from __future__ import annotations

import pytest
from textual.widgets import Select, SelectionList

from fairpp_app.jobs.positioning import exports_dir
from fairpp_app.tui.screens.analysis_screen import AnalysisScreen
from fairpp_app.tui.screens.runs_dialog import RunsDialog
from fairpp_app.tui.widgets.heatmap import Heatmap
from tests.support.tui_data import MODEL, RUN, SIZE, until

pytestmark = pytest.mark.asyncio


def _model_run(store, name: str, model: str, n: int = 60) -> None:
    run = store.create_run(name, "simulation", backend="openai", model=model, mode="logprob",
                           status="finished")
    store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": model,
                           "respondent_kind": "model", "answer": "ABC"[(i * 7) % 3 if i % 4 else 2],
                           "method": "logprob"}
                          for i, q in enumerate(store.questions("test", limit=n))])


@pytest.fixture
def with_models(synthetic):
    store = synthetic[0]
    _model_run(store, "run-a", "model-a")
    _model_run(store, "run-b", "model-b", n=30)
    store.save_position_set("pair", RUN, "test", [
        {"label": "alpha", "spec": "openai:model-a@http://h/v1", "run": "run-a"},
        {"label": "beta", "spec": "openai:model-b@http://h/v1", "run": "run-b"}], {})
    return store


async def _open(app, pilot) -> AnalysisScreen:
    await pilot.press("5")
    await until(pilot, lambda: isinstance(app.screen, AnalysisScreen) and app.screen.result,
                "the analysis of the synthetic run")
    return app.screen


async def test_a_position_set_puts_its_models_in_every_view(with_models, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#an-set", Select).value = "pair"
        await until(pilot, lambda: "alpha" in screen.result.respondents, "the set's models")
        r = screen.result
        assert r.split == "test" and r.sources["alpha"] == "run-a" and r.sources["beta"] == "run-b"
        assert r.respondents[-3:] == ["alpha", "beta", MODEL]
        assert set(r.coords) == set(r.respondents)  # on the map
        agreement = screen.query_one("#agree-heatmap", Heatmap)
        assert agreement.row_count == 10  # seven personas, the run's own model, the set's two
        assert "beside: alpha, beta" in str(screen.query_one("#an-status").render())

        await pilot.press("f")
        png = exports_dir() / f"{RUN}-test-similarity-figure.png"
        svg = png.with_suffix(".svg")
        await until(pilot, lambda: png.exists() and svg.exists(), "the figure files")
        assert png.read_bytes()[:4] == b"\x89PNG" and svg.read_text().startswith("<svg")
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        assert screen.current_view() == "agreement"
        await pilot.press("f")
        agree = exports_dir() / f"{RUN}-test-agreement-figure.svg"
        await until(pilot, agree.exists, "the agreement figure")
        assert ">beta<" in agree.read_text()  # each model labelled in the figure


async def test_the_runs_dialog_adds_and_removes_models(with_models, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#an-run", Select).value = RUN  # the newest run is shown first
        await until(pilot, lambda: screen.result.run == RUN, "the synthetic run")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, RunsDialog)
                    and app.screen.query(SelectionList), "the runs dialog")
        app.screen.query_one(SelectionList).select("run-b")
        await pilot.press("escape")
        await until(pilot, lambda: "model-b" in screen.result.respondents, "model-b joined")
        assert "model-a" not in screen.result.respondents and screen.result.split == "all"
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, RunsDialog)
                    and app.screen.query(SelectionList), "the runs dialog again")
        await until(pilot, lambda: app.screen.query_one(SelectionList).selected == ["run-b"],
                    "the dialog ticks the run shown now")
        app.screen.query_one(SelectionList).deselect_all()
        await pilot.press("escape")
        await until(pilot, lambda: "model-b" not in screen.result.respondents, "model-b left")

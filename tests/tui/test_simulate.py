"""Simulate: the form, a run in a worker, pause/resume, errors on screen, a real tiny run."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import DataTable, Static

from fairpp_app.backends import registry
from fairpp_app.backends.base import Backend
from fairpp_app.core.answers import OptionScores
from fairpp_app.core.prompts import template_hash
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.tui.screens import simulate_screen
from fairpp_app.tui.screens.simulate_screen import SimulateScreen, config_from_run
from fairpp_app.tui.widgets.config_form import ConfigForm
from tests.support.tui_data import SIZE, plain, wait_for_workers

pytestmark = pytest.mark.asyncio


class GatedBackend(Backend):
    """Answers A at once for the first prompt, then waits for the test to open the gate."""

    name = "embedded"
    SUPPORTS_LOGPROBS = True

    def __init__(self, options) -> None:
        super().__init__(options)
        self.calls = 0
        self.gate = threading.Event()

    @property
    def model_name(self) -> str:
        return "gemma-3-270m"

    def score_options(self, prompts):
        self.calls += 1
        if self.calls > 1:
            self.gate.wait(10)
        return [OptionScores((0.7, 0.2, 0.1)) for _ in prompts]


async def _open(app, pilot) -> SimulateScreen:
    await pilot.press("4")
    await pilot.pause()
    assert isinstance(app.screen, SimulateScreen)
    return app.screen


def _runs(screen) -> dict[str, str]:
    table = screen.query_one("#sim-runs", DataTable)
    return {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1])
            for i in range(table.row_count)}


async def test_form_is_generated_from_the_config(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        form = screen.query_one(ConfigForm)
        # Defaults round-trip, apart from the small first run the form starts with.
        assert form.build() == SimulationConfig(split="test", limit=20)
        form.load({"limit": 3, "personas": "6", "calibrate": True, "mode": "text"})
        config = form.build()
        got = (config.limit, config.personas, config.calibrate, config.mode)
        assert got == (3, "6", True, "text")
        form.load({"limit": 0})
        await pilot.press("f5")
        await pilot.pause()
        assert screen.state == "idle"
        assert "--limit must be at least 1" in plain(screen.query_one("#sim-error", Static))


async def test_backend_error_is_shown_with_what_to_do(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"backend": "llamacpp", "limit": 1})
        await pilot.press("f5")
        await wait_for_workers(app)
        await pilot.pause()
        error = plain(screen.query_one("#sim-error", Static))
        assert "needs --model PATH" in error and "GGUF" in error
        assert screen.state == "idle"
        assert any(n.severity == "error" for n in app._notifications)


class TwoGateBackend(GatedBackend):
    """Like GatedBackend, and the third prompt waits again, for a second gate."""

    def __init__(self, options) -> None:
        super().__init__(options)
        self.gate2 = threading.Event()

    def score_options(self, prompts):
        out = super().score_options(prompts)
        if self.calls > 2:
            self.gate2.wait(10)
        return out


def _gated(monkeypatch, cls) -> list:
    """Every backend the app creates is a ``cls``; the list holds them as they come."""
    backends = []

    def create(name, options=None):
        backends.append(cls(options))
        return backends[-1]

    monkeypatch.setattr(registry, "create", create)
    return backends


async def _start_gated(app, pilot, backends: list, run: str) -> SimulateScreen:
    """Four test questions for persona 6, one prompt a batch, started; returns once the
    second prompt waits at the gate."""
    screen = await _open(app, pilot)
    screen.query_one(ConfigForm).load({"limit": 4, "personas": "6", "split": "test",
                                       "run": run, "batch_size": 1})
    await pilot.press("f5")
    while not backends or backends[0].calls < 2:
        await pilot.pause(0.01)
    return screen


async def test_the_runs_table_follows_a_running_run(store, make_app, monkeypatch):
    backends = _gated(monkeypatch, TwoGateBackend)
    # The table is redrawn on progress at most every RUNS_REFRESH_S; here on every one.
    monkeypatch.setattr(simulate_screen, "RUNS_REFRESH_S", 0.0)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start_gated(app, pilot, backends, "growing")
        await pilot.pause(0.7)  # progress comes at most every 0.5 s
        backends[0].gate.set()  # the second record lands; the third prompt waits
        while backends[0].calls < 3:
            await pilot.pause(0.01)
        await pilot.pause(0.2)
        row = screen.query_one("#sim-runs", DataTable).get_row("growing")
        assert [str(c) for c in row[1:3]] == ["running", "2"]
        backends[0].gate2.set()
        await wait_for_workers(app)
        await pilot.pause()
        row = screen.query_one("#sim-runs", DataTable).get_row("growing")
        assert [str(c) for c in row[1:3]] == ["finished", "4"]


async def test_pause_then_resume_finishes_the_same_run(store, make_app, monkeypatch):
    backends = _gated(monkeypatch, GatedBackend)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start_gated(app, pilot, backends, "gated")
        await pilot.press("f6")
        assert screen.state == "pausing"
        backends[0].gate.set()
        await wait_for_workers(app)
        await pilot.pause()
        assert screen.state == "paused"
        assert store.get_run("gated")["status"] == "cancelled"
        assert store.record_count(store.get_run("gated")["id"]) == 2
        assert _runs(screen)["gated"] == "cancelled"

        await pilot.press("f6")  # resume: the same config again
        backends[-1].gate.set()
        await wait_for_workers(app)
        await pilot.pause()
        assert screen.state == "idle"
        assert store.get_run("gated")["status"] == "finished"
        assert store.record_count(store.get_run("gated")["id"]) == 4
        assert _runs(screen)["gated"] == "finished"
        assert "4/4 records" in plain(screen.query_one("#sim-stats", Static))


async def test_a_stopped_run_is_resumed_from_the_runs_table(store, make_app, monkeypatch):
    backends = []

    def create(name, options=None):
        backends.append(GatedBackend(options))
        backends[-1].gate.set()
        return backends[-1]

    monkeypatch.setattr(registry, "create", create)
    run = store.create_run("left-over", "simulation", backend="embedded", model="gemma-3-270m",
                           mode="logprob", status="stopped",
                           prompt_hash=template_hash(),
                           params={"personas": "6", "split": "test", "limit": 3,
                                   "respondent": "personas", "debias": "none",
                                   "calibrate": False})
    assert config_from_run(store.get_run("left-over"))["limit"] == 3
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        assert _runs(screen)["left-over"] == "stopped"
        await pilot.press("f8")
        await wait_for_workers(app)
        await pilot.pause()
        assert store.get_run("left-over")["status"] == "finished"
        assert store.record_count(run["id"]) == 3


@pytest.mark.model
async def test_real_tiny_simulation_on_the_embedded_model(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"limit": 2, "personas": "6", "split": "test",
                                           "run": "tui-tiny"})
        await pilot.click("#sim-start")
        await wait_for_workers(app)
        await pilot.pause()
        run = store.get_run("tui-tiny")
        assert run["status"] == "finished", plain(screen.query_one("#sim-error", Static))
        assert store.record_count(run["id"]) == 2
        assert _runs(screen)["tui-tiny"] == "finished"
        assert "2/2 records" in plain(screen.query_one("#sim-stats", Static))
        assert "finished" in plain(screen.query_one("#sim-state", Static))

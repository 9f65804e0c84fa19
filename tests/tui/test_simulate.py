"""Simulate: the form, a run in a supervised child process, pause/resume, crashes, errors on
screen, and a child that outlives the app.

Every run here is a real ``fairpp simulate`` child started by the screen (``jobs.supervisor``)
and followed through the real database. The model is the real embedded one: in the child, or
behind the loopback Ollama stand-in (tests/support/ollama_server.py) in this process when a
test needs to hold a run at a known record (``hold_after``) or slow it down. Tests wait on
conditions with a deadline (the store, the screen's state), never a fixed sleep.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from fairpp_app.core.prompts import template_hash
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.store.database import Store
from fairpp_app.tui.screens import simulate_screen
from fairpp_app.tui.screens.log_dialog import LogScreen
from fairpp_app.tui.screens.quit_dialog import QuitScreen
from fairpp_app.tui.screens.simulate_screen import SimulateScreen, config_from_run
from fairpp_app.tui.widgets.config_form import ConfigForm
from tests.support.jobs import end_child, start_simulation, wait_until
from tests.support.ollama_server import MODEL, Engine, FakeOllama
from tests.support.tui_data import SIZE, plain, until, wait_for_workers

pytestmark = pytest.mark.asyncio
DEADLINE_S = 180.0


async def _open(app, pilot) -> SimulateScreen:
    await pilot.press("4")
    await pilot.pause()
    assert isinstance(app.screen, SimulateScreen)
    return app.screen


def _runs(screen) -> dict[str, str]:
    table = screen.query_one("#sim-runs", DataTable)
    return {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1])
            for i in range(table.row_count)}


def _row(screen, name: str) -> list[str]:
    table = screen.query_one("#sim-runs", DataTable)
    if name not in {str(table.get_row_at(i)[0]) for i in range(table.row_count)}:
        return []
    return [str(c) for c in table.get_row(name)[1:3]]


async def _until(pilot, condition, what: str, timeout: float = DEADLINE_S) -> None:
    await until(pilot, condition, what, timeout)


def _status(db_path, name: str) -> str | None:
    with Store(db_path) as store:
        run = store.find_run(name)
        return run["status"] if run else None


def _records(db_path, name: str) -> tuple[int, int]:
    with Store(db_path) as store:
        run = store.get_run(name)
        return tuple(store.db.execute(
            "SELECT count(*), count(DISTINCT question_id || '|' || respondent) FROM records "
            "WHERE run_id = ?", [run["id"]]).fetchone())


def _error_text(screen) -> str:
    return plain(screen.query_one("#sim-error", Static))


# ---- no model needed -------------------------------------------------------------------------

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
        assert screen.state == "idle" and screen.job is None
        assert "--limit must be at least 1" in _error_text(screen)


async def test_backend_error_in_the_child_is_shown_with_what_to_do(make_app):
    """The child exits 2 before it has a run; its message and the backend's advice show."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"backend": "llamacpp", "limit": 1})
        await pilot.press("f5")
        # Under load the key's action can run after press() returns: wait for it, not on it.
        await _until(pilot, lambda: screen.job is not None, "the child is started")
        assert screen.state == "starting"
        await _until(pilot, lambda: screen.state == "idle", "the child's end is shown")
        error = _error_text(screen)
        assert "needs --model PATH" in error and "GGUF" in error
        assert app.jobs[0].process.returncode == 2
        assert any(n.severity == "error" for n in app._notifications)


async def test_an_empty_bank_is_asked_for_on_home_before_any_child_starts(make_app, tmp_path):
    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"limit": 1})
        await pilot.press("f5")
        await pilot.pause()
        assert "the question bank is empty; build it on Home (1, then b)" in _error_text(screen)
        assert screen.state == "idle" and app.jobs == []


# ---- the embedded model in the child ---------------------------------------------------------

@pytest.mark.model
async def test_real_tiny_simulation_in_a_child(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"limit": 2, "personas": "6", "split": "test",
                                           "run": "tui-tiny"})
        await pilot.click("#sim-start")
        await _until(pilot, lambda: screen.state == "idle", "the run ends")
        run = store.get_run("tui-tiny")
        assert run["status"] == "finished", _error_text(screen)
        assert run["owner"]["pid"] == app.jobs[0].pid  # the child did the work, not the app
        assert store.record_count(run["id"]) == 2
        assert _runs(screen)["tui-tiny"] == "finished"
        assert "2/2 records" in plain(screen.query_one("#sim-stats", Static))
        assert "finished" in plain(screen.query_one("#sim-state", Static))


@pytest.mark.model
async def test_a_stopped_run_is_resumed_from_the_runs_table(store, make_app):
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
        await _until(pilot, lambda: screen.state == "idle", "the resumed run ends")
        assert store.get_run("left-over")["status"] == "finished", _error_text(screen)
        assert store.record_count(run["id"]) == 3
        assert _runs(screen)["left-over"] == "finished"


@pytest.mark.model
async def test_a_child_that_dies_by_sigsegv_leaves_the_app_running(store, make_app, db_path,
                                                                   monkeypatch):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        form = screen.query_one(ConfigForm)

        # 1. While llama.cpp loads: the run does not exist yet; the end says how it died.
        monkeypatch.setenv("FAIRPP_TEST_CRASH", "engine-load:SIGSEGV")
        form.load({"limit": 2, "personas": "6", "split": "test", "run": "crash-load"})
        await pilot.press("f5")
        await _until(pilot, lambda: screen.state == "idle", "the crash is shown")
        assert "died by SIGSEGV" in _error_text(screen)
        assert store.find_run("crash-load") is None
        assert not screen.query_one("#sim-start").disabled

        # 2. While the third batch is scored: the run is claimed and has two records, so it
        # becomes crashed with them kept.
        monkeypatch.setenv("FAIRPP_TEST_CRASH", "simulation-batch:SIGSEGV:3")
        form.load({"run": "crash-batch", "limit": 4, "batch_size": 1})
        await pilot.press("f5")
        await _until(pilot, lambda: screen.state == "idle" and screen.job is None,
                     "the second crash is shown")
        run = store.get_run("crash-batch")
        assert run["status"] == "crashed"
        crash = [e["payload"] for e in store.events(run_id=run["id"]) if e["kind"] == "run_crashed"]
        assert [c["signal"] for c in crash] == ["SIGSEGV"]
        assert _records(db_path, "crash-batch") == (2, 2)
        error = _error_text(screen)
        assert "died by SIGSEGV" in error and "crashed" in error and "F8" in error
        assert "fairpp jobs log crash-batch" in error and "2/4 records saved" in error
        assert _runs(screen)["crash-batch"] == "crashed"

        # 3. Still usable: without the crash switch, F8 resumes the crashed run to the end.
        monkeypatch.delenv("FAIRPP_TEST_CRASH")
        await pilot.press("f8")
        await _until(pilot, lambda: screen.state == "idle" and screen.job is None,
                     "the resumed run ends")
        assert store.get_run("crash-batch")["status"] == "finished", _error_text(screen)
        assert _records(db_path, "crash-batch") == (4, 4)


# ---- a run held or slowed by the loopback Ollama server ---------------------------------------

@pytest.fixture(scope="module")
def ollama(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRPP_HOME", str(tmp_path_factory.mktemp("ollama-home")))  # the GGUF goes here
        mp.setenv("FAIRPP_THREADS", "1")  # the child and the test share the cores
        engine = Engine()
    server = FakeOllama(engine).start()
    yield server
    server.stop()
    engine.backend.close()


@pytest.fixture
def server(ollama):
    ollama.reset()
    yield ollama
    ollama.reset()


def _ollama_form(server, run: str, limit: int) -> dict:
    """One persona, one request at a time: record n is request n."""
    return {"backend": "ollama", "base_url": server.url, "model": MODEL, "limit": limit,
            "personas": "6", "split": "test", "run": run, "concurrency": 1, "batch_size": 1}


@pytest.mark.model
async def test_the_runs_table_follows_a_running_run(server, make_app, db_path, monkeypatch):
    monkeypatch.setattr(simulate_screen, "RUNS_REFRESH_S", 0.0)  # redrawn on every poll
    server.hold_after(2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "growing", 4))
        await pilot.press("f5")
        await _until(pilot, lambda: server.waiting == 1 and _row(screen, "growing") == ["running", "2"],
                     "two records shown while the third is held")
        assert screen.state == "running" and screen.run_name == "growing"
        server.release()
        await _until(pilot, lambda: screen.state == "idle", "the run ends")
        assert _row(screen, "growing") == ["finished", "4"]
        assert _status(db_path, "growing") == "finished"


@pytest.mark.model
async def test_pause_then_resume_finishes_the_same_run(server, make_app, db_path):
    server.hold_after(2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "gated", 4))
        await pilot.press("f5")
        await _until(pilot, lambda: server.waiting == 1 and screen.state == "running",
                     "the third request held")
        await pilot.press("f6")
        assert screen.state == "pausing"
        server.release()  # the record in flight lands, then the child ends the run paused
        await _until(pilot, lambda: screen.state == "paused", "the pause is shown")
        assert _status(db_path, "gated") == "paused"
        assert _records(db_path, "gated") == (3, 3)
        assert _runs(screen)["gated"] == "paused"
        assert app.jobs[0].process.returncode == 130

        await pilot.press("f6")  # resume: a new child on the same config
        assert len(app.jobs) == 2 and app.jobs[1].pid != app.jobs[0].pid
        await _until(pilot, lambda: screen.state == "idle", "the resumed run ends")
        assert _status(db_path, "gated") == "finished"
        assert _records(db_path, "gated") == (4, 4)
        assert _runs(screen)["gated"] == "finished"
        assert "4/4 records" in plain(screen.query_one("#sim-stats", Static))


@pytest.mark.model
async def test_cancel_reaches_the_child_and_keeps_its_records(server, make_app, db_path):
    server.hold_after(1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "cancelled", 4))
        await pilot.press("f5")
        await _until(pilot, lambda: server.waiting == 1 and screen.state == "running",
                     "the second request held")
        await pilot.press("f7")
        assert screen.state == "cancelling"
        server.release()
        await _until(pilot, lambda: screen.state == "idle", "the cancel is shown")
        assert _status(db_path, "cancelled") == "cancelled"
        assert _records(db_path, "cancelled") == (2, 2)
        assert "cancelled" in plain(screen.query_one("#sim-state", Static))


@pytest.mark.model
async def test_a_job_left_running_at_quit_is_adopted_by_the_next_app(server, make_app, db_path):
    server.slow_down(0.3)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "outlives", 40))
        await pilot.press("f5")
        await _until(pilot, lambda: screen.state == "running", "the run is claimed")
        await pilot.press("ctrl+q")
        await _until(pilot, lambda: isinstance(app.screen, QuitScreen), "the quit dialog")
        assert "outlives" in app.screen.runs
        await pilot.press("l")
    job = app.jobs[0]
    try:
        # The child goes on writing records after the app has gone.
        seen = _records(db_path, "outlives")[0]
        wait_until(lambda: _records(db_path, "outlives")[0] > seen + 1, "records after the quit")
        assert job.running() and _status(db_path, "outlives") == "running"

        second = make_app()
        async with second.run_test(size=SIZE) as pilot:
            screen = await _open(second, pilot)
            assert screen.state == "running" and screen.run_name == "outlives"
            assert screen.pid == job.pid and screen.job is None
            stats = screen.query_one("#sim-stats", Static)
            shown = plain(stats)
            await _until(pilot, lambda: "/40 records" in plain(stats) and plain(stats) != shown,
                         "the adopted run's progress")
            await pilot.press("f7")
            assert screen.state == "cancelling"
            await _until(pilot, lambda: screen.state == "idle", "the adopted run's end")
            assert "cancelled" in plain(screen.query_one("#sim-state", Static))
            assert _runs(screen)["outlives"] == "cancelled"
        end = job.wait(timeout=60)
        assert end.exit_code == 130 and not end.crashed
        assert _status(db_path, "outlives") == "cancelled"
        kept, distinct = _records(db_path, "outlives")
        assert 2 < kept < 40 and kept == distinct
    finally:
        if job.running():
            job.stop("cancel")
            job.wait(timeout=60)


@pytest.mark.model
async def test_quit_can_stop_the_job_first(server, make_app, db_path):
    server.slow_down(0.3)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "stopped-at-quit", 40))
        await pilot.press("f5")
        await _until(pilot, lambda: screen.state == "running", "the run is claimed")
        await pilot.press("ctrl+q")
        await _until(pilot, lambda: isinstance(app.screen, QuitScreen), "the quit dialog")
        await pilot.press("s")
        await _until(pilot, lambda: not app.jobs[0].running(), "the child ends", timeout=30)
    assert _status(db_path, "stopped-at-quit") == "cancelled"
    await wait_for_workers(app)


# ---- one heavy job at a time; the job's log ---------------------------------------------------

def _queue_text(screen) -> str:
    line = screen.query_one("#sim-queue", Static)
    return plain(line) if line.display else ""


@pytest.mark.model
async def test_f5_while_a_job_runs_queues_the_next_until_that_job_ends(server, make_app, db_path,
                                                                      monkeypatch):
    monkeypatch.delenv("FAIRPP_MAX_JOBS", raising=False)  # the default: one at a time
    monkeypatch.setenv("FAIRPP_TEST_KEY", "sk-queued-secret-never-logged")
    server.hold_after(1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "first", 2))
        await pilot.press("f5")
        await _until(pilot, lambda: server.waiting == 1 and screen.state == "running",
                     "the first run's second request held")
        screen.query_one(ConfigForm).load({**_ollama_form(server, "second", 2),
                                           "api_key_env": "FAIRPP_TEST_KEY"})
        await pilot.press("f5")
        await pilot.pause()
        # Queued, not started: one child, and the screen says behind what.
        assert len(app.jobs) == 1 and screen.run_name == "first"
        assert "queued behind first" in _queue_text(screen) and "1. second" in _queue_text(screen)
        assert _status(db_path, "second") is None

        server.release()  # the first run ends; the queued one starts then, not before
        await _until(pilot, lambda: len(app.jobs) == 2, "the queued run starts")
        assert app.jobs[0].process.returncode == 0
        assert _status(db_path, "first") == "finished"
        await _until(pilot, lambda: screen.state == "idle" and screen.run_name == "second",
                     "the second run ends")
        assert _status(db_path, "second") == "finished" and _records(db_path, "second") == (2, 2)
        assert _queue_text(screen) == "" and app.job_queue.waiting == []
        with Store(db_path) as store:
            assert store.get_run("first")["finished_at"] <= store.get_run("second")["created_at"]

        # The log key: the last job's log, in a modal; the key's value is not in it.
        screen.set_focus(None)
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, LogScreen) and app.screen.path.name == "second.log"
        assert "==> fairpp simulate" in app.screen.text and "run 'second'" in app.screen.text
        assert "FAIRPP_TEST_KEY" in app.screen.text  # the variable's name is in the config
        assert "sk-queued-secret" not in app.screen.path.read_text()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


@pytest.mark.model
async def test_an_adopted_live_run_also_makes_f5_wait(server, make_app, db_path, monkeypatch):
    """A simulation another process works on counts as the running job, too."""
    monkeypatch.delenv("FAIRPP_MAX_JOBS", raising=False)
    server.hold_after(1)
    other = start_simulation(db_path, **_ollama_form(server, "other", 2))
    try:
        wait_until(lambda: server.waiting == 1, "the other process's run held", job=other)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(app, pilot)
            assert screen.state == "running" and screen.run_name == "other"  # adopted
            screen.query_one(ConfigForm).load(_ollama_form(server, "mine", 1))
            await pilot.press("f5")
            await pilot.pause()
            assert app.jobs == [] and "queued behind other" in _queue_text(screen)
            server.release()
            await _until(pilot, lambda: len(app.jobs) == 1, "the queued run starts")
            assert not other.running() or _status(db_path, "other") != "running"
            await _until(pilot, lambda: screen.state == "idle" and screen.run_name == "mine",
                         "the queued run ends")
            assert _status(db_path, "mine") == "finished"
    finally:
        other.wait(timeout=60)
    assert _status(db_path, "other") == "finished"


@pytest.mark.model
async def test_max_jobs_two_starts_the_second_at_once(server, make_app, db_path, monkeypatch):
    monkeypatch.setenv("FAIRPP_MAX_JOBS", "2")
    server.hold_after(1)
    app = make_app()
    assert app.job_queue.limit == 2
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load(_ollama_form(server, "one", 2))
        await pilot.press("f5")
        await _until(pilot, lambda: server.waiting == 1 and screen.state == "running",
                     "the first run held")
        screen.query_one(ConfigForm).load(_ollama_form(server, "two", 1))
        await pilot.press("f5")
        await pilot.pause()
        assert len(app.jobs) == 2 and _queue_text(screen) == ""
        server.release()
        await _until(pilot, lambda: not any(job.running() for job in app.jobs), "both end")
    assert _status(db_path, "one") == "finished" and _status(db_path, "two") == "finished"


@pytest.mark.model
async def test_the_heartbeat_ticks_while_the_child_waits_on_its_backend(server, db_path,
                                                                       monkeypatch):
    """A child held at one request writes no record and no progress, yet its heartbeat goes on
    (``jobs.heartbeat``): a reader on another host does not take it for dead."""
    monkeypatch.setenv("FAIRPP_HEARTBEAT_S", "0.2")  # the child's beat; the default is 10 s
    server.hold_after(1)
    job = start_simulation(db_path, **_ollama_form(server, "held", 3))
    try:
        wait_until(lambda: server.waiting == 1, "the second request held", job=job)
        with Store(db_path) as store:
            run = store.get_run("held")
            first, events = run["heartbeat"], len(store.events(run_id=run["id"]))

            def beats() -> float:
                return store.get_run("held")["heartbeat"]

            wait_until(lambda: beats() > first + 1.0, "five beats while the request is held",
                       job=job)
            assert len(store.events(run_id=run["id"])) == events  # no progress meanwhile
            assert store.record_count(run["id"]) == 1 and server.waiting == 1
        server.release()
        end = job.wait(timeout=DEADLINE_S)
        assert end.exit_code == 0, end.log_tail
        assert _status(db_path, "held") == "finished" and _records(db_path, "held") == (3, 3)
    finally:
        server.release()
        end_child(job)

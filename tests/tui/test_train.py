"""Train: the form from TrainingConfig, curves replayed from stored events, a real tiny run."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from fairpp_app.tui.screens.train_screen import TrainScreen
from fairpp_app.tui.widgets.config_form import ConfigForm
from tests.support.jobs import end_child, start_training, wait_until
from tests.support.tui_data import RUN, SIZE, insert_synthetic_run, plain, until, wait_for_workers

pytestmark = pytest.mark.asyncio


async def _open(app, pilot) -> TrainScreen:
    await pilot.press("6")
    await pilot.pause()
    assert isinstance(app.screen, TrainScreen)
    return app.screen


@pytest.fixture
def trainable(synthetic, request):
    """``(store, tiny)``: train-split answers to learn from and the tiny random model (the
    session's, asked for only once torch is known to be there)."""
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    store, _, _ = synthetic
    insert_synthetic_run(store, n=24, split="train", name="train-answers")
    return store, request.getfixturevalue("tiny_dir")


def _tiny_form(tiny, name: str, steps: int, **more) -> dict:
    """The form's values for a training of the tiny model on the train-split answers."""
    return {"from_run": "train-answers", "base": str(tiny), "name": name, "max_steps": steps,
            "batch_size": 4, "grad_accum": 1, "eval_every": 0, "limit": 24, "device": "cpu",
            "save_every": 5, **more}


async def _start(app, pilot, values: dict) -> TrainScreen:
    """Open the Train screen, fill the form with ``values`` and press F5."""
    screen = await _open(app, pilot)
    screen.query_one(ConfigForm).load(values)
    await pilot.press("f5")
    return screen


def _add_training(store, name: str = "wdpo-p6") -> dict:
    row = store.create_training(name, "wdpo", "disengaged-traditionalists", "gemma-3-270m",
                                RUN, {"config": {}}, status="finished")
    for step, loss in ((1, 0.69), (2, 0.61), (3, 0.55)):
        store.add_event("train_step", {"training": name, "step": step, "loss": loss},
                        training_id=row["id"])
    store.add_event("train_eval", {"training": name, "step": 3, "target": "x",
                                   "similarity": {"disengaged-traditionalists": 0.91,
                                                  "loyal-nationals": 0.88}},
                    training_id=row["id"])
    return row


async def test_curves_replay_stored_events_and_follow_new_ones(synthetic, make_app):
    store, _, _ = synthetic
    row = _add_training(store)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        assert screen.query_one("#trainings", DataTable).row_count == 1
        assert screen.training_id == row["id"]
        assert screen.loss["loss"] == ([1, 2, 3], [0.69, 0.61, 0.55])
        assert screen.similarity == {"P6": ([3], [0.91]), "P5": ([3], [0.88])}
        store.add_event("train_step", {"training": "wdpo-p6", "step": 4, "loss": 0.5},
                        training_id=row["id"])
        screen.poll()  # what the interval timer calls
        assert screen.loss["loss"][0] == [1, 2, 3, 4]


async def test_start_without_answers_says_what_is_missing(synthetic, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("f5")  # the only run covers the test split, training needs train
        await wait_for_workers(app)
        await pilot.pause()
        error = plain(screen.query_one("#train-error", Static))
        assert "no train-split answers of persona 6" in error
        assert not screen.running and "failed" in plain(screen.query_one("#train-state", Static))


async def test_form_comes_from_training_config_and_checks_it(synthetic, make_app):
    from textual.widgets import OptionList, Select

    from fairpp_app.training.config import TrainingConfig

    store, _, questions = synthetic
    # A newer run holding only a model's answers (like eval-NAME) is no source to learn from.
    model_run = store.create_run("eval-something", "simulation", status="finished")
    store.upsert_records([{"run_id": model_run["id"], "question_id": q.id, "respondent": "m",
                           "respondent_kind": "model", "answer": "A", "raw_text": "A",
                           "method": "logprob"} for q in questions[:3]])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        form = screen.query_one(ConfigForm)
        assert form.cls is TrainingConfig
        config = form.build()
        assert (config.target, config.from_run, config.method) == ("6", RUN, "wdpo")
        # The choices as the drop-down lists them (each run is its own label).
        listed = screen.query_one("#field-from_run", Select).query_one(OptionList).options
        options = [str(option.prompt) for option in listed]
        assert RUN in options and "eval-something" not in options
        form.load({"lr": "-1"})
        await pilot.press("f5")
        await pilot.pause()
        assert "--lr must be a positive number" in plain(screen.query_one("#train-error", Static))
        assert not screen.running
        # The target is typed as on the command line: a group is fine, a typo is shown here.
        form.load({"lr": "1e-4", "target": "3:0.7,6:0.3"})
        assert form.build().target == "3:0.7,6:0.3"
        form.load({"target": "3,9"})
        await pilot.press("f5")
        await pilot.pause()
        assert "unknown persona '9'" in plain(screen.query_one("#train-error", Static))
        assert not screen.running


async def test_a_real_tiny_training_runs_from_the_screen(trainable, make_app):
    store, tiny = trainable
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start(app, pilot, _tiny_form(tiny, "tui-tiny", 2, lr=5e-3))
        await wait_for_workers(app)
        await pilot.pause()
        row = store.get_training("tui-tiny")
        assert row["status"] == "finished", plain(screen.query_one("#train-error", Static))
        screen.poll()
        assert screen.training_id == row["id"]
        assert screen.loss["loss"][0] == [1, 2]
        assert "finished at step 2" in plain(screen.query_one("#train-state", Static))


async def test_a_crash_in_the_training_child_is_shown_and_the_app_keeps_running(
        trainable, make_app, monkeypatch):
    store, tiny = trainable
    monkeypatch.setenv("FAIRPP_TEST_CRASH", "training-step:SIGSEGV:2")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start(app, pilot, _tiny_form(tiny, "tui-crash", 4, save_every=1))
        await until(pilot, lambda: bool(app.jobs), "the training child is started")
        assert app.jobs[-1].kind == "train"
        await wait_for_workers(app)
        await pilot.pause()
        assert store.get_training("tui-crash")["status"] == "crashed"
        error = plain(screen.query_one("#train-error", Static))
        assert "died by SIGSEGV" in error and "tui-crash is crashed after step 1" in error
        assert not screen.running and app.is_running
        # The app still works: the crashed training resumes from the same screen to its end.
        monkeypatch.delenv("FAIRPP_TEST_CRASH")
        await pilot.press("f8")
        await wait_for_workers(app)
        await pilot.pause()
        assert store.get_training("tui-crash")["status"] == "finished", \
            plain(screen.query_one("#train-error", Static))
        assert "finished at step 4" in plain(screen.query_one("#train-state", Static))


async def test_evaluate_from_the_trainings_table_makes_the_eval_run(trainable, make_app):
    store, tiny = trainable
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start(app, pilot, _tiny_form(tiny, "tui-eval", 2))
        await wait_for_workers(app)
        await pilot.pause()
        assert store.get_training("tui-eval")["status"] == "finished"
        screen.query_one("#trainings", DataTable).focus()
        await pilot.press("e")
        assert app.jobs[-1].kind == "evaluate"
        await wait_for_workers(app)
        await pilot.pause()
        run = store.get_run("eval-tui-eval")
        assert run["status"] == "finished" and store.record_count(run["id"]) > 0
        line = plain(screen.query_one("#train-eval", Static))
        assert line.startswith("run eval-tui-eval finished: ") and "answers" in line


# ---- the queue, the log, adoption, pause and cancel -------------------------------------------

def _queue_text(screen) -> str:
    line = screen.query_one("#train-queue", Static)
    return plain(line) if line.display else ""


def _claim_busy_run(store) -> dict:
    """A simulation this test process owns and works on: a live engine job on this host."""
    run = store.create_run("busy-sim", "simulation", backend="embedded", model="m",
                           mode="logprob", status="created")
    store.claim_run(run["id"])
    return run


async def test_f5_beside_a_live_job_queues_and_quitting_names_what_will_not_start(
        synthetic, make_app):
    from fairpp_app.tui.screens.quit_dialog import QuitScreen

    store, _, _ = synthetic
    insert_synthetic_run(store, n=24, split="train", name="train-answers")
    _claim_busy_run(store)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({"from_run": "train-answers", "name": "waits"})
        await pilot.press("f5")
        await until(pilot, lambda: "queued behind busy-sim" in _queue_text(screen), "the queue line")
        assert "1. waits" in _queue_text(screen) and app.jobs == [] and not screen.running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen), "the quit dialog")
        text = plain(app.screen.query_one("#quit-text", Static))
        assert "1 queued job will not start: waits" in text and "not kept" in text
        await pilot.press("q")
    assert app.dropped == ["waits"] and app.jobs == []
    assert store.find_training("waits") is None


async def test_a_queued_training_starts_when_the_live_job_ends_and_l_shows_its_log(
        trainable, make_app):
    from fairpp_app.tui.screens.log_dialog import LogScreen

    store, tiny = trainable
    busy = _claim_busy_run(store)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start(app, pilot, _tiny_form(tiny, "queued", 2))
        await until(pilot, lambda: "queued behind busy-sim" in _queue_text(screen), "the queue line")
        assert app.jobs == []
        store.release_run(busy["id"], "finished")  # the live job ends: the queue moves
        await until(pilot, lambda: len(app.jobs) == 1, "the queued training starts")
        await until(pilot, lambda: not screen.running and screen.job is None, "it ends")
        assert store.get_training("queued")["status"] == "finished", \
            plain(screen.query_one("#train-error", Static))
        assert _queue_text(screen) == "" and app.job_queue.waiting == []

        screen.set_focus(None)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), "the log dialog")
        assert app.screen.path.name == "queued.log"
        assert "==> fairpp train" in app.screen.text and "training 'queued'" in app.screen.text


async def test_a_live_training_child_is_adopted_by_a_new_app_and_f7_cancels_it(
        trainable, make_app, db_path):
    store, tiny = trainable
    # Started as an earlier app (or a terminal) would have: the new app did not start it.
    job = start_training(db_path, **{**_tiny_form(tiny, "adopted", 5000), "target": "6"})
    try:
        wait_until(lambda: (store.find_training("adopted") or {}).get("status") == "running",
                   "the child claims its training", job=job)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(app, pilot)
            assert (screen.followed, screen.pid, screen.job) == ("adopted", job.pid, None)
            assert screen.running and f"process {job.pid}" in plain(
                screen.query_one("#train-state", Static))
            shown = len(screen.loss["loss"][0])
            await until(pilot, lambda: len(screen.loss["loss"][0]) > shown + 1,
                        "the adopted training's steps drawn")
            await pilot.press("f7")
            await until(pilot, lambda: not screen.running, "the cancel is shown")
            assert store.get_training("adopted")["status"] == "cancelled"
            assert "adopted cancelled at step" in plain(screen.query_one("#train-state", Static))
        end = job.wait(timeout=120)
        assert end.exit_code == 130 and not end.crashed
    finally:
        end_child(job)


async def test_f6_pauses_the_child_f8_resumes_it_and_f7_cancels_it(trainable, make_app):
    store, tiny = trainable
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _start(app, pilot, _tiny_form(tiny, "stepped", 5000))
        await until(pilot, lambda: len(screen.loss.get("loss", ([], []))[0]) >= 2,
                    "two steps drawn")
        first = app.jobs[-1]
        await pilot.press("f6")
        await until(pilot, lambda: not screen.running, "the pause is shown")
        assert store.get_training("stepped")["status"] == "paused"
        assert first.process.returncode == 130
        assert "stepped paused at step" in plain(screen.query_one("#train-state", Static))

        await pilot.press("f8")  # the selected training: the paused one
        await until(pilot, lambda: len(app.jobs) == 2 and screen.followed == "stepped",
                    "the resumed child claims it")
        paused_at = max(screen.loss["loss"][0])
        await until(pilot, lambda: max(screen.loss["loss"][0]) > paused_at, "a step after it")
        await pilot.press("f7")
        await until(pilot, lambda: not screen.running, "the cancel is shown")
        assert store.get_training("stepped")["status"] == "cancelled"
        assert app.jobs[1].process.returncode == 130

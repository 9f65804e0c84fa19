"""Train: the form from TrainingConfig, curves replayed from stored events, a real tiny run."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from fairpp_app.tui.screens.train_screen import TrainScreen
from fairpp_app.tui.widgets.config_form import ConfigForm
from tests.support.tui_data import RUN, SIZE, insert_synthetic_run, plain, until, wait_for_workers

pytestmark = pytest.mark.asyncio


async def _open(app, pilot) -> TrainScreen:
    await pilot.press("6")
    await pilot.pause()
    assert isinstance(app.screen, TrainScreen)
    return app.screen


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


async def test_a_real_tiny_training_runs_from_the_screen(synthetic, make_app, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from tests.support.tiny_models import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny-llama")
    store, _, _ = synthetic
    insert_synthetic_run(store, n=24, split="train", name="train-answers")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({
            "from_run": "train-answers", "base": str(tiny), "name": "tui-tiny", "max_steps": 2,
            "batch_size": 4, "grad_accum": 1, "eval_every": 0, "limit": 24, "device": "cpu",
            "lr": 5e-3})
        await pilot.press("f5")
        await wait_for_workers(app)
        await pilot.pause()
        row = store.get_training("tui-tiny")
        assert row["status"] == "finished", plain(screen.query_one("#train-error", Static))
        screen.poll()
        assert screen.training_id == row["id"]
        assert screen.loss["loss"][0] == [1, 2]
        assert "finished at step 2" in plain(screen.query_one("#train-state", Static))


async def test_a_crash_in_the_training_child_is_shown_and_the_app_keeps_running(
        synthetic, make_app, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from tests.support.tiny_models import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny-llama")
    store, _, _ = synthetic
    insert_synthetic_run(store, n=24, split="train", name="train-answers")
    monkeypatch.setenv("FAIRPP_TEST_CRASH", "training-step:SIGSEGV:2")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({
            "from_run": "train-answers", "base": str(tiny), "name": "tui-crash", "max_steps": 4,
            "batch_size": 4, "grad_accum": 1, "eval_every": 0, "limit": 24, "device": "cpu",
            "save_every": 1})
        await pilot.press("f5")
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


async def test_evaluate_from_the_trainings_table_makes_the_eval_run(synthetic, make_app,
                                                                    tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from tests.support.tiny_models import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny-llama")
    store, _, _ = synthetic
    insert_synthetic_run(store, n=24, split="train", name="train-answers")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one(ConfigForm).load({
            "from_run": "train-answers", "base": str(tiny), "name": "tui-eval", "max_steps": 2,
            "batch_size": 4, "grad_accum": 1, "eval_every": 0, "limit": 24, "device": "cpu"})
        await pilot.press("f5")
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

"""A few deliberate pictures, on fixed data at a fixed size (120x40).

The database is a copy of the session's bank with the seeded synthetic run, opened by a
relative path so the picture does not depend on the temporary folder. Regenerate after an
intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at
the new SVGs before committing them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fairpp_app.store.browse import QuestionFilter
from fairpp_app.store.database import Store
from fairpp_app.tui.app import FairppApp
from fairpp_app.tui.screens.inspector_screen import InspectorScreen
from tests.support.tui_data import SIZE, insert_synthetic_run

INSTALLED = {"embedded", "llamacpp", "ollama", "openai"}


@pytest.fixture
def snap_db(tmp_path, template_db, monkeypatch):
    # The same picture on every machine: a fixed set of installed backends.
    from fairpp_app.backends import llamacpp
    from fairpp_app.tui.widgets import backends_panel

    monkeypatch.setattr(backends_panel, "available", lambda name: name in INSTALLED)
    monkeypatch.setattr(llamacpp, "embedded_model_present", lambda: True)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(template_db, tmp_path / "fairpp.db")
    with Store("fairpp.db") as store:
        _, questions = insert_synthetic_run(store)
    return Path("fairpp.db"), questions


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_home(snap_db, snap_compare):
    """Home on a database with the bank and one finished run: the path and size on top, the
    contents panel (28,420 questions, 22,751 train, 5,669 test, 7 personas, 1 run, 1,920
    records, 0 trained adapters), the backends panel (embedded, llamacpp, ollama and openai
    installed, transformers and mlx not) with ollama probed and unreachable and
    OPENAI_API_KEY unset, and the run 'synthetic' listed as finished. No first-run box."""
    path, _ = snap_db
    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=_settle)


def test_home_first_steps(tmp_path, template_db, monkeypatch, snap_compare):
    """Home on a database with the bank built and no run yet: the header reads
    'fairpp — Home'; under the path a 'First steps' box lists the loop, one key each: 4
    Simulate (20 test questions x 7 personas, F5 starts), 2 Questions (Enter shows every
    persona's answer), 5 Analysis, 6 Train, ? for the keys; the contents show 28,420
    questions, 0 runs and 0 records; the footer starts with '1-6 Screens'."""
    from fairpp_app.backends import llamacpp
    from fairpp_app.tui.widgets import backends_panel

    monkeypatch.setattr(backends_panel, "available", lambda name: name in INSTALLED)
    monkeypatch.setattr(llamacpp, "embedded_model_present", lambda: True)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(template_db, tmp_path / "fairpp.db")
    assert snap_compare(FairppApp(Path("fairpp.db")), terminal_size=SIZE, run_before=_settle)


def test_inspector(snap_db, snap_compare):
    """The inspector on the third test question of the synthetic run: its metadata, text and
    A/B/C options; majority A with one persona (3, Disengaged Battlers) on B, so tier 2 for
    the target persona 6 with its computed weight, and its consistency in the run (scored in
    one order; the share of framing pairs answered alike); the answers table with seven personas and
    the model 'tiny-model', each with a letter, small probability bars with their figures
    (0.00-1.00), the text of the option it chose, and a latency; `i Inconsistent` in the footer."""
    path, questions = snap_db

    async def open_inspector(pilot) -> None:
        await pilot.app.push_screen(InspectorScreen(questions[2].id, QuestionFilter(split="test")))
        await _settle(pilot)

    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=open_inspector)


def test_analysis_heatmap(snap_db, snap_compare):
    """Analysis of the synthetic run, split all, target persona 6: the Similarity tab with the
    7x7 persona heatmap, 1.000 on the diagonal, every cell coloured on the scale shown by the
    legend above it (0.17 to 1.00); the bar ends with the position-set selector (none stored),
    the tab row runs from Similarity to Reference and Consistency, the footer shows f Save
    figure and m Models."""
    path, _ = snap_db

    async def open_analysis(pilot) -> None:
        await pilot.press("5")
        await _settle(pilot)

    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=open_analysis)


# The Train screen's charts on a hand-made training: ten steps of a falling loss (and reward
# margin, which the screen does not chart) and three evaluations of similarity to each persona.
TRAIN_NAME = "wdpo-p6"
TRAIN_TARGET = "disengaged-traditionalists"  # persona 6
TRAIN_LOSS = [0.693, 0.652, 0.604, 0.561, 0.523, 0.488, 0.457, 0.431, 0.409, 0.392]
TRAIN_MARGIN = [0.00, 0.05, 0.11, 0.18, 0.26, 0.33, 0.41, 0.48, 0.54, 0.59]
TRAIN_SIMILARITY = {  # eval step -> similarity per persona slug, persona-number order
    4: [0.42, 0.55, 0.61, 0.47, 0.63, 0.66, 0.58],
    7: [0.40, 0.54, 0.63, 0.45, 0.68, 0.78, 0.61],
    10: [0.37, 0.52, 0.65, 0.43, 0.71, 0.89, 0.63],
}


@pytest.fixture
def train_db(store, db_path, slugs, monkeypatch):
    """The bank copy with one finished WDPO training toward persona 6 and its events, opened
    by a relative path (the header shows it); no run, so the form has no run to choose."""
    from fairpp_app.backends import llamacpp
    from fairpp_app.tui.widgets import backends_panel

    monkeypatch.setattr(backends_panel, "available", lambda name: name in INSTALLED)
    monkeypatch.setattr(llamacpp, "embedded_model_present", lambda: True)
    row = store.create_training(TRAIN_NAME, "wdpo", TRAIN_TARGET, "gemma-3-270m", None,
                                {"method": "wdpo", "target": "6"}, status="finished")
    for step, (loss, margin) in enumerate(zip(TRAIN_LOSS, TRAIN_MARGIN), start=1):
        store.add_event("train_step", {"training": TRAIN_NAME, "step": step, "loss": loss,
                                       "learning_rate": 1e-4, "reward_margin": margin,
                                       "reward_accuracy": None}, training_id=row["id"])
        if step in TRAIN_SIMILARITY:
            store.add_event("train_eval", {
                "training": TRAIN_NAME, "step": step, "target": TRAIN_TARGET,
                "similarity": dict(zip(slugs, TRAIN_SIMILARITY[step])), "agreement": {},
                "margin": margin, "loss": loss}, training_id=row["id"])
    monkeypatch.chdir(db_path.parent)
    return Path(db_path.name), row


def test_train_charts(train_db, snap_compare):
    """Train (key 6) with the one stored training 'wdpo-p6' (wdpo, target
    disengaged-traditionalists, finished) listed and selected: the form on the left with its
    defaults (method wdpo, target 6 in a text field whose help names the group forms,
    from run (none), device auto...), the state 'idle', and on the right two line charts
    against 'step'. 'training loss and reward margin' has a falling curve 'loss', 0.693
    at step 1 down to 0.392 at step 10, and a rising curve 'reward margin', 0.00 to
    0.59. 'similarity to each persona (held-out questions)' has seven lines over steps
    4, 7 and 10, legend in persona order P1, P2, P3, P4, P5, P7 in braille and last 'P6
    (target)' drawn bold in red: P6 climbs 0.66, 0.78, 0.89 to end on top; P1 and P4
    fall to 0.37 and 0.43 at the bottom; P2, P3, P5 and P7 stay between 0.52 and 0.71."""
    path, row = train_db

    async def open_train(pilot) -> None:
        from fairpp_app.tui.screens.train_screen import TrainScreen

        await pilot.press("6")
        await _settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TrainScreen) and screen.training_id == row["id"]
        assert screen.loss["loss"] == (list(range(1, 11)), TRAIN_LOSS)
        assert screen.similarity["P6"] == ([4, 7, 10], [0.66, 0.78, 0.89])
        assert len(screen.similarity) == 7
        assert screen.target_label == "P6"
        assert screen.loss["reward margin"][0] == list(range(1, 11))

    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=open_train)

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

from fairpp_app.app import FairppApp
from fairpp_app.browse import QuestionFilter
from fairpp_app.screens.inspector import InspectorScreen
from fairpp_app.store import Store
from tui_data import SIZE, insert_synthetic_run


INSTALLED = {"embedded", "llamacpp", "ollama", "openai"}


@pytest.fixture
def snap_db(tmp_path, template_db, monkeypatch):
    # The same picture on every machine: a fixed set of installed backends.
    from fairpp_app.widgets import backends_panel

    monkeypatch.setattr(backends_panel, "available", lambda name: name in INSTALLED)
    monkeypatch.setattr(backends_panel, "embedded_model_present", lambda: True)
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


def test_inspector(snap_db, snap_compare):
    """The inspector on the third test question of the synthetic run: its metadata, text and
    A/B/C options; majority A with one persona (3, Disengaged Battlers) on B, so tier 2 for
    the target persona 6 with its computed weight; the answers table with seven personas and
    the model 'tiny-model', each with a letter, small probability bars and a latency."""
    path, questions = snap_db

    async def open_inspector(pilot) -> None:
        await pilot.app.push_screen(InspectorScreen(questions[2].id, QuestionFilter(split="test")))
        await _settle(pilot)

    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=open_inspector)


def test_analysis_heatmap(snap_db, snap_compare):
    """Analysis of the synthetic run, split all, target persona 6: the Similarity tab with the
    7x7 persona heatmap, 1.000 on the diagonal, every cell coloured on the scale shown by the
    legend above it (0.17 to 1.00)."""
    path, _ = snap_db

    async def open_analysis(pilot) -> None:
        await pilot.press("5")
        await _settle(pilot)

    assert snap_compare(FairppApp(path), terminal_size=SIZE, run_before=open_analysis)

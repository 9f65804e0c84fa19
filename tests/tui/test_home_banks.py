"""Home counts the questions of each bank apart once the official release is imported."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.importing import import_fairpp
from fairpp_app.store.database import Store
from tests.support.tui_data import SIZE, plain, wait_for_workers
from tests.unit.test_official_import import official_frame, pairs, write

pytestmark = pytest.mark.asyncio


async def test_home_counts_each_bank_and_its_splits(db_path, bank, make_app, tmp_path):
    frame, _ = official_frame(pairs(bank, 3, seed=13))
    with Store(db_path) as store:
        import_fairpp(store, write(frame, tmp_path / "release.csv"), builtin_personas(),
                      split="test")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_workers(app)
        await pilot.pause()
        lines = [" ".join(line.split()) for line in
                 plain(app.screen.query_one("#counts", Static)).splitlines()]
        start = lines.index("fairpp bank 28,420")
        assert lines[start:start + 5] == ["fairpp bank 28,420", "train 22,751", "test 5,669",
                                          "official bank 6", "test 6"]
        assert "questions 28,426" in lines

"""``bench/train.py`` still runs both trainers end to end, for both recipes.

The benchmark is not timed here (speed is measured in ``bench/``, never in tests); this only
keeps it working as the trainer changes: a change to ``build_trainer`` once broke the bench
without any test noticing. Tiny random model, one timed step per trainer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("recipe", ["fairpp", "paper"])
def test_the_training_benchmark_runs_and_ends_with_its_ratio(tiny_dir, recipe):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train.py"), "--model", str(tiny_dir),
         "--recipe", recipe, "--stock-steps", "1", "--ours-steps", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio: ") and float(lines[-1].split()[1]) > 0, done.stdout
    assert any(line.startswith("stock TRL DPOTrainer:") for line in lines)
    assert any(line.startswith("fairpp fast path:") for line in lines)

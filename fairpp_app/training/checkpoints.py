"""The checkpoints of a training: ``checkpoints/checkpoint-N``, found, chosen and pruned.

Both trainers keep the Trainer's layout (a folder per step holding ``trainer_state.json``
next to the weights and the optimizer's state), so ``--resume`` looks for the same thing
whichever framework wrote it. Only what makes a checkpoint whole differs: the trainer
names its files. A folder missing one of them (a kill mid-save) is never resumed from.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

STATE_FILE = "trainer_state.json"
KEEP = 2  # checkpoints kept: the newest may be half-written when a run is killed


def step_of(folder: Path) -> int:
    try:
        return int(folder.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def is_whole(folder: Path, files: Iterable[str]) -> bool:
    """The state file is written last: with it readable (and ``files`` there) a checkpoint is whole."""
    try:
        json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return all((folder / f).is_file() for f in files)


def listed(checkpoint_dir: Path) -> list[Path]:
    """Every ``checkpoint-N`` folder, newest first."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted((p for p in checkpoint_dir.glob("checkpoint-*") if p.is_dir()),
                  key=step_of, reverse=True)


def last(checkpoint_dir: Path, files: Iterable[str]) -> Path | None:
    """The newest whole checkpoint; newer half-written ones are removed."""
    files = tuple(files)
    for folder in listed(checkpoint_dir):
        if is_whole(folder, files):
            return folder
        shutil.rmtree(folder, ignore_errors=True)
    return None


def prune(checkpoint_dir: Path, keep: int = KEEP) -> None:
    """Remove all but the ``keep`` newest checkpoints."""
    for old in listed(checkpoint_dir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)

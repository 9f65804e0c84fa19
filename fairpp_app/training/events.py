"""Start and end of a training, next to ``TrainingStep`` / ``TrainingEval`` in fairpp_app.events.

They follow the same rules as every event (plain dataclasses, stored in the events table
with the training's id, handed to the listener) and subclass the same base, so a listener
of ``fairpp_app.events`` handles them without knowing this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import Event


@dataclass
class TrainingStarted(Event):
    kind = "train_started"
    training: str
    method: str
    target: str
    base_model: str
    device: str
    questions: int
    pairs: int
    total_steps: int
    start_step: int = 0
    skipped: int = 0  # questions whose target answer is unparsed


@dataclass
class TrainingEnded(Event):
    kind = "train_ended"
    training: str
    status: str  # finished, failed, cancelled, interrupted
    step: int
    message: str = ""
    adapter_path: str | None = None
    extra: dict = field(default_factory=dict)

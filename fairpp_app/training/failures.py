"""Training failures a user can act on; the CLI prints them without a traceback.

Each failure writes its own advice, so the torch and the MLX trainer (which detect a
diverged loss or an exhausted device each in their own way) say the same thing.
"""

from __future__ import annotations

from fairpp_app.core.errors import FairppError


class TrainingError(FairppError):
    exit_code = 1


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite: the run stops instead of training on garbage."""

    @classmethod
    def at(cls, value: float, step: int, lr: float, configured_lr: float) -> TrainingDiverged:
        return cls(f"the loss became {value} at step {step} (learning rate {lr:.3g}); training "
                   f"stopped rather than train on garbage. Lower --lr (it was {configured_lr:g}) "
                   "and start again; the checkpoints so far hold the last good state")


class TrainingOutOfMemory(TrainingError):
    """The device ran out of memory: a smaller micro-batch (with more accumulation) fits."""

    @classmethod
    def on(cls, device: str, batch_size: int, grad_accum: int) -> TrainingOutOfMemory:
        smaller = max(1, batch_size // 2)
        return cls(f"out of memory on {device} with --batch-size {batch_size} and --grad-accum "
                   f"{grad_accum}; try --batch-size {smaller} --grad-accum "
                   f"{grad_accum * batch_size // smaller} (same questions per step)")


class TrainerUnavailable(TrainingError):
    exit_code = 2

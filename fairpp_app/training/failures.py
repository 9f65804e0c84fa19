"""Training failures a user can act on; the CLI prints them without a traceback."""

from __future__ import annotations

from fairpp_app.core.errors import FairppError


class TrainingError(FairppError):
    exit_code = 1


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite: the run stops instead of training on garbage."""


class TrainingOutOfMemory(TrainingError):
    """The device ran out of memory: a smaller micro-batch (with more accumulation) fits."""


class TrainerUnavailable(TrainingError):
    exit_code = 2

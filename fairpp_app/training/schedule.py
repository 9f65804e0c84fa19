"""How many optimizer steps a training takes, and the learning rate at each.

The transformers Trainer counts its steps itself; the MLX loop counts them here. Both
announce the same total in ``TrainingStarted`` because both read it from here: a step is
``--grad-accum`` micro-batches of ``--batch-size`` questions, the last one of an epoch
possibly short, and ``--max-steps`` overrides the epochs.
"""

from __future__ import annotations

import math

from fairpp_app.training.config import TrainingConfig


def steps_per_epoch(config: TrainingConfig, n_examples: int) -> int:
    micro_batches = math.ceil(n_examples / config.batch_size)
    return max(1, math.ceil(micro_batches / config.grad_accum))


def total_steps(config: TrainingConfig, n_examples: int) -> int:
    return config.max_steps or steps_per_epoch(config, n_examples) * config.epochs


def learning_rate(config: TrainingConfig, total: int, done: int) -> float:
    """The Trainer's linear schedule: the rate for the step after ``done`` finished steps."""
    if done < config.warmup_steps:
        return config.lr * done / config.warmup_steps
    return config.lr * max(0.0, (total - done) / max(1, total - config.warmup_steps))

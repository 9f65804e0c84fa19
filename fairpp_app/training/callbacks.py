"""Trainer hooks that turn the transformers Trainer's training into events.

``on_log`` gives a ``TrainingStep`` per logged step (loss, learning rate, and for the
preference methods the reward margin and accuracy); the live evaluation is the shared
:class:`~fairpp_app.training.live_eval.LiveEvaluator`, called at the Trainer's moments
that match the MLX loop's; the cancel flag becomes the Trainer's own stop after a save (on
every process of a launch at the same step, whichever of them was signalled).
"""

from __future__ import annotations

import threading

from transformers import TrainerCallback

from fairpp_app.training import collectives
from fairpp_app.training.live_eval import LiveEvaluator


def _float(value) -> float | None:
    return None if value is None else float(value)


class EventCallback(TrainerCallback):
    """A ``TrainingStep`` for every log line of the Trainer."""

    def __init__(self, session) -> None:
        self.session = session

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        self.session.record_step(state.global_step, float(logs["loss"]),
                                 learning_rate=_float(logs.get("learning_rate")),
                                 reward_margin=_float(logs.get("reward_margin")),
                                 reward_accuracy=_float(logs.get("reward_accuracy")))


class LiveEvalCallback(TrainerCallback):
    """The live similarity at the start, every ``--eval-every`` steps and at the end."""

    def __init__(self, evaluator: LiveEvaluator) -> None:
        self.evaluator = evaluator

    def on_train_begin(self, args, state, control, **kwargs):
        self.evaluator.begin(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # After the step's TrainingStep (EventCallback runs first), so the loss is this step's.
        if "loss" in (logs or {}):
            self.evaluator.after_step(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.evaluator.end(state.global_step)


class CancelCallback(TrainerCallback):
    """Stops at the end of a step when the TUI (or anyone) sets the cancel flag; saves first."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def on_step_end(self, args, state, control, **kwargs):
        # A signal reaches one process of a launch: all stop at the same step, or the
        # others would wait for it forever.
        if collectives.any_rank(self.cancel.is_set()):
            self.cancel.set()
            control.should_save = True
            control.should_training_stop = True
        return control

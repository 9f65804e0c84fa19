"""Trainer hooks that turn training into events (STYLE habit 4).

``on_log`` gives a ``TrainingStep`` per logged step (loss, learning rate, and for DPO the
reward margin and accuracy) and, every
``--eval-every`` steps, the live similarity: the current policy answers a fixed held-out subset of the test
split as the bare ``model`` respondent, scored exactly as the transformers backend scores
(it is that backend, around the model in memory), and its answers are compared with every
persona's answers from ``--from-run`` on those questions. The hooks also work for the
MLX trainer's loop, which calls them with the same arguments.
"""

from __future__ import annotations

import threading

from transformers import TrainerCallback

from fairpp_app.core.events import TrainingEval, TrainingStep
from fairpp_app.training.evaluate import live_similarity


def _float(value) -> float | None:
    return None if value is None else float(value)


class EventCallback(TrainerCallback):
    """A ``TrainingStep`` for every log line of the Trainer."""

    def __init__(self, session) -> None:
        self.session = session
        self.last_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        self.last_loss = float(logs["loss"])
        self.session.last_loss = self.last_loss
        self.session.emit(TrainingStep(
            self.session.name, state.global_step, self.last_loss,
            learning_rate=_float(logs.get("learning_rate")),
            reward_margin=_float(logs.get("reward_margin")),
            reward_accuracy=_float(logs.get("reward_accuracy"))))


class LiveEvalCallback(TrainerCallback):
    """Similarity of the current policy to every persona on held-out questions."""

    def __init__(self, session, scorer, questions, answers) -> None:
        self.session = session
        self.scorer = scorer
        self.questions = questions
        self.answers = answers
        self.every = session.config.eval_every
        self.done_at: int | None = None

    def evaluate(self, step: int) -> TrainingEval:
        result = live_similarity(self.scorer, self.questions, self.answers,
                                 self.session.personas, self.session.target,
                                 debias=self.session.debias)
        event = TrainingEval(self.session.name, step, self.session.target.slug,
                             similarity=result["similarity"], agreement=result["agreement"],
                             margin=result["margin"], loss=getattr(self.session, "last_loss", None))
        self.session.emit(event)
        self.done_at = step
        return event

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0 and self.session.main:
            self.evaluate(0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # After the step's TrainingStep (EventCallback runs first), so the loss is this step's.
        if (self.session.main and "loss" in (logs or {}) and state.global_step % self.every == 0
                and self.done_at != state.global_step):
            self.evaluate(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.session.main and self.done_at != state.global_step:
            self.evaluate(state.global_step)


class CancelCallback(TrainerCallback):
    """Stops at the end of a step when the TUI (or anyone) sets the cancel flag; saves first."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def on_step_end(self, args, state, control, **kwargs):
        if self.cancel.is_set():
            control.should_save = True
            control.should_training_stop = True
        return control

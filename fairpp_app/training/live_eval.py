"""The live similarity: every ``--eval-every`` steps, the model being trained answers a fixed
held-out subset of the test split and is compared with every persona.

One evaluator serves both trainers because it needs nothing of either framework: it
takes a scorer (the transformers backend around the peft model, or the mlx backend around
the MLX model), which answers the way ``fairpp simulate`` would with that backend, so the
similarity reported while training is the one a later evaluation records. The torch
trainer calls it from Trainer hooks, the MLX loop calls it directly, at the same moments:
before the first step of a fresh run, after every ``--eval-every``-th step, and at the end
unless the last step was just evaluated.
"""

from __future__ import annotations

from fairpp_app.core.answers import average
from fairpp_app.core.events import TrainingEval
from fairpp_app.core.personas import Persona
from fairpp_app.core.prompts import build_prompt
from fairpp_app.training.compare import compare_with_personas


def live_similarity(scorer, questions, answers: dict[str, dict[str, str | None]],
                    personas: list[Persona], target: Persona, debias: str = "none") -> dict:
    """Answers of the model in ``scorer`` on ``questions`` (logprob mode, no persona), compared.

    With ``debias="permute"`` each question is also scored with A and B swapped and the two
    distributions averaged, as ``fairpp simulate --debias permute`` did for the personas.
    """
    model = scorer.model
    was_training = model.training
    model.eval()
    scorer.forget_cache()  # the weights changed since the last evaluation
    try:
        scores = scorer.score_options([build_prompt(q, None) for q in questions])
        if debias == "permute":
            swapped = scorer.score_options([build_prompt(q, None, swap_ab=True) for q in questions])
            scores = [average(s, w.swapped_ab()) for s, w in zip(scores, swapped)]
    finally:
        scorer.forget_cache()  # nor keep keys and values while training goes on
        if was_training:
            model.train()
    mine = {q.id: s.answer for q, s in zip(questions, scores)}
    return {**compare_with_personas(mine, answers, personas, target), "answers": mine}


class LiveEvaluator:
    """``TrainingEval`` events from ``scorer``'s answers to the session's held-out questions."""

    def __init__(self, session, scorer) -> None:
        self.session = session
        self.scorer = scorer
        self.every = session.config.eval_every
        self.questions, self.answers = session.eval_set() if self.every > 0 else ([], {})
        self.done_at: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.questions) and self.session.main

    def evaluate(self, step: int) -> TrainingEval | None:
        if not self.active:
            return None
        session = self.session
        result = live_similarity(self.scorer, self.questions, self.answers, session.personas,
                                 session.target, debias=session.debias)
        event = TrainingEval(session.name, step, session.target.slug,
                             similarity=result["similarity"], agreement=result["agreement"],
                             margin=result["margin"], loss=session.last_loss)
        session.emit(event)
        self.done_at = step
        return event

    def begin(self, step: int) -> TrainingEval | None:
        """Before training: the untrained model's similarity, unless a resumed run had it."""
        return self.evaluate(0) if step == 0 else None

    def after_step(self, step: int) -> TrainingEval | None:
        if self.every > 0 and step % self.every == 0 and self.done_at != step:
            return self.evaluate(step)
        return None

    def end(self, step: int) -> TrainingEval | None:
        return self.evaluate(step) if self.done_at != step else None

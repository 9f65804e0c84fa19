"""Training examples from a run's persona answers (plain Python: the torch and MLX trainers share it).

One example per train question: the prompt the bare ``model`` respondent sees (no
persona: the point of alignment is that the model answers as the target without being
told to), the target persona's letter as the preferred completion, the two other letters
as the rejected ones, and the question's weight (the paper's tiers for the w-methods, 1
otherwise). A DPO example is therefore two pairs sharing one prompt; SFT uses the
preferred letter only. Questions whose target answer is unparsed are skipped and counted,
never turned into C.

When the source run was scored with ``--debias permute`` (each question asked twice, A
and B swapped, probabilities averaged), every question is also trained in its swapped
order, the letters swapped with it, so the model learns the option rather than its
position, and sees both layouts that its evaluation will ask.

With three pairs per question (the paper's recipe) the third pair is the two other letters
in a random order: drawn per question from ``--seed`` and the question id (so a ``--limit``
or a resume draws the same), and kept as the order of ``rejected``.

The weighting estimators (``--weighting``) change what a trainer iterates, never the
examples themselves: ``TrainingSet.schedule`` gives the list with the weights the loss
reads (as they are; rescaled to mean 1 over the set; or drawn in proportion to weight
with weight 1), and ``by_batch`` says whether the loss divides by the micro-batch's weight
sum (the paper's) or by its number of questions (an unbiased estimate of the set's
weighted mean).

The soft methods (``dsft``, ``wdsft``) also carry the target's A/B/C distribution on each
example (``soft``, over A, B, C as shown; swapped with the options): a persona's scored
probabilities, or a group's mix. A run that holds letters only (imported, or answered in
text mode) has no distribution to learn, and says so, naming the run.

A group target (``core.targets``) gives each example the group's letter (its mix's
argmax) and weights counted against the personas outside the group.

The data hash covers every example with its weight and order, the method and the prompt
template (and the recipe's parts where they differ from fairpp's), so a resumed training
can tell that its data changed underneath it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field, replace

import numpy as np

from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.core.prompts import Prompt, build_prompt, template_hash
from fairpp_app.core.questions import LETTERS, Question
from fairpp_app.core.targets import Target, as_target
from fairpp_app.core.weighting import compute_weights
from fairpp_app.jobs.run_metrics import target_answers
from fairpp_app.store.database import Store
from fairpp_app.training.methods import method as method_of


@dataclass(frozen=True)
class Example:
    question: Question
    chosen: str                   # the target persona's letter
    rejected: tuple[str, str]     # the two other letters
    weight: float = 1.0
    tier: int | None = None
    swapped: bool = False         # options A and B shown in swapped order (letters follow)
    soft: tuple[float, float, float] | None = None  # the target's A/B/C distribution (soft methods)

    def prompt(self) -> Prompt:
        return build_prompt(self.question, None, swap_ab=self.swapped)

    def swap(self) -> Example:
        """The same question with options A and B swapped, the letters following their options."""
        flip = {"A": "B", "B": "A", "C": "C"}
        soft = None if self.soft is None else (self.soft[1], self.soft[0], self.soft[2])
        return Example(self.question, flip[self.chosen],
                       (flip[self.rejected[0]], flip[self.rejected[1]]),
                       self.weight, self.tier, not self.swapped, soft)

    def soft_columns(self) -> list[float]:
        """The target distribution in the trainers' letter columns: preferred, then rejected."""
        if self.soft is None:
            raise ValueError(f"example of question {self.question.id} has no target distribution")
        return [self.soft[LETTERS.index(x)] for x in (self.chosen, *self.rejected)]

    def pairs(self, n: int = 2) -> list[tuple[str, str]]:
        """The (preferred, rejected) letter pairs: the target over each other letter, then
        (with ``n`` = 3) the first rejected letter over the second."""
        out = [(self.chosen, r) for r in self.rejected]
        return out + [self.rejected] if n == 3 else out


@dataclass
class TrainingSet:
    examples: list[Example]
    target: Target
    method: str
    from_run: str
    alpha: float
    beta: float
    permute: bool = False
    pairs: int = 2
    skipped: list[str] = field(default_factory=list)   # target answer unparsed
    tiers: list[dict] = field(default_factory=list)
    data_hash: str = ""

    @property
    def n_questions(self) -> int:
        return len({e.question.id for e in self.examples})

    @property
    def n_pairs(self) -> int:
        per = self.pairs if method_of(self.method).preference else 1
        return per * len(self.examples)

    def schedule(self, weighting: str, seed: int) -> list[Example]:
        """The examples a trainer iterates under ``weighting``, with the weights its loss reads."""
        if weighting == "batch" or not method_of(self.method).weighted:
            return self.examples
        weights = np.array([e.weight for e in self.examples], dtype=float)
        total, n = float(weights.sum()), len(self.examples)
        if total <= 0:
            raise UsageError("every training question has weight 0; nothing to train on")
        if weighting == "dataset":
            return [replace(e, weight=e.weight * n / total) for e in self.examples]
        rng = np.random.default_rng([seed, 1])
        drawn = rng.choice(n, size=n, replace=True, p=weights / total)
        return [replace(self.examples[i], weight=1.0) for i in drawn]

    def letter_shares(self, weighted: bool = False) -> dict[str, float]:
        """Share of each letter among the target's answers (by weight when ``weighted``).

        A model that cannot yet tell questions apart drifts to the letter that dominates
        here, so a lopsided weighted share warns of a training that will answer one letter.
        """
        totals = dict.fromkeys(LETTERS, 0.0)
        for e in self.examples:
            if not e.swapped:
                totals[e.chosen] += e.weight if weighted else 1.0
        whole = sum(totals.values()) or 1.0
        return {k: v / whole for k, v in totals.items()}

    def summary(self) -> dict:
        weighted = method_of(self.method).weighted
        return {"questions": self.n_questions, "examples": len(self.examples), "pairs": self.n_pairs,
                "skipped_unparsed": len(self.skipped), "tiers": self.tiers,
                "data_hash": self.data_hash, "weighted": weighted,
                "both_orders": self.permute, "letters": self.letter_shares(),
                "weighted_letters": self.letter_shares(True) if weighted else None,
                "alpha": self.alpha, "beta": self.beta, "pairs_per_question": self.pairs}


def by_batch(weighting: str) -> bool:
    """Whether the loss divides by the micro-batch's weight sum (else by its question count)."""
    return weighting == "batch"


def data_hash(method: str, examples: list[Example], recipe: dict | None = None) -> str:
    content = {"method": method, "template": template_hash(),
               "examples": [[e.question.id, e.chosen, list(e.rejected), round(e.weight, 12)]
                            + ([True] if e.swapped else [])
                            + ([[round(x, 12) for x in e.soft]] if e.soft is not None else [])
                            for e in examples]}
    if recipe:  # only where it differs from fairpp's, so earlier trainings keep their hash
        content["recipe"] = recipe
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


def third_pair_order(seed: int, qid: str, rejected: tuple[str, str]) -> tuple[str, str]:
    """The two other letters in a random order drawn from the seed and the question."""
    swap = random.Random(f"{seed}\x1f{qid}").random() < 0.5
    return (rejected[1], rejected[0]) if swap else rejected


def build_training_set(store: Store, from_run: str, target: Target | Persona,
                       personas: list[Persona],
                       method: str, alpha: float = 1.0, beta: float = 1.0,
                       limit: int | None = None, save_weights: bool = True,
                       bank: str | None = None, *,
                       pairs: int = 2, seed: int = 42, recipe: dict | None = None) -> TrainingSet:
    """The training examples of ``method`` toward ``target`` from ``from_run``'s answers on
    the train split of ``bank`` (default: the bank of the run's answers).

    ``recipe`` holds the parts of the recipe that differ from fairpp's (they enter the hash).
    ``target`` may be a group (``core.targets``).
    """
    target = as_target(target)
    spec = method_of(method)
    weighted = spec.weighted
    permute = run_debias(store, from_run) == "permute"
    slugs = [p.slug for p in personas]
    bank = bank or store.run_bank(store.get_run(from_run)["id"])
    answers, dists = target_answers(store, from_run, target, slugs, "train", bank,
                                    distributions=True)
    questions = [q for q in store.questions("train", bank=bank) if q.id in answers]
    if limit is not None:
        questions = questions[:limit]
    answers = {q.id: answers[q.id] for q in questions}
    answered = [q for q in questions if target.slug in answers[q.id]]
    if not answered:
        raise UsageError(f"run '{from_run}' has no train-split answers of {target.title}; "
                         "simulate or import them first")
    present = [s for s in slugs if any(s in by for by in answers.values())]
    if spec.soft:
        _require_distributions(from_run, method, target,
                               [q.id for q in answered if answers[q.id][target.slug] is not None],
                               dists)
    tiers: list[dict] = []
    weights: dict[str, tuple[int, float]] = {}
    if weighted:
        by_q = {q.id: answers[q.id] for q in answered}
        result = compute_weights(by_q, target.slug, present, alpha, beta,
                                 members=target.member_slugs)
        tiers, weights = result.tiers, result.weights
        if save_weights:
            run = store.get_run(from_run)
            store.save_weights(run["id"], target.slug, alpha, beta, "train", result.tiers,
                               result.weights, result.skipped)
    examples, skipped = [], []
    for q in answered:
        letter = answers[q.id].get(target.slug)
        if letter is None:
            skipped.append(q.id)
            continue
        first, second = (x for x in LETTERS if x != letter)
        if pairs == 3:
            first, second = third_pair_order(seed, q.id, (first, second))
        if weighted:
            tier, w = weights[q.id]
        else:
            tier, w = None, 1.0
        soft = tuple(float(x) for x in dists[q.id]) if spec.soft else None
        example = Example(q, letter, (first, second), float(w), tier, soft=soft)
        examples.append(example)
        if permute:
            examples.append(example.swap())
    if not examples:
        raise UsageError(f"every train answer of {target.title} in run '{from_run}' is "
                         "unparsed; nothing to train on")
    return TrainingSet(examples, target, method, from_run, alpha, beta, permute, pairs, skipped,
                       tiers, data_hash(method, examples, recipe))


def _require_distributions(from_run: str, method: str, target: Target, qids: list[str],
                           dists: dict) -> None:
    """Refuse a soft method on answers without probabilities, naming the run."""
    missing = [q for q in qids if dists.get(q) is None]
    if not missing:
        return
    who = f"the members of {target.title}" if target.is_group else target.title
    where = ("" if len(missing) == len(qids) else
             f" on {len(missing):,} of {len(qids):,} train questions")
    raise UsageError(
        f"--method {method} learns the target's A/B/C distribution, but run '{from_run}' holds "
        f"letters only for {who}{where} (no probabilities: imported, or "
        "answered in text mode); simulate the personas with --mode logprob, or use sft / wsft")


def run_debias(store: Store, run: str) -> str:
    """How a run's answers were debiased (``none`` or ``permute``), from its stored settings."""
    return str(store.get_run(run)["params"].get("debias") or "none")


def _rank(qid: str) -> str:
    return hashlib.sha256(f"fairpp-eval\x1f{qid}".encode()).hexdigest()


def eval_subset(store: Store, from_run: str, personas: list[Persona], target: Target | Persona,
                limit: int, split: str = "test", bank: str | None = None
                ) -> tuple[list[Question], dict[str, dict[str, str | None]]]:
    """A fixed, spread-out subset of held-out questions the target answered, with every persona's answers.

    Ranked by a hash of the question id, so the subset is the same on every run and
    resume, and covers topics and groups instead of the first block of the bank.
    """
    bank = bank or store.run_bank(store.get_run(from_run)["id"])
    answers = target_answers(store, from_run, target, [p.slug for p in personas], split, bank)
    usable = [qid for qid, by in answers.items() if by.get(target.slug) is not None]
    chosen = set(sorted(usable, key=_rank)[:limit])
    questions = [q for q in store.questions(split, bank=bank) if q.id in chosen]
    return questions, {q.id: answers[q.id] for q in questions}

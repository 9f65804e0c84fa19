"""Sample weights that stress the questions where the target persona stands apart.

Paper Eq. 1 as in the released code: a question's tier is 1 plus the number of the other
personas whose answer differs from the target's (1..K with K personas). With N_i questions
in tier i, T_i = (i/K)^alpha * (1/N_i)^beta, normalised so the tiers' T sum to 1; every
question gets its tier's T. An empty tier simply carries no weight (the released code
divided by zero there). Questions whose target answer is unparsed get no weight and are
reported; another persona's unparsed answer does not count as a difference.

A group target (``targets``) counts the same way against the personas outside it: its
answer is its mix's argmax, the tier is 1 plus the number of outside personas whose
answer differs, and K = 1 + the number of outside personas. For one persona that is the
paper's K = 7, so a group of one gets exactly the persona's weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class WeightResult:
    target: str
    alpha: float
    beta: float
    tiers: list[dict] = field(default_factory=list)  # {"tier", "count", "weight"}
    weights: dict[str, tuple[int, float]] = field(default_factory=dict)  # qid -> (tier, w)
    skipped: list[str] = field(default_factory=list)  # target answer unparsed

    def as_json(self) -> dict:
        return {
            "target": self.target,
            "alpha": self.alpha,
            "beta": self.beta,
            "tiers": self.tiers,
            "weights": {qid: w for qid, (_, w) in self.weights.items()},
            "skipped": self.skipped,
        }


def tier_of(target_answer: str, others: list[str | None]) -> int:
    return 1 + sum(1 for a in others if a is not None and a != target_answer)


def tier_values(counts: list[int], alpha: float = 1.0, beta: float = 1.0) -> list[float]:
    """Normalised T_i for tiers 1..K given N_i; empty tiers get 0."""
    k = len(counts)
    raw = [((i / k) ** alpha) * ((1.0 / n) ** beta) if n > 0 else 0.0
           for i, n in enumerate(counts, start=1)]
    total = sum(raw)
    return [r / total for r in raw] if total > 0 else raw


def compute_weights(answers: Mapping[str, Mapping[str, str | None]], target: str,
                    personas: list[str], alpha: float = 1.0, beta: float = 1.0,
                    members: Sequence[str] | None = None) -> WeightResult:
    """``answers`` maps question id -> {respondent -> letter or None}; ``target`` is the key
    of the target's answer: a persona's slug, or a group's (``members`` its personas)."""
    members = list(members or [target])
    if members == [target] and target not in personas:
        raise ValueError(f"target {target!r} is not among the personas {personas}")
    others = [p for p in personas if p not in members and p != target]
    k = 1 + len(others)
    result = WeightResult(target=target, alpha=alpha, beta=beta)
    tier_by_q: dict[str, int] = {}
    for qid, by_persona in answers.items():
        t_answer = by_persona.get(target)
        if t_answer is None:
            result.skipped.append(qid)
            continue
        tier_by_q[qid] = tier_of(t_answer, [by_persona.get(p) for p in others])
    counts = [0] * k
    for tier in tier_by_q.values():
        counts[tier - 1] += 1
    values = tier_values(counts, alpha, beta)
    result.tiers = [{"tier": i, "count": n, "weight": v}
                    for i, (n, v) in enumerate(zip(counts, values), start=1)]
    result.weights = {qid: (tier, values[tier - 1]) for qid, tier in tier_by_q.items()}
    return result

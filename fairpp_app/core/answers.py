"""Turning model output into an answer.

Free text is parsed the paper's way, with one change: what cannot be read stays unparsed
(``None``) instead of silently becoming C. Option scores (log-probabilities of the option
letters) are normalised over A/B/C into probabilities; the answer is their argmax.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from fairpp_app.core.questions import LETTERS

_STANDALONE = {L: re.compile(rf"(?<![A-Za-z]){L}(?![A-Za-z])") for L in LETTERS}


def parse_letter(text: str | None) -> str | None:
    """The option letter in a model's reply, or None when it cannot be told.

    Order as in the paper: exactly "A" or containing "A." wins, then B, then C. Blank text,
    text naming no option, and text naming several options without a clear lead are
    unparsed.
    """
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return None
    head = stripped.strip(" *\"'`()[]:").upper()
    if head in LETTERS:
        return head
    for letter in LETTERS:
        if f"{letter}." in stripped or f"{letter})" in stripped:
            return letter
    # "Option B", "answer: C" and the like: accept only one standalone capital letter.
    found = [L for L in LETTERS if _STANDALONE[L].search(stripped)]
    if len(found) == 1 and re.search(rf"(option|answer|choice)\W*{found[0]}\b", stripped, re.I):
        return found[0]
    return None


@dataclass
class OptionScores:
    """Normalised probabilities over A/B/C, plus the mass that fell on other tokens."""

    probs: tuple[float, float, float]
    other_mass: float | None = None
    raw: dict = field(default_factory=dict)

    @property
    def answer(self) -> str:
        best = max(range(3), key=lambda i: self.probs[i])
        return LETTERS[best]

    @classmethod
    def from_logprobs(cls, logprobs: dict[str, float | None], total_known: bool = True) -> OptionScores:
        """Build from log-probabilities per letter (None = letter not among the returned ones).

        ``other_mass`` is 1 minus the probability of the three letters, when the
        log-probabilities are over the whole vocabulary.
        """
        values = [logprobs.get(L) for L in LETTERS]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            raise ValueError("none of the option letters has a log-probability")
        top = max(finite)
        weights = [math.exp(v - top) if v is not None and math.isfinite(v) else 0.0 for v in values]
        total = sum(weights)
        probs = (weights[0] / total, weights[1] / total, weights[2] / total)
        other = None
        if total_known:
            mass = sum(math.exp(v) for v in finite)
            other = max(0.0, 1.0 - mass)
        return cls(probs=probs, other_mass=other, raw=dict(zip(LETTERS, values)))

    def swapped_ab(self) -> OptionScores:
        a, b, c = self.probs
        return OptionScores(probs=(b, a, c), other_mass=self.other_mass, raw=self.raw)


def average(first: OptionScores, second_swapped_back: OptionScores) -> OptionScores:
    """Mean of two distributions over the same (original) options; used by --debias permute."""
    (a1, b1, c1), (a2, b2, c2) = first.probs, second_swapped_back.probs
    others = [o for o in (first.other_mass, second_swapped_back.other_mass) if o is not None]
    return OptionScores(probs=((a1 + a2) / 2, (b1 + b2) / 2, (c1 + c2) / 2),
                        other_mass=sum(others) / len(others) if others else None,
                        raw={"original": first.raw, "swapped": second_swapped_back.raw})

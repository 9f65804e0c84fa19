"""How close two respondents' answers are.

The paper's similarity compares only the A/B/C frequency vectors of two respondents over
the same questions: 1 minus the Jensen-Shannon distance (natural log), so it lies in
[1 - sqrt(ln 2), 1]. Two respondents who disagree on every question can still score 1.0,
so we add per-question agreement, a per-dimension breakdown, and soft versions computed
from option probabilities. Unparsed answers (``None``) are never counted as an option;
callers get their number separately.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon

from fairpp_app.core.questions import LETTERS

MIN_SIMILARITY = 1.0 - math.sqrt(math.log(2.0))


def letter_counts(answers: Iterable[str | None]) -> np.ndarray:
    """Counts of A, B, C; unparsed answers (None) are ignored."""
    counts = np.zeros(3, dtype=float)
    for a in answers:
        if a is not None:
            counts[LETTERS.index(a)] += 1
    return counts


def js_similarity(p: Sequence[float], q: Sequence[float]) -> float | None:
    """1 - Jensen-Shannon distance (natural log) between two non-negative vectors.

    The vectors are normalised by scipy; ``None`` when either has no mass.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    distance = float(jensenshannon(p, q))
    if math.isnan(distance):
        # scipy takes the square root of a divergence that rounding can push just below 0
        # for identical inputs; the true distance there is 0.
        distance = 0.0
    return float(min(1.0, max(MIN_SIMILARITY, 1.0 - distance)))


def similarity(x: Iterable[str | None], y: Iterable[str | None]) -> float | None:
    """The paper's metric from two lists of answer letters."""
    return js_similarity(letter_counts(x), letter_counts(y))


def paired(x: Mapping[str, str | None], y: Mapping[str, str | None]) -> tuple[list[str], list[str]]:
    """Answers of both respondents on the questions where both gave a parsed answer."""
    xs: list[str] = []
    ys: list[str] = []
    for key, a in x.items():
        b = y.get(key)
        if a is not None and b is not None:
            xs.append(a)
            ys.append(b)
    return xs, ys


def paired_similarity(x: Mapping[str, str | None], y: Mapping[str, str | None]) -> float | None:
    """Paper's similarity restricted to questions both answered (parsed)."""
    a, b = paired(x, y)
    return similarity(a, b) if a else None


def agreement(x: Mapping[str, str | None], y: Mapping[str, str | None]) -> float | None:
    """Share of commonly answered questions on which both chose the same option."""
    a, b = paired(x, y)
    if not a:
        return None
    return sum(i == j for i, j in zip(a, b)) / len(a)


def soft_similarity(px: np.ndarray, py: np.ndarray) -> float | None:
    """1 - JS distance between the mean option distributions of two respondents.

    ``px`` and ``py`` are (n, 3) arrays of per-question probabilities over A/B/C.
    """
    px = np.asarray(px, dtype=float).reshape(-1, 3)
    py = np.asarray(py, dtype=float).reshape(-1, 3)
    if len(px) == 0 or len(py) == 0:
        return None
    return js_similarity(px.mean(axis=0), py.mean(axis=0))


def soft_agreement(px: np.ndarray, py: np.ndarray) -> float | None:
    """Mean over paired questions of the chance two independent draws agree (sum p*q)."""
    px = np.asarray(px, dtype=float).reshape(-1, 3)
    py = np.asarray(py, dtype=float).reshape(-1, 3)
    if len(px) == 0 or len(px) != len(py):
        return None
    return float(np.mean(np.sum(px * py, axis=1)))



def js_distance_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS distance (natural log) between matching rows of ``p`` and ``q`` (counts or
    probabilities over A/B/C, broadcast against each other); NaN where a row has no mass.
    The vectorised form of ``js_similarity``'s distance, for many pairs at once."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
        m = (p + q) / 2.0
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
        out = np.sqrt(np.maximum(0.0, (kl_p + kl_q) / 2.0))
    bad = np.isnan(p).any(axis=-1) | np.isnan(q).any(axis=-1)
    return np.where(bad, np.nan, out)


def distance_from_uniform(p: np.ndarray) -> np.ndarray:
    """JS distance (natural log) of each row of ``p`` (counts or probabilities over A/B/C)
    to the uniform distribution; NaN for a row without mass.

    Shown beside a similarity: a respondent close to uniform is close to every persona
    whose shares are mixed, so its similarity says little about whom it resembles. The
    largest possible value, for a one-hot row, is about 0.56.
    """
    return js_distance_rows(np.asarray(p, dtype=float).reshape(-1, 3), np.full(3, 1.0 / 3.0))

"""95% intervals for the report's rows, and which rows differ beyond them.

A row backed by several trainings that differ only by ``--seed`` gets a t-interval over
the seeds (mean +- t(0.975, n-1) * sd / sqrt(n), cut to the metric's range): the spread a
rerun with another seed would show, which is the noise a claim about a method must clear. A row backed by one set
of answers (one training, the base model, role-play) gets a percentile bootstrap over the
test questions instead (questions drawn with replacement, every metric recomputed, with a
fixed bootstrap seed so the report is the same on every run): the noise of the question
sample, not of training, so it is narrower than a seed interval and says so (``kind``).

Two rows differ "beyond their intervals" when the intervals do not overlap: a
conservative test (non-overlapping 95% intervals mean p well under 0.05), chosen because
the two kinds of interval cannot be pooled into one test statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from fairpp_app.core import metrics
from fairpp_app.core.questions import LETTERS

LEVEL = 0.95
BOOTSTRAP_SEED = 0
BOOTSTRAP_SAMPLES = 1000
#: The row fields that get an interval, and the range each can take: a t-interval over
#: three seeds is wide and symmetric, and is cut to the range rather than reach past it
#: (a similarity of 1.04 is no possible value).
METRICS = ("target_similarity", "margin", "agreement")
RANGES = {"target_similarity": (0.0, 1.0), "margin": (-1.0, 1.0), "agreement": (0.0, 1.0)}


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The two-sided t-interval of the mean of ``values`` (at least two)."""
    from scipy.stats import t

    xs = np.asarray(values, dtype=float)
    mean = float(xs.mean())
    half = float(t.ppf(0.5 + LEVEL / 2, len(xs) - 1) * xs.std(ddof=1) / math.sqrt(len(xs)))
    return mean - half, mean + half


def seed_interval(per_seed: Sequence[Mapping]) -> dict:
    """Intervals over the seeds' results (each a row-like mapping holding ``METRICS``)."""
    out: dict = {"kind": "t", "level": LEVEL, "n": len(per_seed)}
    for key in METRICS:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        if len(values) < 2:
            out[key] = None
            continue
        low, high = t_interval(values)
        floor, ceiling = RANGES[key]
        out[key] = [max(low, floor), min(high, ceiling)]
    return out


def _one_hot(letters: Sequence[str | None]) -> np.ndarray:
    out = np.zeros((len(letters), 3))
    for i, a in enumerate(letters):
        if a is not None:
            out[i, LETTERS.index(a)] = 1.0
    return out


def bootstrap_interval(mine: Mapping[str, str | None], answers: Mapping[str, Mapping[str, str | None]],
                       slugs: Sequence[str], target: str, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Percentile intervals of the target similarity, margin and agreement of ``mine`` against
    the personas' ``answers``, over questions drawn with replacement."""
    qids = [q for q in mine if q in answers]
    n = len(qids)
    out: dict = {"kind": "bootstrap", "level": LEVEL, "n": samples}
    if n == 0:
        return {**out, **dict.fromkeys(METRICS)}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)  # (S, n) counts
    my_letters = [mine[q] for q in qids]
    mine_hot = _one_hot(my_letters)
    sims: dict[str, np.ndarray] = {}
    agree = None
    for slug in slugs:
        theirs = [answers[q].get(slug) for q in qids]
        both = np.array([a is not None and b is not None for a, b in zip(my_letters, theirs)], float)
        if not both.any():
            continue
        weights = draws * both                                              # (S, n)
        my_counts, their_counts = weights @ mine_hot, weights @ _one_hot(theirs)
        sims[slug] = np.array([np.nan if s is None else s for s in
                               (metrics.js_similarity(a, b) for a, b in zip(my_counts, their_counts))])
        if slug == target:
            same = np.array([a == b for a, b in zip(my_letters, theirs)], float) * both
            with np.errstate(invalid="ignore", divide="ignore"):
                agree = (draws @ same) / weights.sum(axis=1)
    target_sims = sims.get(target)
    others = [v for k, v in sims.items() if k != target]
    margin = target_sims - np.mean(others, axis=0) if target_sims is not None and others else None
    for key, values in (("target_similarity", target_sims), ("margin", margin), ("agreement", agree)):
        finite = None if values is None else values[np.isfinite(values)]
        out[key] = (None if finite is None or not len(finite) else
                    [float(np.percentile(finite, 50 * (1 - LEVEL))),
                     float(np.percentile(finite, 100 - 50 * (1 - LEVEL)))])
    return out


def compare(row: Mapping, reference: Mapping | None) -> dict | None:
    """Per metric, +1 / -1 when ``row``'s interval lies wholly above / below ``reference``'s,
    0 when they overlap, None when either lacks one; None for no reference (or itself)."""
    if reference is None or reference is row:
        return None
    mine, theirs = row.get("interval") or {}, reference.get("interval") or {}
    out = {}
    for key in METRICS:
        a, b = mine.get(key), theirs.get(key)
        if a is None or b is None:
            out[key] = None
        else:
            out[key] = 1 if a[0] > b[1] else -1 if a[1] < b[0] else 0
    return out

"""95% intervals for the report's rows, and which rows differ beyond them.

A row backed by several trainings that differ only by ``--seed`` gets a t-interval over
the seeds (mean +- t(0.975, n-1) * sd / sqrt(n), cut to the metric's range): the spread a
rerun with another seed would show, which is the noise a claim about a method must clear.
That alone misses the noise of the question sample: three seeds that give the same answers
have an interval of zero width, as if 200 questions measured a method exactly. So the row's
interval is the hull of the t-interval and a bootstrap of the seeds' mean over the questions
(``seed_interval``; both parts are kept under ``parts``).

A row backed by one set of answers (one training, the base model, role-play) gets the
percentile bootstrap over the test questions alone (questions drawn with replacement, every
metric recomputed, with a fixed bootstrap seed so the report is the same on every run).

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


def seed_interval(per_seed: Sequence[Mapping], bootstrap: Mapping | None = None) -> dict:
    """Intervals over the seeds' results (each a row-like mapping holding ``METRICS``),
    widened to cover ``bootstrap`` (the seeds' mean over resampled questions) where given."""
    out: dict = {"kind": "t", "level": LEVEL, "n": len(per_seed)}
    seeds: dict = {}
    for key in METRICS:
        values = [r[key] for r in per_seed if r.get(key) is not None]
        if len(values) < 2:
            seeds[key] = None
            continue
        low, high = t_interval(values)
        floor, ceiling = RANGES[key]
        seeds[key] = [max(low, floor), min(high, ceiling)]
    for key in METRICS:
        parts = [b for b in (seeds[key], (bootstrap or {}).get(key)) if b is not None]
        out[key] = ([min(b[0] for b in parts), max(b[1] for b in parts)]
                    if seeds[key] is not None else None)
    if bootstrap is not None:
        out["parts"] = {"t": seeds, "bootstrap": {k: bootstrap.get(k) for k in METRICS}}
    return out


def _one_hot(letters: Sequence[str | None]) -> np.ndarray:
    out = np.zeros((len(letters), 3))
    for i, a in enumerate(letters):
        if a is not None:
            out[i, LETTERS.index(a)] = 1.0
    return out


def bootstrap_interval(mine: Mapping[str, str | None] | Sequence[Mapping[str, str | None]],
                       answers: Mapping[str, Mapping[str, str | None]],
                       slugs: Sequence[str], target: str, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Percentile intervals of the target similarity, margin and agreement of ``mine`` against
    the personas' ``answers``, over questions drawn with replacement.

    ``mine`` may be several answer sets (one per seed): each resample draws the same
    questions for all of them and takes the mean of their metrics, as the row shows."""
    sets = [mine] if isinstance(mine, Mapping) else list(mine)
    qids = [q for q in sets[0] if q in answers and all(q in other for other in sets[1:])]
    n = len(qids)
    out: dict = {"kind": "bootstrap", "level": LEVEL, "n": samples}
    if n == 0:
        return {**out, **dict.fromkeys(METRICS)}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)  # (S, n) counts
    per_set = [_resampled(draws, [one[q] for q in qids], qids, answers, slugs, target)
               for one in sets]
    for key in METRICS:
        arrays = [values[key] for values in per_set]
        if any(a is None for a in arrays):
            out[key] = None
            continue
        with np.errstate(invalid="ignore"):
            mean = np.mean(arrays, axis=0)
        finite = mean[np.isfinite(mean)]
        out[key] = (None if not len(finite) else
                    [float(np.percentile(finite, 50 * (1 - LEVEL))),
                     float(np.percentile(finite, 100 - 50 * (1 - LEVEL)))])
    return out


def _resampled(draws: np.ndarray, my_letters: Sequence[str | None], qids: Sequence[str],
               answers: Mapping[str, Mapping[str, str | None]], slugs: Sequence[str],
               target: str) -> dict[str, np.ndarray | None]:
    """One answer set's metrics in every resample (``draws``: per resample, how often each
    question is drawn)."""
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
    return {"target_similarity": target_sims, "margin": margin, "agreement": agree}


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

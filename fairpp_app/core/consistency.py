"""Whether a respondent keeps its answer when nothing but the presentation changes.

Answer shares can look right for the wrong reason: a model that picks options at random
when their order is swapped has shares close to uniform, and uniform shares are close to
many personas (Dominguez-Olmedo et al., NeurIPS 2024). Two checks need no human data:

- option order: a ``--debias permute`` record keeps the probabilities of both orders
  (the swapped one mapped back onto the original options); the answer is kept when the
  same option wins in both;
- framing: every (problem, group, dimension) is asked in framing 1 ("which criterion")
  and framing 2 ("which explanation"), with option A the dimension's first pole and B its
  second in both, so the same letter means the same pole;
- wording: an official question and its fairpp twin (``twin_id``) are one question in two
  texts, with the same poles as options A and B, so again the same letter is the same pole.

Inputs are arrays, outputs plain dicts; questions without the data a check needs are left
out of it and counted, never scored as consistent or not.
"""

from __future__ import annotations

import numpy as np


def order_consistency(fwd: np.ndarray, swap: np.ndarray) -> dict | None:
    """Share of questions whose winning option is the same in both option orders.

    ``fwd`` and ``swap`` are (n, 3) probabilities over the original A/B/C; ties go to the
    first letter, as ``OptionScores.answer`` decides. ``flips`` is the share where one
    order chose A and the other B: the pole itself changed with the order. None when there
    is no question with both orders.
    """
    fwd = np.asarray(fwd, dtype=float).reshape(-1, 3)
    swap = np.asarray(swap, dtype=float).reshape(-1, 3)
    if len(fwd) != len(swap):
        raise ValueError("both orders must cover the same questions")
    if len(fwd) == 0:
        return None
    a, b = np.argmax(fwd, axis=1), np.argmax(swap, axis=1)
    return {"share": float(np.mean(a == b)), "flips": float(np.mean(_opposite(a, b))),
            "questions": int(len(a))}


def pair_consistency(first: np.ndarray, second: np.ndarray) -> dict | None:
    """Share of question pairs answered with the same letter in both of their versions.

    The versions are framing 1 and framing 2 of one (problem, group, dimension), or a
    fairpp question and its official wording.
    ``first`` and ``second`` are answer codes of the pairs (0-2 for A-C, negative for no
    parsed answer); a pair counts when both are parsed. ``flips`` is the share of pairs
    that chose opposite poles (A in one version, B in the other). None without a pair.
    """
    first = np.asarray(first, dtype=np.int64).ravel()
    second = np.asarray(second, dtype=np.int64).ravel()
    if len(first) != len(second):
        raise ValueError("both versions must cover the same pairs")
    both = (first >= 0) & (second >= 0)
    if not both.any():
        return None
    a, b = first[both], second[both]
    return {"share": float(np.mean(a == b)), "flips": float(np.mean(_opposite(a, b))),
            "pairs": int(both.sum())}


def _opposite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A against B (codes 0 and 1), either way round."""
    return ((a == 0) & (b == 1)) | ((a == 1) & (b == 0))

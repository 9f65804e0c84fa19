"""The weighted SFT and DPO losses of paper section 7, and the soft-target SFT, for torch and
MLX arrays alike.

Both are weighted means over one micro-batch, normalised by the sum of its weights:

    WSFT = sum_j w_j * NLL(y_j | x_j) / sum_j w_j
    WDPO = sum_j w_j * -log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))) / sum_j w_j

with w = 1 giving SFT and DPO. The soft methods (DSFT, WDSFT) replace the preferred
letter's NLL by the cross-entropy to the target's A/B/C distribution q:

    WDSFT = sum_j w_j * -(sum_k q_jk * log pi(letter_k | x_j)) / sum_j w_j

which is the forward KL(q || pi) plus q's entropy (a constant), so it has the same
gradient as the KL SubPOP-style work minimises. The log-probs are the model's over its whole
vocabulary, so the loss also pulls the mass onto the three letters; a one-hot q is
exactly SFT. A question of weight 0 multiplies its term by 0, so it adds
nothing to the loss or to the gradient. A micro-batch whose weights are all 0 has loss 0
(its denominator is taken as 1) rather than 0/0.

Only arithmetic, ``.sum()`` and a ``softplus`` passed in are used (-log sigmoid(x) is
softplus(-x)), so the MLX trainer runs the same lines on ``mx.array``. Inputs are
log-probabilities laid out per question: ``logps[:, 0]`` the preferred letter and
``logps[:, 1:]`` the rejected ones, so one prompt serves both of its pairs.

``sft``, ``dsft`` and ``dpo`` are the losses the method registry names: all take the same
arguments (``soft``, the (B, 3) target distribution in the letter columns, is read by
``dsft`` alone), so a trainer calls a method's loss without knowing which one it is (the
reference is ``None`` for a method that is not a preference method).

Two keywords cover the recipes and the weighting estimators. ``pairs=3`` adds the paper's
third pair, column 1 over column 2 (the data put the two other letters in a random order
there). Every pair carries its question's weight and each question has the same number
of pairs, so the mean over a question's pairs, weighted per question, is the paper's
weighted mean over pairs. ``by_batch=False`` divides by the number of questions instead
of the weight sum: with weights rescaled to mean 1 over the whole set (``--weighting
dataset``) that estimates the set's weighted mean without letting one heavy question own
a micro-batch, and with weights 1 (``--weighting sample``) it is the plain mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any


def normaliser(weights: Array, by_batch: bool = True) -> Array | int:
    """What a micro-batch's weighted sum is divided by: its weight sum, or its row count.

    (Its own function because training across processes divides by the sum of every
    process's normaliser instead: ``collectives.shared_loss``.)"""
    return weights.sum() if by_batch else weights.shape[0]


def weighted_mean(values: Array, weights: Array, by_batch: bool = True) -> Array:
    total = normaliser(weights, by_batch)
    return (values * weights).sum() / (total + (total == 0))


def sft_terms(logps: Array) -> Array:
    """Per-question NLL of the preferred completion, shape (B,)."""
    return -logps[:, 0]


def dpo_logits(policy: Array, reference: Array, beta: float) -> Array:
    """beta * ((pi_w - ref_w) - (pi_l - ref_l)) per pair, shape (B, n_rejected)."""
    chosen = policy[:, :1] - reference[:, :1]
    rejected = policy[:, 1:] - reference[:, 1:]
    return beta * (chosen - rejected)


def third_pair_logits(policy: Array, reference: Array, beta: float) -> Array:
    """The paper's third pair, column 1 over column 2, shape (B, 1)."""
    ratio = policy[:, 1:] - reference[:, 1:]
    return beta * (ratio[:, :1] - ratio[:, 1:])


def pair_logits(policy: Array, reference: Array, beta: float, pairs: int = 2) -> list[Array]:
    """Every pair's logits (= its implicit reward margin), as (B, 2) and, with 3 pairs, (B, 1)."""
    parts = [dpo_logits(policy, reference, beta)]
    if pairs == 3:
        parts.append(third_pair_logits(policy, reference, beta))
    return parts


def wsft_loss(logps: Array, weights: Array, by_batch: bool = True) -> Array:
    return weighted_mean(sft_terms(logps), weights, by_batch)


def wdpo_loss(policy: Array, reference: Array, weights: Array, beta: float,
              softplus: Callable[[Array], Array], pairs: int = 2, by_batch: bool = True) -> Array:
    """Weighted DPO over every pair of the micro-batch; each pair carries its question's weight."""
    if pairs == 2 and by_batch:
        logits = dpo_logits(policy, reference, beta)
        pair_weights = weights[:, None] + 0 * logits
        return weighted_mean(softplus(-logits), pair_weights)
    per_question = sum(softplus(-part).sum(axis=1) for part in pair_logits(policy, reference,
                                                                          beta, pairs)) / pairs
    return weighted_mean(per_question, weights, by_batch)


def soft_terms(logps: Array, soft: Array) -> Array:
    """Per-question cross-entropy to the target distribution ``soft`` (B, 3), shape (B,)."""
    return -(soft * logps).sum(axis=-1)


def sft(policy: Array, reference: Array | None, weights: Array, beta: float,
        softplus: Callable[[Array], Array], pairs: int = 2, by_batch: bool = True,
        soft: Array | None = None) -> Array:
    """SFT and WSFT: the weighted NLL of the preferred completion (no reference, no beta)."""
    return wsft_loss(policy, weights, by_batch)


def dsft(policy: Array, reference: Array | None, weights: Array, beta: float,
         softplus: Callable[[Array], Array], pairs: int = 2, by_batch: bool = True,
         soft: Array | None = None) -> Array:
    """DSFT and WDSFT: the weighted cross-entropy to the target's A/B/C distribution."""
    if soft is None:
        raise ValueError("dsft needs the target distribution (soft=)")
    return weighted_mean(soft_terms(policy, soft), weights, by_batch)


def dpo(policy: Array, reference: Array | None, weights: Array, beta: float,
        softplus: Callable[[Array], Array], pairs: int = 2, by_batch: bool = True,
        soft: Array | None = None) -> Array:
    """DPO and WDPO over every pair of the micro-batch."""
    return wdpo_loss(policy, reference, weights, beta, softplus, pairs, by_batch)

"""The method registry is the one place that knows the methods.

The configuration offers and validates exactly its names, the data and the report follow
its flags and labels, and every entry's loss takes the common arguments and computes the
paper's loss, so adding a method is one entry plus its loss.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from fairpp_app.core.errors import UsageError
from fairpp_app.training import losses
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.methods import METHODS, NAMES, method, report_order


def test_the_config_offers_and_validates_the_registrys_names():
    choices = next(f for f in fields(TrainingConfig) if f.name == "method").metadata["choices"]
    assert tuple(choices) == NAMES == ("wdpo", "dpo", "wsft", "sft", "wdsft", "dsft")
    assert TrainingConfig().method == "wdpo"
    with pytest.raises(UsageError, match="--method must be one of wdpo, dpo, wsft, sft, wdsft, "
                                         "dsft, not 'ppo'"):
        TrainingConfig(method="ppo")
    with pytest.raises(UsageError, match="not 'ppo'"):
        method("ppo")


def test_flags_labels_and_report_order():
    assert [m.label for m in report_order()] == ["SFT", "WSFT", "DPO", "WDPO", "DSFT", "WDSFT"]
    assert {m.name for m in METHODS.values() if m.weighted} == {"wsft", "wdpo", "wdsft"}
    assert {m.name for m in METHODS.values() if m.preference} == {"dpo", "wdpo"}
    assert {m.name for m in METHODS.values() if m.soft} == {"dsft", "wdsft"}
    assert {m.name for m in METHODS.values() if not m.paper} == {"dsft", "wdsft"}
    assert [m.pairs_per_example for m in report_order()] == [1, 1, 2, 2, 1, 1]
    assert len({m.row for m in METHODS.values()}) == len(METHODS)


def test_every_loss_takes_the_common_arguments():
    rng = np.random.default_rng(0)
    policy = np.log(rng.dirichlet([1, 1, 1], size=5))
    reference = np.log(rng.dirichlet([1, 1, 1], size=5))
    weights = np.array([0.5, 0.0, 1.0, 2.0, 0.1])

    def softplus(x):
        return np.logaddexp(0.0, x)

    soft = rng.dirichlet([1, 1, 1], size=5)
    for m in METHODS.values():
        value = m.loss(policy, reference if m.preference else None, weights, 0.1, softplus,
                       soft=soft)
        expected = (losses.wdpo_loss(policy, reference, weights, 0.1, softplus) if m.preference
                    else -(weights * (soft * policy).sum(axis=1)).sum() / weights.sum() if m.soft
                    else losses.wsft_loss(policy, weights))
        assert math.isfinite(value) and value == pytest.approx(expected)


def test_dsft_with_a_one_hot_target_is_sft():
    """The cross-entropy to the target's letter alone is the preferred letter's NLL."""
    rng = np.random.default_rng(1)
    policy = np.log(rng.dirichlet([1, 1, 1], size=4) * 0.9)  # mass outside the letters too
    weights = np.array([1.0, 2.0, 0.5, 0.0])
    one_hot = np.tile([1.0, 0.0, 0.0], (4, 1))  # column 0 is the preferred letter
    assert losses.dsft(policy, None, weights, 0.1, None, soft=one_hot) == pytest.approx(
        losses.sft(policy, None, weights, 0.1, None))
    with pytest.raises(ValueError, match="target distribution"):
        losses.dsft(policy, None, weights, 0.1, None)

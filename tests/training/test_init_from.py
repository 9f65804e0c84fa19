"""``--init-from``: a training that starts from another one's model, as the paper starts DPO
from its SFT checkpoint and WDPO from the WSFT one.

With LoRA that model is the base with the first adapter merged in; a fresh adapter trains
on top, and switching it off gives that merged model, the DPO reference. The checks: a
second training at a negligible learning rate answers as the first one did (so training
and evaluation both rebuilt the merged model) and not as the base does; the chain is in
the adapter's metadata; a bad start is refused before any work.
"""

from __future__ import annotations

import numpy as np
import pytest

from fairpp_app.core.errors import NotFoundError, UsageError
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.training_data import N_TEST, PERSONA_RUN


def _config(tiny_dir, method: str, name: str, **kw) -> TrainingConfig:
    options = dict(method=method, from_run=PERSONA_RUN, base=str(tiny_dir), name=name,
                   batch_size=4, grad_accum=2, max_steps=3, eval_every=0, save_every=50, lr=5e-2)
    options.update(kw)
    return TrainingConfig(**options)


def _probs(store, run: str) -> np.ndarray:
    frame = store.record_frame(store.get_run(run)["id"]).sort_values("question_id")
    return frame[["p_a", "p_b", "p_c"]].to_numpy()


def test_a_training_started_from_another_sits_on_its_model(persona_store, personas, tiny_dir):
    from fairpp_app.training.evaluate import evaluate_adapter, evaluate_base

    store = persona_store
    first = run_training(store, personas, _config(tiny_dir, "sft", "first"))
    second = run_training(store, personas, _config(tiny_dir, "dpo", "second", init_from="first",
                                                   max_steps=1, lr=1e-12))
    assert first.status == second.status == "finished"
    meta = read_metadata(second.adapter_path)
    assert meta["init_from"] == "first" and meta["init_chain"] == [first.adapter_path]
    # A DPO step from the merged model: policy == reference, so the first loss is ln 2.
    row = store.get_training("second")
    step = next(e["payload"] for e in store.events(training_id=row["id"]) if e["kind"] == "train_step")
    assert step["loss"] == pytest.approx(np.log(2), abs=1e-6)

    for name in ("first", "second"):
        evaluate_adapter(store, personas, name, limit=N_TEST, device="cpu")
    evaluate_base(store, personas, str(tiny_dir), limit=N_TEST, device="cpu")
    first_p, second_p = _probs(store, "eval-first"), _probs(store, "eval-second")
    base_p = _probs(store, "eval-base-tiny-llama")
    assert np.abs(first_p - base_p).max() > 1e-3  # the first training moved the model
    np.testing.assert_allclose(second_p, first_p, atol=1e-4)


def test_a_bad_start_is_refused_before_any_work(persona_store, personas, tiny_dir, tmp_path):
    store = persona_store
    with pytest.raises(NotFoundError, match="no training named 'nowhere'"):
        run_training(store, personas, _config(tiny_dir, "dpo", "x", init_from="nowhere"))
    store.create_training("half", "sft", "disengaged-traditionalists", str(tiny_dir), PERSONA_RUN,
                          {"config": {}}, status="interrupted")
    with pytest.raises(UsageError, match="has not finished"):
        run_training(store, personas, _config(tiny_dir, "dpo", "y", init_from="half"))
    run_training(store, personas, _config(tiny_dir, "sft", "done", max_steps=1))
    other = tmp_path / "other-model"
    other.mkdir()
    with pytest.raises(UsageError, match="was trained on"):
        run_training(store, personas, _config(tiny_dir, "dpo", "z", init_from="done",
                                              base=str(other)))
    assert store.find_training("x") is None and store.find_training("z") is None

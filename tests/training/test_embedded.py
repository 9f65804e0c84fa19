"""A few WDPO steps on the embedded Gemma 3 270M (converted once into the session's data dir).

Slow on two cores (the conversion alone is about a minute): it checks what the tiny model
cannot, that the real architecture (sliding-window attention, a 262k vocabulary, tied
embeddings, no chat template in the GGUF) trains through the fast path and the live
evaluation, and that the fast path agrees with the generic one on it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.training_data import PERSONA_RUN

pytestmark = [pytest.mark.slow, pytest.mark.model]


@pytest.fixture
def embedded(embedded_home, monkeypatch, persona_store, one_thread):
    monkeypatch.setenv("FAIRPP_HOME", str(embedded_home))
    torch.set_num_threads(one_thread)  # a real model does use the cores
    return persona_store


def test_a_few_wdpo_steps_on_the_embedded_model(embedded, personas):
    store = embedded
    name = f"embedded-wdpo-{id(store)}"
    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, name=name, limit=8,
                            batch_size=2, grad_accum=1, max_steps=3, eval_every=3, eval_limit=4,
                            save_every=3, device="cpu")
    outcome = run_training(store, personas, config)
    assert outcome.status == "finished" and outcome.step == 3
    row = store.get_training(name)
    events = store.events(training_id=row["id"])
    losses = [e["payload"]["loss"] for e in events if e["kind"] == "train_step"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    evals = [e["payload"] for e in events if e["kind"] == "train_eval"]
    assert [e["step"] for e in evals] == [0, 3] and len(evals[-1]["similarity"]) == 7
    meta = read_metadata(outcome.adapter_path)
    assert meta["base_model"] == "gemma-3-270m" and meta["completion"]["chat_template"] is False


def test_fast_path_matches_generic_on_the_embedded_model(embedded, personas, tmp_path):
    from fairpp_app.core.personas import resolve
    from fairpp_app.training.data import build_training_set
    from fairpp_app.training.torch_trainer import (
        LastTokenCollator,
        PairSequenceCollator,
        build_trainer,
        last_token_logprobs,
        pair_sequence_logprobs,
        prepare_model,
    )

    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, name="eq", batch_size=2)
    target = resolve("6", personas)
    data = build_training_set(embedded, PERSONA_RUN, target, personas, "wdpo", limit=3,
                              save_weights=False)
    session = SimpleNamespace(config=config, name="eq", data=lambda: data)
    model, tokenizer, _ = prepare_model(config, "cpu", None)
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=tmp_path)
    features = [trainer.train_dataset[i] for i in range(2)]
    pad = trainer.scorer.pad_id
    with torch.no_grad():
        fast = last_token_logprobs(model, LastTokenCollator(pad)(features))
        generic = pair_sequence_logprobs(model, PairSequenceCollator(pad)(features))
    assert torch.allclose(fast, generic, atol=1e-4)


def test_paper_recipe_fast_path_matches_whole_sequences_on_the_embedded_model(embedded, personas,
                                                                            tmp_path):
    """Letter + EOS through Gemma's hybrid (sliding-window) cache, repeated per letter, with
    left padding: the same log-probs as the whole prompt+letter+EOS sequences."""
    from fairpp_app.core.personas import resolve
    from fairpp_app.training.data import build_training_set
    from fairpp_app.training.torch_trainer import (
        LastTokenCollator,
        PairSequenceCollator,
        build_trainer,
        letter_eos_logprobs,
        pair_sequence_logprobs,
        prepare_model,
    )

    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, name="eq-paper", batch_size=3,
                            recipe="paper")
    data = build_training_set(embedded, PERSONA_RUN, resolve("6", personas), personas, "wdpo",
                              limit=3, save_weights=False, pairs=3)
    session = SimpleNamespace(config=config, name="eq-paper", data=lambda: data)
    model, tokenizer, _ = prepare_model(config, "cpu", None)
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=tmp_path)
    features = [trainer.train_dataset[i] for i in range(3)]
    assert len({len(f["prompt_ids"]) for f in features}) > 1  # left padding is exercised
    pad, eos, scorer = trainer.scorer.pad_id, trainer.eos_id, trainer.scorer
    with torch.no_grad():
        fast = letter_eos_logprobs(model, LastTokenCollator(pad)(features), eos, scorer.cache_arg)
        generic = pair_sequence_logprobs(model, PairSequenceCollator(pad, eos)(features))
    assert torch.allclose(fast, generic, atol=1e-4)

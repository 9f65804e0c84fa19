"""The MLX trainer on the tiny random Llama (and, slow, the embedded Gemma 3 270M).

What holds for the MLX trainer only (what it shares with the torch one, the row, events,
metadata, ln 2 as WDPO's first loss, divergence and resuming, is in
test_trainer_contract, with a question of weight 0 moving nothing): the loss arithmetic
on ``mx.array`` equals torch's; the reference is the base model; the letters trained on are
the backend's last-position log-probs (Gemma's softcap and sliding window included); the
finished adapter loads in mlx-lm and in peft with the same scores, on the projections the
torch trainer targets; ``--init-from`` fuses a first MLX training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlx_lm")

import mlx.core as mx
from mlx.utils import tree_map

from fairpp_app.core.personas import resolve
from fairpp_app.training import losses
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.mlx_trainer import (
    MLXTrainer,
    add_lora,
    last_logprobs,
    letter_logprobs,
    load_backend,
    softplus,
)
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.training_data import PERSONA_RUN, TARGET_SLUG


def _config(tiny_dir, method: str, **kw) -> TrainingConfig:
    options = dict(method=method, from_run=PERSONA_RUN, base=str(tiny_dir), name=f"mlx-{method}",
                   device="mlx", batch_size=4, grad_accum=2, max_steps=2, eval_every=0,
                   save_every=50, lr=5e-3)
    options.update(kw)
    return TrainingConfig(**options)


def _steps(store, name: str) -> list[dict]:
    row = store.get_training(name)
    return [e["payload"] for e in store.events(training_id=row["id"]) if e["kind"] == "train_step"]


def _moved(model, seed: int = 1) -> None:
    """LoRA B starts at zero (policy == reference); give it values so they differ."""
    key = mx.random.key(seed)
    model.update(tree_map(lambda p: mx.random.normal(p.shape, key=key) * 0.5,
                          model.trainable_parameters()))


@pytest.fixture
def trainer_for(persona_store, personas, tiny_dir):
    def make(method: str, moved: bool = True) -> MLXTrainer:
        config = _config(tiny_dir, method, batch_size=4, grad_accum=1)
        data = build_training_set(persona_store, PERSONA_RUN, resolve(TARGET_SLUG, personas),
                                  personas, method, save_weights=False)
        backend = load_backend(str(tiny_dir))
        add_lora(backend.model, config)
        if moved:
            _moved(backend.model)
        return MLXTrainer(backend, data.examples, config)
    return make


# ---- the arithmetic --------------------------------------------------------------------------

def test_mlx_losses_match_torch_on_fixed_inputs():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    policy = np.log(rng.dirichlet([1, 1, 1], size=6)).astype(np.float32)
    reference = np.log(rng.dirichlet([1, 1, 1], size=6)).astype(np.float32)
    weights = np.array([0.3, 0.0, 1.2, 0.05, 2.0, 0.7], dtype=np.float32)
    for beta in (0.1, 1.0):
        ours = losses.wdpo_loss(mx.array(policy), mx.array(reference), mx.array(weights), beta,
                                softplus).item()
        theirs = losses.wdpo_loss(torch.tensor(policy), torch.tensor(reference),
                                  torch.tensor(weights), beta, F.softplus).item()
        assert ours == pytest.approx(theirs, abs=1e-5)
    assert losses.wsft_loss(mx.array(policy), mx.array(weights)).item() == pytest.approx(
        losses.wsft_loss(torch.tensor(policy), torch.tensor(weights)).item(), abs=1e-5)
    same = losses.wdpo_loss(mx.array(policy), mx.array(policy), mx.array(weights), 0.1, softplus)
    assert same.item() == pytest.approx(math.log(2), abs=1e-6)


def test_reference_is_the_base_model_and_batches_change_nothing(trainer_for, tiny_dir):
    trainer = trainer_for("wdpo")
    rows = list(range(6))
    ref = trainer.reference(rows)
    base = load_backend(str(tiny_dir))
    plain = letter_logprobs(base.model, trainer.prompts(rows), trainer.letters(rows))
    assert mx.allclose(ref, plain, atol=1e-5).item()
    moved = trainer.policy(rows)
    assert not mx.allclose(moved, ref, atol=1e-3).item()  # the adapter really moved
    one_by_one = mx.concatenate([trainer.policy([i]) for i in rows])
    assert mx.allclose(moved, one_by_one, atol=1e-5).item()


def test_trained_letters_are_the_backends_last_position(tmp_path):
    """Gemma 3 layout: a sliding window shorter than the prompts and a final-logit softcap."""
    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.core.questions import build_bank
    from tests.support.tiny_models import build_tiny_model

    folder = build_tiny_model(tmp_path / "g", arch="gemma3", sliding_window=8, softcap=2.0)
    backend = load_backend(str(folder))
    assert backend.logit_softcap == 2.0
    for q in build_bank()[:2]:
        tokens = backend.prompt_ids(build_prompt(q, None))
        ours = last_logprobs(backend.model, mx.array([tokens]), backend.logit_softcap)[0]
        backend.forget_cache()
        logits = backend.last_logits(tokens)
        assert mx.allclose(ours, logits - mx.logsumexp(logits), atol=1e-5).item()


def test_the_adapter_loads_in_mlx_lm_and_in_peft(persona_store, personas, tiny_dir):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from mlx_lm.tuner.utils import load_adapters

    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.training.evaluate import load_adapter
    from fairpp_app.training.torch_trainer import load_base, lora_targets

    outcome = run_training(persona_store, personas, _config(tiny_dir, "dpo", lr=5e-2))
    meta = read_metadata(outcome.adapter_path)
    assert meta["peft_adapter"] is True
    # LoRA sits on the very projections the torch trainer would put it on.
    peft_config = json.loads((Path(outcome.adapter_path) / "adapter_config.json").read_text())
    assert peft_config["target_modules"] == lora_targets(load_base(str(tiny_dir), "cpu")[0])
    prompts = [build_prompt(q, None) for q in persona_store.questions("test", limit=4)]
    trained = load_backend(str(tiny_dir))
    load_adapters(trained.model, f"{outcome.adapter_path}/mlx")
    plain = load_backend(str(tiny_dir)).score_options(prompts)
    ours = trained.score_options(prompts)
    assert any(abs(a.probs[0] - b.probs[0]) > 1e-3 for a, b in zip(ours, plain))  # it trained
    scorer = load_adapter(persona_store, "mlx-dpo", device="cpu")
    with torch.no_grad():
        theirs = scorer.score_options(prompts)
    for a, b in zip(ours, theirs):
        assert a.probs == pytest.approx(b.probs, abs=1e-4)


def test_init_from_fuses_the_first_mlx_training_into_the_model(persona_store, personas, tiny_dir):
    from mlx_lm.tuner.utils import load_adapters

    from fairpp_app.core.errors import UsageError
    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.training.mlx_trainer import merge_adapters

    first = run_training(persona_store, personas, _config(tiny_dir, "sft", name="mlx-first",
                                                          max_steps=3, lr=5e-2))
    second = run_training(persona_store, personas, _config(tiny_dir, "dpo", name="mlx-second",
                                                           init_from="mlx-first", max_steps=1))
    meta = read_metadata(second.adapter_path)
    assert meta["init_chain"] == [first.adapter_path]
    assert _steps(persona_store, "mlx-second")[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    prompts = [build_prompt(q, None) for q in persona_store.questions("test", limit=4)]
    unfused = load_backend(str(tiny_dir))
    load_adapters(unfused.model, f"{first.adapter_path}/mlx")
    fused = load_backend(str(tiny_dir))
    merge_adapters(fused.model, [first.adapter_path])
    plain = load_backend(str(tiny_dir)).score_options(prompts)
    for a, b in zip(fused.score_options(prompts), unfused.score_options(prompts)):
        assert a.probs == pytest.approx(b.probs, abs=1e-4)
    assert any(abs(a.probs[0] - c.probs[0]) > 1e-3
               for a, c in zip(fused.score_options(prompts), plain))
    # A torch training has no MLX adapter to fuse: a message, not a crash mid-way.
    run_training(persona_store, personas, _config(tiny_dir, "sft", name="torch-first",
                                                  device="cpu", max_steps=1))
    with pytest.raises(UsageError, match="holds no MLX adapter"):
        run_training(persona_store, personas, _config(tiny_dir, "dpo", name="mlx-third",
                                                      init_from="torch-first"))


# ---- the real model --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.model
def test_a_few_wdpo_steps_on_the_embedded_model(embedded_home, monkeypatch, persona_store,
                                                personas):
    monkeypatch.setenv("FAIRPP_HOME", str(embedded_home))
    name = f"mlx-embedded-{id(persona_store)}"
    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, name=name, limit=8, device="mlx",
                            batch_size=2, grad_accum=1, max_steps=3, eval_every=3, eval_limit=4,
                            save_every=3)
    outcome = run_training(persona_store, personas, config)
    assert outcome.status == "finished" and outcome.step == 3
    events = persona_store.events(training_id=persona_store.get_training(name)["id"])
    step_losses = [e["payload"]["loss"] for e in events if e["kind"] == "train_step"]
    assert len(step_losses) == 3 and all(math.isfinite(x) for x in step_losses)
    assert step_losses[0] == pytest.approx(math.log(2), abs=1e-4)
    evals = [e["payload"] for e in events if e["kind"] == "train_eval"]
    assert [e["step"] for e in evals] == [0, 3] and len(evals[-1]["similarity"]) == 7
    meta = read_metadata(outcome.adapter_path)
    assert meta["base_model"] == "gemma-3-270m" and meta["completion"]["chat_template"] is False
    assert meta["peft_adapter"] is True

"""The fast path against the generic one, weights that vary, and prompts as the backend sees them.

The fast path reads three letters from one last-position row per prompt; the generic path
scores TRL-layout prompt+completion sequences from the full logits. On a tiny model with
an adapter moved away from zero (so policy and reference differ) both must give the same
log-probs and the same weighted losses within 1e-4, through the trainer's own
``compute_loss``. (That a question of weight 0 adds nothing to the gradient is a promise
of every trainer: test_trainer_contract.)
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fairpp_app.core.personas import resolve
from fairpp_app.core.prompts import build_prompt
from fairpp_app.training import losses
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.scoring import ModelScorer
from fairpp_app.training.torch_trainer import (
    LastTokenCollator,
    PairSequenceCollator,
    build_trainer,
    last_token_logprobs,
    pair_sequence_logprobs,
    prepare_model,
)
from tests.support.training_data import PERSONA_RUN, TARGET_SLUG


def _moved_adapter(model, seed: int = 1) -> None:
    """LoRA B starts at zero (policy == reference); give it values so they differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


@pytest.fixture
def setup(persona_store, personas, tiny_dir, tmp_path):
    def make(method: str, generic: bool = False):
        config = TrainingConfig(method=method, from_run=PERSONA_RUN, base=str(tiny_dir),
                                name=f"t-{method}", batch_size=4, grad_accum=1,
                                generic_path=generic)
        target = resolve(TARGET_SLUG, personas)
        data = build_training_set(persona_store, PERSONA_RUN, target, personas, method,
                                  save_weights=False)
        session = SimpleNamespace(config=config, name=config.name, data=lambda: data)
        model, tokenizer, _ = prepare_model(config, "cpu", str(tiny_dir))
        _moved_adapter(model)
        trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=tmp_path / method)
        return trainer, data
    return make


def _batches(trainer, generic: bool, idx=range(6)):
    ds = trainer.train_dataset
    features = [ds[i] for i in idx]
    pad = trainer.scorer.pad_id
    collate = PairSequenceCollator(pad) if generic else LastTokenCollator(pad)
    return collate(features)


@pytest.mark.parametrize("method", ["wdpo", "wsft"])
def test_fast_and_generic_paths_give_the_same_loss(setup, method):
    trainer, _ = setup(method)
    model = trainer.model
    fast, generic = _batches(trainer, False), _batches(trainer, True)
    with torch.no_grad():
        lp_fast = last_token_logprobs(model, fast)
        lp_generic = pair_sequence_logprobs(model, generic)
        with model.disable_adapter():
            ref_fast = last_token_logprobs(model, fast)
            ref_generic = pair_sequence_logprobs(model, generic)
    assert lp_fast.shape == (6, 3)
    assert torch.allclose(lp_fast, lp_generic, atol=1e-4)
    assert torch.allclose(ref_fast, ref_generic, atol=1e-4)
    assert not torch.allclose(lp_fast, ref_fast, atol=1e-3)  # the adapter really moved

    # Through the trainer's own compute_loss, each path on its own batch layout.
    loss_fast = trainer.compute_loss(model, fast).item()
    trainer.generic = True
    trainer._reference_cache.clear()
    loss_generic = trainer.compute_loss(model, generic).item()
    assert loss_fast == pytest.approx(loss_generic, abs=1e-4)
    w = fast["weight"]
    if method == "wdpo":
        expected = losses.wdpo_loss(lp_fast, ref_fast, w, 0.1, F.softplus).item()
        # The formula spelled out: both pairs of a question carry its weight.
        delta = 0.1 * ((lp_fast[:, :1] - ref_fast[:, :1]) - (lp_fast[:, 1:] - ref_fast[:, 1:]))
        by_hand = ((-F.logsigmoid(delta)) * w[:, None]).sum() / (2 * w.sum())
        assert expected == pytest.approx(by_hand.item(), abs=1e-6)
    else:
        expected = ((-lp_fast[:, 0]) * w).sum().item() / w.sum().item()
    assert loss_fast == pytest.approx(expected, abs=1e-5)


def test_weights_really_vary(setup):
    _, data = setup("wdpo")
    weights = {round(e.weight, 9) for e in data.examples}
    assert len(weights) >= 5
    assert len(data.skipped) == 1
    _, plain = setup("dpo")
    assert {e.weight for e in plain.examples} == {1.0}


def test_losses_are_plain_arithmetic():
    """All weights zero: loss 0, not 0/0 (the MLX trainer runs the same functions)."""
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
    assert losses.wsft_loss(lp, torch.zeros(2)).item() == 0.0
    assert losses.wdpo_loss(lp, lp, torch.zeros(2), 0.1, F.softplus).item() == 0.0
    # policy == reference: every pair at log(2), whatever the weights
    assert losses.wdpo_loss(lp, lp, torch.tensor([0.3, 2.0]), 0.1, F.softplus).item() == \
        pytest.approx(0.693147, abs=1e-6)


def test_prompts_and_scores_match_the_transformers_backend(tiny_dir, store):
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.hf_models import load_causal_lm, load_tokenizer
    from fairpp_app.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(BackendOptions(model=str(tiny_dir), device="cpu"))
    scorer = ModelScorer(load_causal_lm(tiny_dir), load_tokenizer(tiny_dir), "cpu", name="x")
    prompts = [build_prompt(q, None) for q in store.questions("test", limit=5)]
    assert [scorer.prompt_ids(p) for p in prompts] == [backend.prompt_ids(p) for p in prompts]
    for ours, theirs in zip(scorer.score_options(prompts), backend.score_options(prompts)):
        assert ours.probs == pytest.approx(theirs.probs, abs=1e-6)
    # plain text: the completion is " A" after "Answer:", one token the backend also scores
    assert scorer.tokenizer.decode([scorer.completion_id("A")]) == " A"
    assert scorer.completion_id("A") in backend.prompts.option_ids()[0]


def test_lora_dropout_acts_on_the_lora_branch_only(tiny_dir):
    """--lora-dropout survives the removal of the base model's dropout, which stays off."""
    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, base=str(tiny_dir), name="drop",
                            lora_dropout=0.25)
    model, _, _ = prepare_model(config, "cpu", str(tiny_dir))
    lora, base = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            (lora if ".lora_dropout." in name else base).append(module.p)
    assert lora and set(lora) == {0.25}
    assert all(p == 0 for p in base)
    _moved_adapter(model)  # B away from zero: dropout on the branch now changes the output
    model.train()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        first, second = model(input_ids=ids).logits, model(input_ids=ids).logits
        assert not torch.equal(first, second)
        with model.disable_adapter():  # the reference: deterministic in train mode too
            assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_shared_prefix_batch_scores_through_the_model_scorer(tiny_dir, bank):
    """Questions 0, 2 and 4 of the bank differ only in dimension: their prompts share more
    than 16 tokens, which takes the backend's prefix-cache path. ModelScorer once lacked the
    set-up of that path (AttributeError '_cache_arg'); its scores must equal one-by-one
    scoring, and after the weights change, forget_cache() must give the new model's scores."""
    from fairpp_app.backends.hf_models import load_causal_lm, load_tokenizer
    from fairpp_app.backends.transformers_backend import MIN_SHARED_PREFIX

    model, tokenizer = load_causal_lm(tiny_dir), load_tokenizer(tiny_dir)
    scorer = ModelScorer(model, tokenizer, "cpu", name="x")
    prompts = [build_prompt(bank[i], None) for i in (0, 2, 4)]
    rows = [scorer.prompt_ids(p) for p in prompts]
    assert scorer._shared_prefix(rows) >= MIN_SHARED_PREFIX
    batched = scorer.score_options(prompts)
    alone = [scorer.score_options([p])[0] for p in prompts]
    for a, b in zip(batched, alone):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    scorer.forget_cache()
    after = scorer.score_options(prompts)
    fresh = ModelScorer(model, tokenizer, "cpu", name="y").score_options(prompts)
    for a, b in zip(after, fresh):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)
    assert any(abs(a.probs[0] - b.probs[0]) > 1e-3 for a, b in zip(after, batched))

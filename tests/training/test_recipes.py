"""The paper's recipe, the weighting estimators and the seed, on the tiny random Llama.

The paper's prompt and pairs are checked as data; its letter + EOS completion on the fast
path (one prompt pass, a cache repeated for the three letters) against the generic path
(TRL-layout prompt+letter+EOS sequences, full logits) through the trainer's own
``compute_loss``; the estimators as the lists a trainer iterates and as the loss's
denominator; and ``--seed`` end to end on both trainers: the same seed gives the same
losses, another seed other ones.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import resolve
from fairpp_app.training import losses, recipes
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.runner import run_training
from fairpp_app.training.torch_trainer import (
    LastTokenCollator,
    PairSequenceCollator,
    build_trainer,
    letter_eos_logprobs,
    pair_sequence_logprobs,
    prepare_model,
)
from tests.support.training_data import PERSONA_RUN, TARGET_SLUG


def _data(store, personas, method="wdpo", **kw):
    return build_training_set(store, PERSONA_RUN, resolve(TARGET_SLUG, personas), personas,
                              method, save_weights=False, **kw)


def test_the_recipe_fills_the_switches_left_unset():
    paper = TrainingConfig(recipe="paper", from_run="x")
    assert (paper.prompt_format, paper.completion, paper.pairs) == ("paper", "letter-eos", 3)
    assert paper.recipe_parts() == {"prompt_format": "paper", "completion": "letter-eos", "pairs": 3}
    mixed = TrainingConfig(recipe="paper", pairs=2, from_run="x")
    assert (mixed.prompt_format, mixed.pairs) == ("paper", 2)
    assert TrainingConfig().recipe_parts() == {}
    # The stored config says what ran, and reads back the same.
    assert TrainingConfig.from_json(paper.as_json()) == paper
    with pytest.raises(UsageError, match="--pairs must be 2 or 3"):
        TrainingConfig(pairs=4)
    with pytest.raises(UsageError, match="--recipe must be one of fairpp, paper"):
        TrainingConfig(recipe="trl")
    with pytest.raises(UsageError, match="--weighting sample applies to the weighted methods"):
        TrainingConfig(method="dpo", weighting="sample")


def test_paper_prompt_and_three_pairs(persona_store, personas, tiny_dir):
    data = _data(persona_store, personas, pairs=3, seed=1)
    again = _data(persona_store, personas, pairs=3, seed=1)
    other = _data(persona_store, personas, pairs=3, seed=2)
    assert [e.rejected for e in data.examples] == [e.rejected for e in again.examples]
    assert [e.rejected for e in data.examples] != [e.rejected for e in other.examples]
    for e in data.examples:
        pairs = e.pairs(3)
        assert pairs[:2] == [(e.chosen, r) for r in e.rejected]
        assert pairs[2] == e.rejected and e.chosen not in pairs[2]
    # Both orders of the third pair occur (it is drawn, not fixed).
    natural = [e.rejected == tuple(x for x in "ABC" if x != e.chosen) for e in data.examples]
    assert any(natural) and not all(natural)
    assert data.n_pairs == 3 * len(data.examples)
    assert data.data_hash != _data(persona_store, personas, pairs=3, seed=1,
                                   recipe={"pairs": 3}).data_hash

    q = data.examples[0].question
    text = recipes.paper_prompt(q)
    assert text.startswith("\n\nHuman: " + q.text + "\nA. ") and text.endswith("\n\nAssistant:")
    assert text.count("\nB. ") == 1 and text.count("\nC. ") == 1
    assert recipes.paper_prompt(q, swap_ab=True) != text


@pytest.fixture
def paper_trainer(persona_store, personas, tiny_dir, tmp_path):
    def make(method: str, generic: bool = False):
        config = TrainingConfig(method=method, from_run=PERSONA_RUN, base=str(tiny_dir),
                                name=f"t-{method}", batch_size=4, grad_accum=1, recipe="paper",
                                generic_path=generic)
        data = _data(persona_store, personas, method, pairs=3, seed=config.seed)
        session = SimpleNamespace(config=config, name=config.name, data=lambda: data)
        model, tokenizer, _ = prepare_model(config, "cpu", str(tiny_dir))
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():  # LoRA B starts at zero (policy == reference); move it
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        return build_trainer(session, model, tokenizer, "cpu", output_dir=tmp_path / method)
    return make


@pytest.mark.parametrize("method", ["wdpo", "wsft"])
def test_letter_eos_fast_path_equals_whole_sequences(paper_trainer, method):
    trainer = paper_trainer(method)
    model, ds, scorer = trainer.model, trainer.train_dataset, trainer.scorer
    eos = scorer.tokenizer.eos_token_id
    assert trainer.eos_id == eos
    features = [ds[i] for i in range(6)]
    prompt = scorer.tokenizer.decode(features[0]["prompt_ids"])
    assert "Human: " in prompt and prompt.endswith("Assistant:")
    fast = LastTokenCollator(scorer.pad_id)(features)
    generic = PairSequenceCollator(scorer.pad_id, eos)(features)
    with torch.no_grad():
        lp_fast = letter_eos_logprobs(model, fast, eos, scorer.cache_arg)
        lp_generic = pair_sequence_logprobs(model, generic)
        with model.disable_adapter():
            ref = letter_eos_logprobs(model, fast, eos, scorer.cache_arg)
    assert torch.allclose(lp_fast, lp_generic, atol=1e-4)
    assert not torch.allclose(lp_fast, ref, atol=1e-3)
    # Two tokens: less likely than the letter alone.
    from fairpp_app.training.torch_trainer import last_token_logprobs
    with torch.no_grad():
        assert (lp_fast < last_token_logprobs(model, fast)).all()

    def loss_and_grads(batch):
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.requires_grad and p.grad is not None}

    loss_fast, grads_fast = loss_and_grads(fast)
    trainer.generic = True
    trainer._reference_cache.clear()
    loss_generic, grads_generic = loss_and_grads(generic)
    assert loss_fast == pytest.approx(loss_generic, abs=1e-4)
    # Gradients flow through the repeated cache as through whole sequences.
    assert grads_fast and set(grads_fast) == set(grads_generic)
    for name, g in grads_fast.items():
        assert torch.allclose(g, grads_generic[name], atol=1e-5, rtol=1e-3), name
    w = fast["weight"]
    if method == "wdpo":
        r = lp_fast - ref
        deltas = [r[:, 0] - r[:, 1], r[:, 0] - r[:, 2], r[:, 1] - r[:, 2]]  # the third pair: 1 over 2
        by_hand = sum((-F.logsigmoid(0.1 * d) * w).sum() for d in deltas) / (3 * w.sum())
        assert loss_fast == pytest.approx(by_hand.item(), abs=1e-5)
    else:
        assert loss_fast == pytest.approx(((-lp_fast[:, 0]) * w).sum().item() / w.sum().item(),
                                          abs=1e-5)


def test_weighting_estimators(persona_store, personas):
    data = _data(persona_store, personas)
    weights = np.array([e.weight for e in data.examples])
    assert data.schedule("batch", 0) is data.examples
    dataset = data.schedule("dataset", 0)
    scaled = np.array([e.weight for e in dataset])
    assert scaled.mean() == pytest.approx(1.0) and np.allclose(scaled / weights, scaled[0] / weights[0])
    drawn = data.schedule("sample", 0)
    assert len(drawn) == len(data.examples) and {e.weight for e in drawn} == {1.0}
    assert [e.question.id for e in drawn] == [e.question.id for e in data.schedule("sample", 0)]
    assert [e.question.id for e in drawn] != [e.question.id for e in data.schedule("sample", 1)]
    # Drawn in proportion to weight: the heaviest tier's questions come up more than the lightest.
    ids = [e.question.id for e in drawn]
    heavy = [e.question.id for e in data.examples if e.weight == weights.max()]
    light = [e.question.id for e in data.examples if e.weight == weights.min()]
    per = lambda group: sum(ids.count(q) for q in group) / len(group)  # noqa: E731
    assert per(heavy) > per(light)
    # Unweighted methods iterate their examples as they are.
    plain = _data(persona_store, personas, "dpo")
    assert plain.schedule("sample", 0) is plain.examples

    lp = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
    ref = torch.log(torch.tensor([[0.3, 0.3, 0.4], [0.2, 0.5, 0.3]]))
    w = torch.tensor([0.5, 1.5])
    terms = -F.logsigmoid(losses.dpo_logits(lp, ref, 0.1))
    per_batch = losses.wdpo_loss(lp, ref, w, 0.1, F.softplus)
    per_count = losses.wdpo_loss(lp, ref, w, 0.1, F.softplus, by_batch=False)
    assert per_batch.item() == pytest.approx(((terms * w[:, None]).sum() / (2 * w.sum())).item())
    assert per_count.item() == pytest.approx(((terms * w[:, None]).sum() / 4).item())
    assert losses.wsft_loss(lp, w, by_batch=False).item() == pytest.approx(
        ((-lp[:, 0]) * w).sum().item() / 2)


@pytest.fixture(params=["torch", "mlx"])
def device(request) -> str:
    if request.param == "mlx":
        pytest.importorskip("mlx_lm")
    return "mlx" if request.param == "mlx" else "cpu"


def test_the_seed_decides_every_random_choice(device, persona_store, personas, tiny_dir):
    """wdpo with the paper's recipe and weighted sampling: LoRA init, data order, sampling and
    the third pair all come from --seed."""
    def losses_of(name: str, seed: int) -> list[float]:
        config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, base=str(tiny_dir), name=name,
                                device=device, batch_size=4, grad_accum=1, max_steps=3,
                                eval_every=0, lr=5e-2, recipe="paper", weighting="sample",
                                seed=seed, lora_dropout=0.1)
        outcome = run_training(persona_store, personas, config)
        assert outcome.status == "finished"
        row = persona_store.get_training(name)
        return [e["payload"]["loss"] for e in persona_store.events(training_id=row["id"])
                if e["kind"] == "train_step"]

    first, again, other = losses_of("s1", 1), losses_of("s1-again", 1), losses_of("s2", 2)
    assert len(first) == 3 and all(math.isfinite(x) for x in first)
    assert first[0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 1
    assert first == again
    assert first[1:] != pytest.approx(other[1:], abs=1e-6)
    stored = persona_store.get_training("s1")["config"]["config"]
    assert stored["weighting"] == "sample" and stored["pairs"] == 3 and stored["seed"] == 1


def test_mlx_letter_eos_rows_equal_whole_sequences(persona_store, personas, tiny_dir):
    """The MLX trainer's letter + EOS log-probs (a row per letter, last two positions only)
    against a plain forward pass over each prompt+letter+EOS sequence."""
    pytest.importorskip("mlx_lm")
    import mlx.core as mx

    from fairpp_app.training.mlx_trainer import MLXTrainer, add_lora, load_backend

    config = TrainingConfig(method="wdpo", from_run=PERSONA_RUN, base=str(tiny_dir), name="m",
                            device="mlx", recipe="paper")
    data = _data(persona_store, personas, pairs=3, seed=config.seed)
    backend = load_backend(str(tiny_dir))
    add_lora(backend.model, config)
    trainer = MLXTrainer(backend, data.examples, config)
    rows = [0, 1, 2, 3]
    got = np.array(trainer.policy(rows))
    eos = trainer.eos
    for i, prompt in zip(rows, trainer.prompts(rows)):
        e = data.examples[i]
        for j, letter in enumerate([e.chosen, *e.rejected]):
            ids = prompt + [trainer.letter_ids[letter], eos]
            logits = backend.model(mx.array([ids]))[0].astype(mx.float32)
            logps = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
            n = len(prompt)
            expected = logps[n - 1, ids[n]] + logps[n, eos]
            assert got[i][j] == pytest.approx(expected, abs=1e-4)


def test_a_crashed_paper_sample_run_resumes_onto_the_unbroken_runs_losses(device, persona_store,
                                                                          personas, tiny_dir):
    """The weighted sample and the third pairs are drawn again from the stored seed on resume,
    so the resumed steps see what the unbroken run saw."""
    store = persona_store
    options = dict(method="wdpo", from_run=PERSONA_RUN, base=str(tiny_dir), device=device,
                   batch_size=3, grad_accum=1, max_steps=4, save_every=2, eval_every=0, lr=5e-2,
                   recipe="paper", weighting="sample", seed=7)
    run_training(store, personas, TrainingConfig(name="whole", **options))

    def crash_at_3(event):
        if event.kind == "train_step" and event.step == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_training(store, personas, TrainingConfig(name="broken", **options), listener=crash_at_3)
    assert run_training(store, personas, resume="broken").status == "finished"

    def steps(name):
        row = store.get_training(name)
        return {e["payload"]["step"]: e["payload"]["loss"]
                for e in store.events(training_id=row["id"]) if e["kind"] == "train_step"}

    whole, broken = steps("whole"), steps("broken")
    assert [broken[s] for s in (3, 4)] == pytest.approx([whole[s] for s in (3, 4)], abs=1e-6)


def test_cli_says_what_the_recipe_changes(persona_store, tiny_dir, db_path, capsys):
    from fairpp_app.cli import main

    persona_store.close()
    base = ["--db", str(db_path), "train", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
            "--max-steps", "1", "--batch-size", "4", "--grad-accum", "1", "--eval-every", "0"]
    assert main(base + ["--method", "dpo", "--weighting", "sample"]) == 2
    assert "--weighting sample applies to the weighted methods" in capsys.readouterr().err
    assert main(base + ["--method", "dpo", "--recipe", "paper", "--name", "p"]) == 0
    err = capsys.readouterr().err
    assert "recipe paper: prompt format paper, completion letter-eos, pairs 3" in err
    assert "the paper starts dpo from its sft model" in err and "--init-from" in err
    assert "training 'p' finished at step 1" in err


def test_the_paper_recipe_trains_and_evaluates_on_the_official_wording(store, bank, tiny_dir,
                                                                         db_path, tmp_path, capsys):
    """An imported official release is a bank of its own: the paper's recipe trains on its
    questions in the file's wording (stem and options as the file gives them), the
    bank is that of the run's answers, and the evaluation answers the official test questions."""
    from fairpp_app.cli import main
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.jobs.importing import import_fairpp
    from fairpp_app.training.data import build_training_set
    from tests.support.official_files import official_frame, pairs, wording, write

    questions = pairs(bank, 12, seed=5)
    frame, _ = official_frame(questions)
    frame["split"] = ["test" if i >= 18 else "train" for i in range(len(frame))]
    import_fairpp(store, write(frame, tmp_path / "release.csv"), builtin_personas())
    personas = builtin_personas()
    data = build_training_set(store, "release", personas[5], personas, "dpo")
    assert data.examples and {e.question.bank for e in data.examples} == {"official"}
    by_twin = {q.id: q for q in questions}
    for e in data.examples:
        stem, options = wording(by_twin[e.question.twin_id])
        text = recipes.paper_prompt(e.question)
        assert text == "\n\nHuman: " + stem + "\n" + "\n".join(
            f"{k}. {v}" for k, v in zip("ABC", options)) + "\n\nAssistant:"
    store.close()

    db = ["--db", str(db_path)]
    assert main(db + ["train", "--from-run", "release", "--base", str(tiny_dir), "--method",
                      "dpo", "--recipe", "paper", "--name", "off", "--max-steps", "2",
                      "--batch-size", "4", "--grad-accum", "1", "--eval-every", "0"]) == 0
    assert "training 'off' finished at step 2" in capsys.readouterr().err
    assert main(db + ["evaluate", "--adapter", "off", "--device", "cpu"]) == 0
    capsys.readouterr()
    from fairpp_app.store.database import Store

    with Store(db_path) as again:
        run = again.get_run("eval-off")
        answered = {r["question_id"] for r in again.db.query(
            "SELECT question_id FROM records WHERE run_id = ?", [run["id"]])}
        official_test = {q.id for q in again.questions("test", bank="official")}
        assert answered == official_test and len(answered) == 6

"""Training from a run scored with ``--debias permute``: both option orders in the data, and
the live similarity, the evaluation and the report all answering the way the personas did.
"""

from __future__ import annotations

import pytest

from fairpp_app.core.answers import average
from fairpp_app.core.prompts import build_prompt
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.training_data import N_TEST, N_TRAIN, TARGET_SLUG, persona_records

PERMUTED = "personas-permuted"


@pytest.fixture
def permuted_store(persona_store, slugs):
    """Beside run 'personas', the same answers in a run marked as scored in both orders."""
    store = persona_store
    run = store.create_run(PERMUTED, "simulation", mode="logprob", status="finished",
                           params={"debias": "permute"})
    questions = store.questions("train", limit=N_TRAIN) + store.questions("test", limit=N_TEST)
    store.upsert_records(persona_records(store, run["id"], questions, slugs))
    return store


def _target(personas):
    return next(p for p in personas if p.slug == TARGET_SLUG)


def test_a_permuted_run_trains_each_question_in_both_orders(permuted_store, personas):
    store, target = permuted_store, _target(personas)
    plain = build_training_set(store, "personas", target, personas, "wdpo", save_weights=False)
    both = build_training_set(store, PERMUTED, target, personas, "wdpo", save_weights=False)
    assert not plain.permute and both.permute
    assert len(both.examples) == 2 * len(plain.examples)
    assert both.n_questions == plain.n_questions == N_TRAIN - 1  # one unparsed target answer
    assert both.n_pairs == 2 * plain.n_pairs
    assert both.data_hash != plain.data_hash
    flip = {"A": "B", "B": "A", "C": "C"}
    for shown, swapped in zip(both.examples[0::2], both.examples[1::2]):
        assert shown.question.id == swapped.question.id
        assert not shown.swapped and swapped.swapped
        assert swapped.chosen == flip[shown.chosen]
        assert set(swapped.rejected) == {flip[r] for r in shown.rejected}
        assert swapped.weight == shown.weight and swapped.tier == shown.tier
        # The swapped prompt shows the chosen option's text under the swapped letter.
        a, b, c = shown.question.options()
        text = {"A": a, "B": b, "C": c}[shown.chosen]
        assert f"{swapped.chosen}. {text}" in swapped.prompt().user
    summary = both.summary()
    assert summary["both_orders"] is True and summary["examples"] == 2 * summary["questions"]
    # Shares count each question once, in its own order; by weight they follow the tiers.
    assert summary["letters"] == plain.summary()["letters"]
    assert sum(summary["letters"].values()) == pytest.approx(1.0)
    firsts = [e for e in both.examples if not e.swapped]
    total = sum(e.weight for e in firsts)
    for letter, share in summary["weighted_letters"].items():
        mine = sum(e.weight for e in firsts if e.chosen == letter)
        assert share == pytest.approx(mine / total)


def test_live_eval_evaluation_and_report_follow_the_runs_debiasing(permuted_store, personas,
                                                                   tiny_dir):
    from fairpp_app.training.evaluate import evaluate_adapter, evaluate_base
    from fairpp_app.training.live_eval import live_similarity
    from fairpp_app.training.report import build_report
    from fairpp_app.training.scoring import ModelScorer
    from fairpp_app.training.torch_trainer import load_base

    store, target = permuted_store, _target(personas)
    config = TrainingConfig(method="wdpo", from_run=PERMUTED, base=str(tiny_dir), name="perm-wdpo",
                            batch_size=4, grad_accum=2, max_steps=2, eval_every=2,
                            eval_limit=N_TEST, save_every=50, lr=5e-3)
    outcome = run_training(store, personas, config)
    assert outcome.status == "finished"
    meta = read_metadata(outcome.adapter_path)
    assert meta["both_orders"] is True and meta["questions"] == N_TRAIN - 1

    # The live similarity averages the two orders exactly as the simulation engine does.
    model, tokenizer, _ = load_base(str(tiny_dir), "cpu")
    scorer = ModelScorer(model, tokenizer, "cpu", name="tiny")
    questions = store.questions("test", limit=3)
    answers = {q.id: {TARGET_SLUG: "A"} for q in questions}
    result = live_similarity(scorer, questions, answers, personas, target, debias="permute")
    first = scorer.score_options([build_prompt(q, None) for q in questions])
    second = scorer.score_options([build_prompt(q, None, swap_ab=True) for q in questions])
    expected = {q.id: average(f, s.swapped_ab()).answer
                for q, f, s in zip(questions, first, second)}
    assert result["answers"] == expected

    # The adapter answers in both orders because its source run did.
    done = evaluate_adapter(store, personas, "perm-wdpo", limit=N_TEST, device="cpu")
    assert done.status == "finished" and done.written == N_TEST
    run = store.get_run("eval-perm-wdpo")
    assert run["params"]["debias"] == "permute"
    assert set(store.record_frame(run["id"])["method"]) == {"logprob+permute"}

    # A base model scored in one order is not a row of a permuted report.
    evaluate_base(store, personas, str(tiny_dir), limit=N_TEST, device="cpu")
    rows = {r["row"]: r for r in build_report(store, personas, target, PERMUTED)["rows"]}
    assert rows["base"]["source"] is None
    assert "--debias permute" in rows["base"]["note"]
    assert rows["WDPO"]["margin"] is not None and rows["WDPO"]["note"] == ""
    evaluate_base(store, personas, str(tiny_dir), limit=N_TEST, device="cpu", debias="permute")
    rows = {r["row"]: r for r in build_report(store, personas, target, PERMUTED)["rows"]}
    assert rows["base"]["source"] == "eval-base-tiny-llama-permute"
    assert rows["base"]["questions"] == N_TEST and rows["base"]["margin"] is not None

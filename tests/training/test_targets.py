"""Group targets and soft targets.

A group (``--target 3,6`` or ``3:0.7,6:0.3``) is the mix of its members' A/B/C vectors, its
answer the mix's argmax, its tiers counted against the personas outside it (K = 1 + their
number); a group of one is today's persona. The soft methods (dsft, wdsft) learn the
target's whole distribution with a cross-entropy, and refuse, naming the run, a run that
holds letters only. Everything runs on real SQLite files and the tiny random model.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import UnknownPersonaError, UsageError
from fairpp_app.core.targets import parse_target
from fairpp_app.core.weighting import compute_weights
from fairpp_app.jobs.run_metrics import persona_answers, run_weights
from fairpp_app.training import losses
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.runner import run_training
from tests.support.training_data import N_TEST, PERSONA_RUN, SCORED_RUN, add_scored_run

PROB_RUN = SCORED_RUN


@pytest.fixture
def scored_store(persona_store, slugs):
    """``persona_store`` plus run 'scored': the same answers with their probabilities."""
    add_scored_run(persona_store, slugs)
    return persona_store


# ---- parsing ------------------------------------------------------------------------------

def test_target_specs_parse_to_one_canonical_form(personas):
    one = parse_target("6", personas)
    assert not one.is_group and one.slug == "disengaged-traditionalists" and one.number == 6
    assert parse_target("disengaged-traditionalists", personas) == one
    assert one.tag == "p6" and one.member_slugs == [one.slug]
    equal = parse_target(" 3, 6 ", personas)
    assert equal.spec == equal.slug == "3,6" and equal.shares == (0.5, 0.5) and equal.tag == "p3-6"
    assert parse_target("3:1,6:1", personas).spec == "3,6"
    mixed = parse_target("3:7,disengaged-traditionalists:3", personas)
    assert mixed.spec == "3:0.7,6:0.3" and mixed.shares == pytest.approx((0.7, 0.3))
    assert parse_target(mixed.spec, personas) == mixed  # a stored spec reads back
    assert mixed.tag == "p3x0.7-6x0.3"
    assert [p.number for p in mixed.outside(personas)] == [1, 2, 4, 5, 7]
    for bad, why in (("3,", "give a persona"), ("3,3", "listed twice"),
                     ("3:0.5,6", "every member a share"), ("3:x,6:1", "must be a number"),
                     ("3:0,6:1", "positive number"), ("3:nan,6:1", "positive number")):
        with pytest.raises(UsageError, match=why):
            parse_target(bad, personas)
    with pytest.raises(UnknownPersonaError, match="unknown persona '9'"):
        parse_target("3,9", personas)


def test_the_mix_uses_probabilities_where_known_and_ties_go_to_the_first_member(personas):
    group = parse_target("3:0.7,6:0.3", personas)
    p3, p6 = group.member_slugs
    letters = {p3: "A", p6: "B"}
    assert group.answer(letters) == "A"  # 0.7 one-hot A against 0.3 one-hot B
    probs = {p3: [0.40, 0.35, 0.25], p6: [0.10, 0.80, 0.10]}
    # 0.7*(.40,.35,.25) + 0.3*(.10,.80,.10) = (.31, .485, .205): the probabilities decide.
    assert group.mix(letters, probs) == pytest.approx([0.31, 0.485, 0.205])
    assert group.answer(letters, probs) == "B"
    assert group.answer({p3: None, p6: "B"}) is None
    assert parse_target("3,6", personas).answer({p3: "B", p6: "A"}) == "B"
    assert parse_target("6,3", personas).answer({p3: "B", p6: "A"}) == "A"


# ---- weights ------------------------------------------------------------------------------

def test_a_one_persona_target_gives_exactly_todays_weights(scored_store, personas, slugs):
    """Through the group path (mix, outside personas, K = 1 + outside) for 6 and for its slug."""
    answers = persona_answers(scored_store, PROB_RUN, list(slugs), "train")
    today = compute_weights(answers, "disengaged-traditionalists", list(slugs))
    for spec in ("6", "disengaged-traditionalists", "6:2"):
        result = run_weights(scored_store, PROB_RUN, parse_target(spec, personas), personas)
        assert result.weights == today.weights and result.tiers == today.tiers
        assert result.skipped == today.skipped and len(result.tiers) == 7


def test_a_two_persona_groups_tiers_and_k_by_hand(store, personas):
    """Five train questions written out; group 3:0.7,6:0.3 against personas 1, 2, 4, 5, 7."""
    questions = store.questions("train", limit=5)
    #          P1   P2   P3   P4   P5   P6   P7     group answer   outside differing -> tier
    table = [("A", "A", "A", "A", "B", "B", "C"),  # A (0.7 A)      P5, P7 -> 3
             ("B", "B", "A", "B", "B", "B", "B"),  # A              all five -> 6
             ("C", "C", "C", "C", "C", "C", "C"),  # C              none -> 1
             ("A", "B", "A", "A", "C", "B", "A"),  # B (probs)      P1, P4, P5, P7 -> 5
             ("B", "A", "B", "B", "A", "A", "B")]  # B              P2, P5 -> 3
    probs = {(3, "P3"): (0.40, 0.35, 0.25), (3, "P6"): (0.10, 0.80, 0.10)}
    run = store.create_run("hand", "import", status="finished")
    rows = []
    for i, (q, letters) in enumerate(zip(questions, table)):
        for p, letter in zip(personas, letters):
            row = {"run_id": run["id"], "question_id": q.id, "respondent": p.slug,
                   "answer": letter, "raw_text": letter, "method": "import"}
            known = probs.get((i, f"P{p.number}"))
            if known:
                row.update(p_a=known[0], p_b=known[1], p_c=known[2])
            rows.append(row)
    store.upsert_records(rows)
    result = run_weights(store, "hand", parse_target("3:0.7,6:0.3", personas), personas)
    assert {q.id: result.weights[q.id][0] for q in questions} == \
        {q.id: t for q, t in zip(questions, (3, 6, 1, 5, 3))}
    assert [t["count"] for t in result.tiers] == [1, 0, 2, 0, 1, 1]  # K = 1 + 5 = 6 tiers
    raw = {1: (1 / 6) / 1, 3: (3 / 6) / 2, 5: (5 / 6) / 1, 6: (6 / 6) / 1}
    total = sum(raw.values())
    for q, tier in zip(questions, (3, 6, 1, 5, 3)):
        assert result.weights[q.id] == (tier, pytest.approx(raw[tier] / total))


# ---- soft targets -------------------------------------------------------------------------

def test_dsft_loss_is_the_cross_entropy_by_hand():
    torch = pytest.importorskip("torch")
    policy = torch.log(torch.tensor([[0.5, 0.3, 0.1], [0.2, 0.2, 0.5]]))
    soft = torch.tensor([[0.6, 0.3, 0.1], [1.0, 0.0, 0.0]])
    ce = [-(0.6 * math.log(0.5) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)), -math.log(0.2)]
    weights = torch.tensor([1.0, 3.0])
    value = losses.dsft(policy, None, weights, 0.1, None, soft=soft).item()
    assert value == pytest.approx((ce[0] + 3 * ce[1]) / 4, rel=1e-6)
    # Rescaled per set (--weighting dataset): divided by the number of questions.
    value = losses.dsft(policy, None, weights, 0.1, None, soft=soft, by_batch=False).item()
    assert value == pytest.approx((ce[0] + 3 * ce[1]) / 2, rel=1e-6)


def test_mlx_dsft_loss_agrees_with_torch():
    torch = pytest.importorskip("torch")
    mx = pytest.importorskip("mlx.core")
    rng = np.random.default_rng(3)
    policy = np.log(rng.dirichlet([1, 1, 1], size=6) * 0.8).astype(np.float32)
    soft = rng.dirichlet([1, 1, 1], size=6).astype(np.float32)
    weights = np.array([0.3, 0.0, 1.2, 0.05, 2.0, 0.7], dtype=np.float32)
    ours = losses.dsft(mx.array(policy), None, mx.array(weights), 0.1, None,
                       soft=mx.array(soft)).item()
    theirs = losses.dsft(torch.tensor(policy), None, torch.tensor(weights), 0.1, None,
                         soft=torch.tensor(soft)).item()
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_the_torch_trainers_dsft_loss_is_the_models_cross_entropy(scored_store, personas, tiny_dir):
    import torch

    from fairpp_app.training.session import TrainingSession
    from fairpp_app.training.torch_trainer import build_trainer, prepare_model

    config = TrainingConfig(method="wdsft", from_run=PROB_RUN, base=str(tiny_dir), name="soft",
                            batch_size=4, grad_accum=1, max_steps=1, eval_every=0, device="cpu")
    session = TrainingSession(scored_store, personas, config)
    data = session.data()
    expected_soft = {}
    frame = scored_store.record_frame(scored_store.get_run(PROB_RUN)["id"], "train",
                                      respondents=["disengaged-traditionalists"])
    for qid, a, b, c in zip(frame["question_id"], frame["p_a"], frame["p_b"], frame["p_c"]):
        expected_soft[qid] = (a, b, c)
    for e in data.examples:
        assert e.soft == pytest.approx(expected_soft[e.question.id])
    model, tokenizer, _ = prepare_model(config, "cpu", str(tiny_dir))
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=session.checkpoint_dir)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch.get("position_ids")).logits[:, -1].float()
    logps = torch.log_softmax(logits, -1).gather(1, batch["letter_ids"])
    by_hand = [-sum(q * lp for q, lp in zip(data.examples[i].soft_columns(), logps[i].tolist()))
               for i in range(4)]
    w = [data.examples[i].weight for i in range(4)]
    assert loss == pytest.approx(sum(a * b for a, b in zip(w, by_hand)) / sum(w), rel=1e-4)

    # --generic-path (TRL's full sequences) reads the same three log-probs: the same loss.
    generic = TrainingSession(scored_store, personas,
                              TrainingConfig(**{**config.as_json(), "generic_path": True}))
    slow = build_trainer(generic, model, tokenizer, "cpu", output_dir=generic.checkpoint_dir)
    with torch.no_grad():
        value = slow.compute_loss(model, slow.data_collator(
            [slow.train_dataset[i] for i in range(4)])).item()
    assert value == pytest.approx(loss, abs=1e-4)


def test_dsft_trains_two_steps_and_reports_its_row(scored_store, personas, tiny_dir):
    from fairpp_app.training.report import build_report

    config = TrainingConfig(method="dsft", from_run=PROB_RUN, base=str(tiny_dir),
                            batch_size=4, grad_accum=1, max_steps=2, eval_every=2,
                            eval_limit=N_TEST, lr=5e-3)
    outcome = run_training(scored_store, personas, config)
    assert outcome.status == "finished" and outcome.step == 2 and outcome.name == "dsft-p6"
    events = scored_store.events(training_id=scored_store.get_training("dsft-p6")["id"])
    assert [e["payload"]["step"] for e in events if e["kind"] == "train_step"] == [1, 2]
    assert all(math.isfinite(e["payload"]["loss"]) for e in events if e["kind"] == "train_step")
    report = build_report(scored_store, personas, parse_target("6", personas))
    rows = {r["row"]: r for r in report["rows"]}
    assert list(rows) == ["base", "role-play", "SFT", "WSFT", "DPO", "WDPO", "DSFT"]
    assert rows["DSFT"]["note"].startswith("not evaluated: fairpp evaluate --adapter dsft-p6")
    assert rows["WDPO"]["note"] == "no finished training"  # the paper's rows are always there


def test_a_groups_soft_target_is_the_mix_of_its_members_probabilities(scored_store, personas):
    group = parse_target("3:0.7,6:0.3", personas)
    frame = scored_store.record_frame(scored_store.get_run(PROB_RUN)["id"], "train",
                                      respondents=group.member_slugs)
    probs = {(q, r): np.array([a, b, c]) for q, r, a, b, c in zip(
        frame["question_id"], frame["respondent"], frame["p_a"], frame["p_b"], frame["p_c"])}
    data = build_training_set(scored_store, PROB_RUN, group, personas, "wdsft", save_weights=False)
    assert data.examples and len(data.tiers) == 6
    p3, p6 = group.member_slugs
    for e in data.examples:
        mixed = 0.7 * probs[(e.question.id, p3)] + 0.3 * probs[(e.question.id, p6)]
        assert e.soft == pytest.approx(tuple(mixed))
        assert e.chosen == "ABC"[int(np.argmax(mixed))]
        assert e.soft_columns()[0] == pytest.approx(mixed.max())


def test_dsft_on_a_letters_only_run_names_the_run(persona_store, personas, tiny_dir, db_path,
                                                  capsys):
    with pytest.raises(UsageError, match=r"run 'personas' holds letters only for persona 6"):
        build_training_set(persona_store, PERSONA_RUN, parse_target("6", personas), personas,
                           "wdsft")
    persona_store.close()
    assert main(["--db", str(db_path), "train", "--method", "dsft", "--from-run", PERSONA_RUN,
                 "--target", "3,6", "--base", str(tiny_dir), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "run 'personas' holds letters only for the members of group 3,6" in err
    assert "Traceback" not in err


# ---- the CLI end to end -------------------------------------------------------------------

def test_cli_trains_weighs_and_reports_a_weighted_group(persona_store, personas, tiny_dir,
                                                        db_path, capsys):
    persona_store.close()
    db = ["--db", str(db_path)]
    assert main(db + ["weights", "--run", PERSONA_RUN, "--target", "3:0.7,6:0.3", "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)
    assert weights["target"] == "3:0.7,6:0.3" and len(weights["tiers"]) == 6
    assert sum(t["weight"] for t in weights["tiers"]) == pytest.approx(1.0)

    assert main(db + ["train", "--method", "wsft", "--target", "3:0.7,6:0.3", "--from-run",
                      PERSONA_RUN, "--base", str(tiny_dir), "--max-steps", "2", "--batch-size",
                      "4", "--grad-accum", "1", "--eval-every", "2", "--eval-limit",
                      str(N_TEST)]) == 0
    err = capsys.readouterr().err
    assert "training 'wsft-p3x0.7-6x0.3' finished at step 2" in err
    evals = [line for line in err.splitlines() if line.startswith("eval at step")]
    assert len(evals) == 2 and all("target [3:0.7,6:0.3] margin" in line for line in evals)

    assert main(db + ["evaluate", "--adapter", "wsft-p3x0.7-6x0.3", "--limit", str(N_TEST),
                      "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(db + ["report", "--target", "3:0.7,6:0.3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"]["slug"] == "3:0.7,6:0.3"
    row = next(r for r in report["rows"] if r["row"] == "WSFT")
    assert row["source"] == "wsft-p3x0.7-6x0.3" and row["questions"] > 0
    outside = [p.slug for p in parse_target("3:0.7,6:0.3", personas).outside(personas)]
    sims = row["similarity"]
    assert row["target_similarity"] == sims["3:0.7,6:0.3"]
    assert row["margin"] == pytest.approx(sims["3:0.7,6:0.3"]
                                          - sum(sims[s] for s in outside) / len(outside))
    assert row["interval"]["kind"] == "bootstrap" and row["interval"]["margin"] is not None
    assert main(db + ["report", "--target", "3:7,6:3"]) == 0  # the same group, unnormalised
    printed = capsys.readouterr()
    assert "group 3:0.7,6:0.3, test split" in printed.out.replace("\n", " ")
    assert "WSFT wsft-p3x0.7-6x0.3" in printed.err  # found by its stored canonical target


def test_mlx_trains_wdsft_and_its_first_loss_is_torchs(scored_store, personas, tiny_dir):
    """At the start (LoRA B = 0) both trainers score the base model: one loss on one batch."""
    pytest.importorskip("mlx_lm")
    import torch

    from fairpp_app.training.mlx_trainer import MLXTrainer, add_lora, load_backend
    from fairpp_app.training.session import TrainingSession
    from fairpp_app.training.torch_trainer import build_trainer, prepare_model

    def config(device: str, name: str) -> TrainingConfig:
        return TrainingConfig(method="wdsft", from_run=PROB_RUN, base=str(tiny_dir), name=name,
                              batch_size=4, grad_accum=1, max_steps=2, eval_every=0,
                              device=device, lr=5e-3)

    session = TrainingSession(scored_store, personas, config("cpu", "soft-torch"))
    model, tokenizer, _ = prepare_model(session.config, "cpu", str(tiny_dir))
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=session.checkpoint_dir)
    with torch.no_grad():
        theirs = trainer.compute_loss(model, trainer.data_collator(
            [trainer.train_dataset[i] for i in range(4)])).item()
    backend = load_backend(str(tiny_dir))
    add_lora(backend.model, session.config)
    ours = MLXTrainer(backend, session.data().examples, config("mlx", "soft-mlx")).loss(
        list(range(4))).item()
    assert ours == pytest.approx(theirs, rel=2e-3)

    outcome = run_training(scored_store, personas, config("mlx", "soft-mlx"))
    assert outcome.status == "finished" and outcome.step == 2
    steps = [e["payload"] for e in scored_store.events(
        training_id=scored_store.get_training("soft-mlx")["id"]) if e["kind"] == "train_step"]
    assert [s["step"] for s in steps] == [1, 2] and all(math.isfinite(s["loss"]) for s in steps)

"""The report's intervals: trainings that differ only by seed become one row with a t-interval
(widened to cover the question noise), a single set of answers gets a bootstrap interval over
the questions, and rows are marked against DPO and base. Tiny model, one step per training, real evaluation runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairpp_app.cli import main
from fairpp_app.core.personas import resolve
from fairpp_app.training import intervals
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.runner import run_training
from tests.support.training_data import N_TEST, PERSONA_RUN, TARGET_SLUG


def test_t_interval_and_overlap_rules():
    values = [0.61, 0.64, 0.58]
    low, high = intervals.t_interval(values)
    assert (low + high) / 2 == pytest.approx(np.mean(values))
    assert low < min(values) and high > max(values)  # three seeds: t(0.975, 2) is wide
    tighter = intervals.t_interval([0.60, 0.61, 0.60, 0.61, 0.60, 0.61])
    assert tighter[1] - tighter[0] < high - low
    row = {"interval": {"target_similarity": [0.7, 0.8], "margin": [0.0, 0.1], "agreement": None}}
    ref = {"interval": {"target_similarity": [0.5, 0.6], "margin": [0.05, 0.2], "agreement": [0, 1]}}
    assert intervals.compare(row, ref) == {"target_similarity": 1, "margin": 0, "agreement": None}
    assert intervals.compare(ref, row)["target_similarity"] == -1
    assert intervals.compare(row, row) is None and intervals.compare(row, None) is None


def test_a_seed_interval_stays_inside_the_metric_s_range():
    """Three seeds near the top: the t-interval reaches past 1, the report's stops at 1."""
    per_seed = [{"target_similarity": s, "margin": m, "agreement": a}
                for s, m, a in ((0.975, 0.04, 0.815), (0.894, -0.031, 0.785), (0.936, 0.077, 0.79))]
    assert intervals.t_interval([r["target_similarity"] for r in per_seed])[1] > 1
    out = intervals.seed_interval(per_seed)
    assert out["target_similarity"][1] == 1.0 and 0.8 < out["target_similarity"][0] < 0.9
    assert out["margin"] == pytest.approx(intervals.t_interval([0.04, -0.031, 0.077]))
    assert out["n"] == 3 and out["kind"] == "t"


def test_bootstrap_interval_is_fixed_and_holds_the_estimate(persona_store, personas):
    from fairpp_app.core.metrics import paired_similarity
    from fairpp_app.jobs.run_metrics import persona_answers

    slugs = [p.slug for p in personas]
    answers = persona_answers(persona_store, PERSONA_RUN, slugs, "train")
    other = slugs[0]
    mine = {q: by.get(other) for q, by in answers.items()}
    first = intervals.bootstrap_interval(mine, answers, slugs, TARGET_SLUG)
    assert first == intervals.bootstrap_interval(mine, answers, slugs, TARGET_SLUG)
    assert first["kind"] == "bootstrap" and first["n"] == intervals.BOOTSTRAP_SAMPLES
    estimate = paired_similarity(mine, {q: by.get(TARGET_SLUG) for q, by in answers.items()})
    low, high = first["target_similarity"]
    assert low <= estimate <= high and low < high
    assert all(first[k] is not None for k in intervals.METRICS)
    # Fewer questions, more noise.
    few = dict(list(mine.items())[:10])
    narrow, wide = first["agreement"], intervals.bootstrap_interval(few, answers, slugs,
                                                                    TARGET_SLUG)["agreement"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_seeds_that_answer_alike_still_carry_the_question_noise(persona_store, personas):
    """Three seeds with the same answers: the t-interval has zero width; the row's interval
    is that of the questions (the bootstrap of the seeds' mean), never narrower."""
    from fairpp_app.jobs.run_metrics import persona_answers

    slugs = [p.slug for p in personas]
    answers = persona_answers(persona_store, PERSONA_RUN, slugs, "train")
    mine = {q: by.get(slugs[0]) for q, by in answers.items()}
    alone = intervals.bootstrap_interval(mine, answers, slugs, TARGET_SLUG)
    assert intervals.bootstrap_interval([mine, mine, mine], answers, slugs, TARGET_SLUG) == alone
    same = intervals.bootstrap_interval([dict(mine)] * 3, answers, slugs, TARGET_SLUG)
    seeds = [{"target_similarity": 0.8, "margin": 0.05, "agreement": 0.7}] * 3
    assert intervals.seed_interval(seeds)["target_similarity"] == pytest.approx([0.8, 0.8])
    out = intervals.seed_interval(seeds, same)
    for key in intervals.METRICS:
        low, high = out[key]
        assert low <= min(same[key][0], seeds[0][key]) and high >= max(same[key][1], seeds[0][key])
        assert low < high
    assert out["parts"]["t"]["margin"] == pytest.approx([0.05, 0.05])
    assert out["parts"]["bootstrap"]["margin"] == same["margin"]

    # Seeds that disagree: each resample averages the seeds' metrics on the same questions,
    # so the interval of the mean lies between (and is narrower than the hull of) theirs.
    other = {q: by.get(slugs[1]) for q, by in answers.items()}
    theirs = intervals.bootstrap_interval(other, answers, slugs, TARGET_SLUG)
    both = intervals.bootstrap_interval([mine, other], answers, slugs, TARGET_SLUG)
    for key in intervals.METRICS:
        assert min(alone[key][0], theirs[key][0]) <= both[key][0]
        assert both[key][1] <= max(alone[key][1], theirs[key][1])
    # A wide t-interval over seeds is kept as it is: the bootstrap only ever widens it.
    spread = [{"target_similarity": s, "margin": 0.0, "agreement": 0.5} for s in (0.2, 0.5, 0.9)]
    assert (intervals.seed_interval(spread, same)["target_similarity"]
            == intervals.seed_interval(spread)["target_similarity"])


def _train(store, personas, tiny_dir, name, method, **kw):
    from fairpp_app.training.evaluate import evaluate_adapter

    options = dict(method=method, from_run=PERSONA_RUN, base=str(tiny_dir), name=name,
                   batch_size=4, grad_accum=1, max_steps=1, eval_every=0, lr=5e-2)
    config = TrainingConfig(**{**options, **kw})
    assert run_training(store, personas, config).status == "finished"
    assert evaluate_adapter(store, personas, name, limit=N_TEST, device="cpu").status == "finished"


def test_seeds_make_one_row_with_a_t_interval(persona_store, personas, tiny_dir, db_path, capsys):
    from fairpp_app.training.report import build_report

    store = persona_store
    for seed in (1, 2, 3):
        _train(store, personas, tiny_dir, f"dpo-s{seed}", "dpo", seed=seed, lr=0.3)
    _train(store, personas, tiny_dir, "wdpo-one", "wdpo")
    _train(store, personas, tiny_dir, "wdpo-sample", "wdpo", weighting="sample")
    target = resolve(TARGET_SLUG, personas)

    report = build_report(store, personas, target)
    rows = {r["row"]: r for r in report["rows"]}
    assert list(rows) == ["base", "role-play", "SFT", "WSFT", "DPO", "WDPO"]
    dpo = rows["DPO"]
    assert dpo["seeds"] == [1, 2, 3] and dpo["trainings"] == ["dpo-s1", "dpo-s2", "dpo-s3"]
    assert dpo["interval"]["kind"] == "t" and dpo["interval"]["n"] == 3
    per_seed = [p["target_similarity"] for p in dpo["per_seed"]]
    assert dpo["target_similarity"] == pytest.approx(np.mean(per_seed))
    low, high = dpo["interval"]["target_similarity"]
    assert low <= dpo["target_similarity"] <= high
    parts = dpo["interval"]["parts"]  # the t-interval over seeds, widened by the questions'
    assert parts["bootstrap"]["target_similarity"] and parts["t"]["target_similarity"]
    assert low == min(parts["t"]["target_similarity"][0], parts["bootstrap"]["target_similarity"][0])
    assert sum(dpo["answers"].values()) == 3 * N_TEST
    # The latest WDPO training is its own group: one set of answers, a bootstrap interval.
    assert rows["WDPO"]["source"] == "wdpo-sample" and rows["WDPO"]["interval"]["kind"] == "bootstrap"
    assert set(rows["WDPO"]["vs_dpo"]) == set(intervals.METRICS)
    assert rows["DPO"]["vs_dpo"] is None
    assert rows["role-play"]["interval"]["kind"] == "bootstrap"
    assert rows["base"]["interval"] is None and rows["WDPO"]["vs_base"] is None  # not evaluated

    # An evaluation that did not finish (a sweep stopped mid-way) is left out, with a note.
    run = store.get_run("eval-dpo-s3")
    store.set_run_status(run["id"], "cancelled")
    partial = {r["row"]: r for r in build_report(store, personas, target)["rows"]}["DPO"]
    assert partial["seeds"] == [1, 2] and "eval-dpo-s3 is cancelled, not finished" in partial["note"]
    store.set_run_status(run["id"], "finished")

    variants = build_report(store, personas, target, variants=True)
    labels = [r["row"] for r in variants["rows"]]
    assert "WDPO weighting=batch" in labels and "WDPO weighting=sample" in labels
    assert "DPO" in labels

    store.close()
    assert main(["--db", str(db_path), "report", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in printed["rows"]] == list(rows)
    assert printed["rows"][4]["interval"]["kind"] == "t"
    assert main(["--db", str(db_path), "report", "--variants"]) == 0
    captured = capsys.readouterr()
    assert "intervals" in captured.out and "weighting=sample" in captured.out
    assert "t over the seeds" in captured.err


def test_variants_are_marked_against_the_dpo_of_fairpp_s_own_recipe(persona_store, personas,
                                                                      tiny_dir):
    """With several DPO groups (a sweep's), the reference of the `vs DPO` marks is DPO with
    fairpp's recipe from the base model, even when another DPO group was trained first."""
    from fairpp_app.training.report import build_report

    store = persona_store
    _train(store, personas, tiny_dir, "dpo-paper", "dpo", recipe="paper")
    for seed in (1, 2):
        _train(store, personas, tiny_dir, f"dpo-s{seed}", "dpo", seed=seed, lr=0.3)
    rows = {r["row"]: r for r in build_report(store, personas, resolve(TARGET_SLUG, personas),
                                              variants=True)["rows"]}
    dpo = [r for r in rows.values() if r.get("method") == "dpo"]
    assert [r["trainings"] for r in dpo] == [["dpo-paper"], ["dpo-s1", "dpo-s2"]]
    assert dpo[1]["vs_dpo"] is None  # fairpp's recipe: the reference itself
    assert set(dpo[0]["vs_dpo"]) == set(intervals.METRICS)

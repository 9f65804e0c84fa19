"""Sample weights against an independent computation.

A question's tier is 1 plus the number of other personas whose answer differs from the
target's; tier i with N_i questions gets T_i = (i/K)^alpha * (1/N_i)^beta, normalised so
the tiers sum to 1.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairpp_app.cli import main
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import builtin_personas, resolve
from fairpp_app.core.weighting import compute_weights, tier_of, tier_values
from fairpp_app.jobs.run_metrics import run_weights

PERSONAS = [p.slug for p in builtin_personas()]


def weights_by_hand(answers, target, personas, alpha=1.0, beta=1.0):
    """Returns (tier per question, T per tier 1..K, skipped question ids)."""
    k = len(personas)
    tiers, skipped = {}, []
    for qid, by in answers.items():
        mine = by.get(target)
        if mine is None:
            skipped.append(qid)
            continue
        differ = 0
        for p in personas:
            if p != target and by.get(p) is not None and by[p] != mine:
                differ += 1
        tiers[qid] = 1 + differ
    n = {i: sum(1 for t in tiers.values() if t == i) for i in range(1, k + 1)}
    raw = {i: (i / k) ** alpha * (1 / n[i]) ** beta if n[i] else 0.0 for i in n}
    total = sum(raw.values())
    t = {i: (v / total if total else 0.0) for i, v in raw.items()}
    return tiers, t, skipped


def test_paper_example_by_hand():
    # Persona 6 is the target. q1: all agree (tier 1). q2: two differ (tier 3).
    # q3: everyone else differs (tier 7). q4: two differ, one unparsed (tier 3).
    same = dict.fromkeys(PERSONAS, "A")
    answers = {
        "q1": dict(same),
        "q2": {**same, PERSONAS[0]: "B", PERSONAS[1]: "C"},
        "q3": {p: ("B" if p != PERSONAS[5] else "A") for p in PERSONAS},
        "q4": {**same, PERSONAS[0]: "B", PERSONAS[2]: "C", PERSONAS[3]: None},
        "q5": {**same, PERSONAS[5]: None},
    }
    result = compute_weights(answers, PERSONAS[5], PERSONAS)
    assert {q: t for q, (t, _) in result.weights.items()} == {"q1": 1, "q2": 3, "q3": 7, "q4": 3}
    assert result.skipped == ["q5"]
    # T1 = (1/7)/1, T3 = (3/7)/2, T7 = (7/7)/1; normalised.
    raw = {1: 1 / 7, 3: 3 / 14, 7: 1.0}
    total = sum(raw.values())
    assert result.weights["q1"][1] == pytest.approx(raw[1] / total)
    assert result.weights["q2"][1] == pytest.approx(raw[3] / total)
    assert result.weights["q4"][1] == pytest.approx(raw[3] / total)
    assert result.weights["q3"][1] == pytest.approx(raw[7] / total)
    assert [t["count"] for t in result.tiers] == [1, 0, 2, 0, 0, 0, 1]
    assert [t["weight"] for t in result.tiers][1] == 0.0
    assert sum(t["weight"] for t in result.tiers) == pytest.approx(1.0)


def test_tier_of():
    assert tier_of("A", ["A"] * 6) == 1
    assert tier_of("A", ["B"] * 6) == 7
    assert tier_of("A", [None, "B", "A", "C", None, "A"]) == 3


def test_tier_values_empty_tiers_carry_no_weight():
    assert tier_values([0] * 7) == [0.0] * 7
    values = tier_values([0, 0, 4, 0, 0, 0, 0])
    assert values == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_unknown_target_is_an_error():
    with pytest.raises(ValueError):
        compute_weights({}, "nobody", PERSONAS)


answer_st = st.sampled_from(["A", "B", "C", None])
answers_st = st.dictionaries(
    st.text("abcdef0123456789", min_size=4, max_size=8),
    st.fixed_dictionaries(dict.fromkeys(PERSONAS, answer_st)),
    min_size=0, max_size=60)


@settings(max_examples=150, deadline=None)
@given(answers_st, st.sampled_from(PERSONAS), st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_weights_match_the_reference_formula(answers, target, alpha, beta):
    result = compute_weights(answers, target, PERSONAS, alpha, beta)
    tiers, t, skipped = weights_by_hand(answers, target, PERSONAS, alpha, beta)
    assert sorted(result.skipped) == sorted(skipped)
    assert {q: tier for q, (tier, _) in result.weights.items()} == tiers
    for tier, w in result.weights.values():
        assert w == pytest.approx(t[tier], rel=1e-12)
    assert len(result.tiers) == 7
    assert [x["tier"] for x in result.tiers] == list(range(1, 8))
    assert [x["count"] for x in result.tiers] == [
        sum(1 for v in tiers.values() if v == i) for i in range(1, 8)]
    weights = [x["weight"] for x in result.tiers]
    assert all(w >= 0 for w in weights)
    for x in result.tiers:
        if x["count"] == 0:
            assert x["weight"] == 0.0
    if result.weights:
        assert sum(weights) == pytest.approx(1.0)
    else:
        assert sum(weights) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=7, max_size=7),
       st.floats(0, 4), st.floats(0, 4))
def test_tier_values_properties(counts, alpha, beta):
    values = tier_values(counts, alpha, beta)
    assert all(v >= 0 for v in values)
    assert all(v == 0 for v, n in zip(values, counts) if n == 0)
    if any(counts):
        assert sum(values) == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=7, max_size=7))
def test_higher_tiers_weigh_more_when_sizes_equal(counts):
    equal = [counts[0]] * 7
    values = tier_values(equal, alpha=1.0, beta=1.0)
    assert values == sorted(values)
    assert values[-1] == pytest.approx(7 * values[0])
    # beta = 0 ignores tier sizes; alpha = 0 ignores the tier number.
    assert tier_values(counts, alpha=1.0, beta=0.0) == pytest.approx([i / 28 for i in range(1, 8)])
    flat = tier_values(counts, alpha=0.0, beta=1.0)
    inv = [1 / n for n in counts]
    assert flat == pytest.approx([v / sum(inv) for v in inv])


# ---- on a stored run and through the CLI -------------------------------------------------

@pytest.fixture
def weights_run(store, sample):
    rng = random.Random(5)
    questions = sample(200, seed=5)
    run = store.create_run("personas", "import")
    answers = {}
    rows = []
    for q in questions:
        consensus = rng.choice("ABC")
        by = {}
        for slug in PERSONAS:
            letter = consensus if rng.random() < 0.6 else rng.choice("ABC")
            if rng.random() < 0.05:
                letter = None
            by[slug] = letter
            rows.append({"run_id": run["id"], "question_id": q.id, "respondent": slug,
                         "answer": letter, "raw_text": letter or "unclear", "method": "import"})
        answers[q.id] = by
    # A model respondent must not take part in the tiers.
    rows += [{"run_id": run["id"], "question_id": q.id, "respondent": "some-model",
              "respondent_kind": "model", "answer": "C", "method": "import"} for q in questions]
    store.upsert_records(rows)
    split_of = {q.id: q.split for q in questions}
    return {"store": store, "answers": answers, "split": split_of}


def test_run_weights_stored_and_match(weights_run):
    store = weights_run["store"]
    personas = builtin_personas()
    target = resolve(6, personas)
    train = {q: a for q, a in weights_run["answers"].items() if weights_run["split"][q] == "train"}
    result = run_weights(store, "personas", target, personas)
    tiers, t, skipped = weights_by_hand(train, target.slug, PERSONAS)
    assert skipped and sorted(result.skipped) == sorted(skipped)
    assert {q: tier for q, (tier, _) in result.weights.items()} == tiers
    stored = store.load_weights(store.get_run("personas")["id"], target.slug)
    assert set(stored) == set(tiers)
    for qid, (tier, w) in stored.items():
        assert tier == tiers[qid] and w == pytest.approx(t[tier])
    row = next(iter(store.db.query("SELECT * FROM weight_sets")))
    assert row["target"] == target.slug and row["split"] == "train"
    assert sorted(json.loads(row["skipped"])) == sorted(skipped)
    assert [x["count"] for x in json.loads(row["tiers"])] == [x["count"] for x in result.tiers]


def test_run_weights_without_target_answers(store, bank):
    run = store.create_run("one", "import")
    store.upsert_records([{"run_id": run["id"], "question_id": bank[0].id,
                           "respondent": PERSONAS[0], "answer": "A", "method": "m"}])
    personas = builtin_personas()
    with pytest.raises(UsageError):
        run_weights(store, "one", resolve(6, personas), personas, split="all")


@pytest.mark.parametrize("target", ["6", "disengaged-traditionalists"])
def test_cli_weights_json(weights_run, capsys, target):
    store = weights_run["store"]
    assert main(["--db", str(store.path), "weights", "--run", "personas", "--target", target,
                 "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["target"] == "disengaged-traditionalists"
    assert len(data["tiers"]) == 7
    assert all(set(t) == {"tier", "count", "weight"} for t in data["tiers"])
    assert sum(t["weight"] for t in data["tiers"]) == pytest.approx(1.0)
    train = {q: a for q, a in weights_run["answers"].items() if weights_run["split"][q] == "train"}
    tiers, t, skipped = weights_by_hand(train, "disengaged-traditionalists", PERSONAS)
    assert set(data["weights"]) == set(tiers)
    for qid, w in data["weights"].items():
        assert w == pytest.approx(t[tiers[qid]])
    assert sorted(data["skipped"]) == sorted(skipped)
    assert "skipped" in captured.err
    # Running it twice replaces the stored set.
    assert main(["--db", str(store.path), "weights", "--run", "personas", "--target", target,
                 "--json"]) == 0
    capsys.readouterr()
    assert store.db.execute("SELECT count(*) FROM weight_sets").fetchone()[0] == 1
    assert store.db.execute("SELECT count(*) FROM weights").fetchone()[0] == len(tiers)


def test_cli_weights_alpha_beta_and_split(weights_run, capsys):
    store = weights_run["store"]
    assert main(["--db", str(store.path), "weights", "--run", "personas", "--target", "1",
                 "--alpha", "2", "--beta", "0.5", "--split", "all", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tiers, t, _ = weights_by_hand(weights_run["answers"], PERSONAS[0], PERSONAS, 2.0, 0.5)
    assert data["alpha"] == 2.0 and data["beta"] == 0.5
    assert dict(data["weights"]) == pytest.approx(
        {q: t[tier] for q, tier in tiers.items()})
    run_id = store.get_run("personas")["id"]
    assert store.load_weights(run_id, PERSONAS[0], 2.0, 0.5, "all") is not None


def test_cli_weights_bad_input(weights_run, capsys):
    path = str(weights_run["store"].path)
    assert main(["--db", path, "weights", "--run", "personas", "--target", "99"]) == 2
    assert "unknown persona" in capsys.readouterr().err
    assert main(["--db", path, "weights", "--run", "personas", "--target", "6",
                 "--alpha", "-1"]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_cli_weights_table(weights_run, capsys):
    assert main(["--db", str(weights_run["store"].path), "weights", "--run", "personas",
                 "--target", "6"]) == 0
    captured = capsys.readouterr()
    assert "persona 6" in captured.out
    assert "questions weighted" in captured.err

"""Similarity metrics against an independent computation, and on a stored run."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairpp_app.cli import main
from fairpp_app.core import metrics
from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.run_metrics import run_metrics

FLOOR = 1 - math.sqrt(math.log(2))
answers_st = st.lists(st.sampled_from(["A", "B", "C", None]), min_size=0, max_size=40)
parsed_st = st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=40)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def js_by_hand(p, q) -> float:
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return math.sqrt(max(0.0, (_kl(p, m) + _kl(q, m)) / 2))


def shares(answers) -> np.ndarray:
    return np.array([sum(a == x for a in answers) for x in "ABC"], dtype=float)


def similarity_by_hand(x, y) -> float | None:
    x = [a for a in x if a is not None]
    y = [a for a in y if a is not None]
    if not x or not y:
        return None
    return 1 - js_by_hand(shares(x), shares(y))


# ---- the paper's similarity ------------------------------------------------------------

@pytest.mark.parametrize("x, y", [
    (["A", "A", "B", "C"], ["A", "B", "B", "B"]),
    (["A"] * 10, ["B"] * 10),
    (["A", "B", "C"], ["C", "A", "B"]),
    (["A"] * 7 + ["C"] * 3, ["A"] * 2 + ["B"] * 5 + ["C"] * 3),
])
def test_similarity_matches_hand_computation(x, y):
    assert metrics.similarity(x, y) == pytest.approx(similarity_by_hand(x, y), abs=1e-12)


def test_disjoint_answers_hit_the_floor():
    assert metrics.similarity(["A"] * 5, ["B"] * 3) == pytest.approx(FLOOR, abs=1e-12)
    assert metrics.MIN_SIMILARITY == pytest.approx(0.16745, abs=1e-5)


def test_marginals_only_ignore_pairing():
    # Disagree on every question, same marginal shares: the paper's metric says 1.0.
    x = {"q1": "A", "q2": "B", "q3": "C"}
    y = {"q1": "B", "q2": "C", "q3": "A"}
    assert metrics.paired_similarity(x, y) == pytest.approx(1.0)
    assert metrics.agreement(x, y) == 0.0


def test_unparsed_answers_are_not_counted_as_c():
    assert list(metrics.letter_counts(["A", None, "C", None])) == [1, 0, 1]
    with_none = metrics.similarity(["A", None, None], ["A"])
    assert with_none == pytest.approx(1.0)
    assert metrics.similarity([None, None], ["A"]) is None
    assert metrics.similarity([], []) is None


def test_agreement_per_question():
    x = {"q1": "A", "q2": "B", "q3": None, "q4": "C", "q5": "A"}
    y = {"q1": "A", "q2": "C", "q3": "B", "q4": "C", "q6": "A"}
    # Common parsed questions: q1 (same), q2 (differs), q4 (same).
    assert metrics.agreement(x, y) == pytest.approx(2 / 3)
    assert metrics.paired(x, y) == (["A", "B", "C"], ["A", "C", "C"])
    assert metrics.agreement({"q1": None}, {"q1": "A"}) is None


def test_soft_similarity_and_agreement_by_hand():
    px = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    py = np.array([[0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    expected = 1 - js_by_hand(px.mean(axis=0), py.mean(axis=0))
    assert metrics.soft_similarity(px, py) == pytest.approx(expected, abs=1e-12)
    agree = np.mean([0.7 * 0.3 + 0.2 * 0.3 + 0.1 * 0.4, 0.1 * 0.2 + 0.8 * 0.2 + 0.1 * 0.6])
    assert metrics.soft_agreement(px, py) == pytest.approx(agree)
    assert metrics.soft_similarity(np.zeros((0, 3)), py) is None
    assert metrics.soft_agreement(px, py[:1]) is None


# ---- properties ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(answers_st, answers_st)
def test_similarity_bounds_symmetry_and_reference(x, y):
    s = metrics.similarity(x, y)
    expected = similarity_by_hand(x, y)
    if expected is None:
        assert s is None
        return
    assert FLOOR - 1e-12 <= s <= 1.0
    assert s == pytest.approx(expected, abs=1e-9)
    assert metrics.similarity(y, x) == pytest.approx(s, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(parsed_st, st.randoms(use_true_random=False))
def test_identical_answers_score_one(x, rnd):
    assert metrics.similarity(x, x) == 1.0
    shuffled = list(x)
    rnd.shuffle(shuffled)
    assert metrics.similarity(x, shuffled) == pytest.approx(1.0)
    # Unparsed answers sprinkled in change nothing.
    assert metrics.similarity(x + [None] * 3, x) == pytest.approx(1.0)


probs_st = st.lists(
    st.tuples(*[st.floats(0.001, 1.0)] * 3).map(lambda t: [v / sum(t) for v in t]),
    min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(probs_st, probs_st)
def test_soft_similarity_bounds(px, py):
    s = metrics.soft_similarity(np.array(px), np.array(py))
    assert FLOOR - 1e-12 <= s <= 1.0
    assert metrics.soft_similarity(np.array(py), np.array(px)) == pytest.approx(s, abs=1e-12)
    assert metrics.soft_similarity(np.array(px), np.array(px)) == pytest.approx(1.0)
    n = min(len(px), len(py))
    a = metrics.soft_agreement(np.array(px[:n]), np.array(py[:n]))
    assert 0.0 <= a <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=30))
def test_one_hot_soft_similarity_equals_hard(x):
    onehot = np.array([[1.0 if a == letter else 0.0 for letter in "ABC"] for a in x])
    y = sorted(x)[::-1] + ["A"]
    onehot_y = np.array([[1.0 if a == letter else 0.0 for letter in "ABC"] for a in y])
    assert metrics.soft_similarity(onehot, onehot_y) == pytest.approx(
        metrics.similarity(x, y), abs=1e-12)


# ---- on a stored run -------------------------------------------------------------------

@pytest.fixture
def metrics_run(store, sample, slugs):
    """Seven personas and one model answering 120 questions; some answers unparsed."""
    rng = random.Random(7)
    questions = sample(120, seed=3)
    run = store.create_run("sim", "simulate")
    answers: dict[str, dict[str, str | None]] = {}
    rows = []
    respondents = list(slugs) + ["Qwen2.5-7B-Instruct"]
    for i, r in enumerate(respondents):
        answers[r] = {}
        # Each respondent leans towards one letter, so similarities differ.
        weights = [[5, 1, 1], [1, 5, 1], [1, 1, 5]][i % 3]
        for q in questions:
            letter = rng.choices("ABC", weights=weights)[0]
            if rng.random() < 0.1:
                letter = None
            answers[r][q.id] = letter
            rows.append({"run_id": run["id"], "question_id": q.id, "respondent": r,
                         "respondent_kind": "persona" if r in slugs else "model",
                         "answer": letter, "raw_text": letter or "I would rather not say",
                         "method": "generate"})
    store.upsert_records(rows)
    return {"store": store, "answers": answers, "questions": questions,
            "respondents": respondents}


def _expected(answers, r, p):
    common = [q for q in answers[r] if answers[r][q] is not None and answers[p].get(q) is not None]
    x = [answers[r][q] for q in common]
    y = [answers[p][q] for q in common]
    return (1 - js_by_hand(shares(x), shares(y)),
            sum(a == b for a, b in zip(x, y)) / len(common))


def test_run_metrics_against_hand_computation(metrics_run, slugs):
    answers = metrics_run["answers"]
    result = run_metrics(metrics_run["store"], "sim", builtin_personas())
    assert result["respondents"] == metrics_run["respondents"]
    assert result["personas"] == list(slugs)
    for r in metrics_run["respondents"]:
        unparsed = sum(a is None for a in answers[r].values())
        assert result["counts"][r] == {
            "A": sum(a == "A" for a in answers[r].values()),
            "B": sum(a == "B" for a in answers[r].values()),
            "C": sum(a == "C" for a in answers[r].values()),
            "unparsed": unparsed}
        assert unparsed > 0
        for p in slugs:
            sim, agree = _expected(answers, r, p)
            assert result["similarity"][r][p] == pytest.approx(sim, abs=1e-12)
            assert result["agreement"][r][p] == pytest.approx(agree, abs=1e-12)
        assert result["similarity"][r][r if r in slugs else slugs[0]] is not None
    for p in slugs:
        assert result["similarity"][p][p] == pytest.approx(1.0)
        assert result["agreement"][p][p] == 1.0


def test_run_metrics_by_dimension(metrics_run, slugs):
    answers = metrics_run["answers"]
    dims = {q.id: q.dimension for q in metrics_run["questions"]}
    result = run_metrics(metrics_run["store"], "sim", builtin_personas())
    r, p = "Qwen2.5-7B-Instruct", slugs[5]
    for d in range(1, 6):
        sub = {q: a for q, a in answers[r].items() if dims[q] == d}
        ref = {q: a for q, a in answers[p].items() if dims[q] == d}
        sim, _ = _expected({"r": sub, "p": ref}, "r", "p")
        assert result["by_dimension"][r][p][str(d)] == pytest.approx(sim, abs=1e-12)


def test_run_metrics_split_filter(metrics_run):
    store = metrics_run["store"]
    test_ids = {q.id for q in metrics_run["questions"] if q.split == "test"}
    result = run_metrics(store, "sim", builtin_personas(), split="test")
    answers = metrics_run["answers"]
    for r in metrics_run["respondents"]:
        assert result["questions"][r] == len(test_ids)
        assert result["counts"][r]["unparsed"] == sum(answers[r][q] is None for q in test_ids)


def test_persona_answers_from_another_run(metrics_run, slugs, bank):
    store = metrics_run["store"]
    run = store.create_run("model-only", "simulate")
    questions = metrics_run["questions"]
    store.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": "m",
                           "respondent_kind": "model", "answer": "A", "method": "logprobs"}
                          for q in questions])
    result = run_metrics(store, "model-only", builtin_personas(), persona_run="sim")
    assert result["respondents"] == list(slugs) + ["m"]
    sim, agree = _expected({**metrics_run["answers"], "m": {q.id: "A" for q in questions}},
                           "m", slugs[0])
    assert result["similarity"]["m"][slugs[0]] == pytest.approx(sim, abs=1e-12)
    assert result["agreement"]["m"][slugs[0]] == pytest.approx(agree, abs=1e-12)


def test_soft_metrics_from_stored_probabilities(store, sample, slugs):
    questions = sample(30, seed=11)
    rng = np.random.default_rng(0)
    run = store.create_run("soft", "simulate")
    probs = {}
    rows = []
    for r in (slugs[0], "m"):
        probs[r] = rng.dirichlet([1, 1, 1], size=len(questions))
        for q, p in zip(questions, probs[r]):
            rows.append({"run_id": run["id"], "question_id": q.id, "respondent": r,
                         "answer": "ABC"[int(np.argmax(p))], "p_a": p[0], "p_b": p[1],
                         "p_c": p[2], "method": "logprobs"})
    store.upsert_records(rows)
    result = run_metrics(store, "soft", builtin_personas())
    expected = 1 - js_by_hand(probs["m"].mean(axis=0), probs[slugs[0]].mean(axis=0))
    assert result["soft_similarity"]["m"][slugs[0]] == pytest.approx(expected, abs=1e-9)
    assert result["soft_agreement"]["m"][slugs[0]] == pytest.approx(
        float(np.mean(np.sum(probs["m"] * probs[slugs[0]], axis=1))), abs=1e-9)


def test_cli_metrics_json_shape(metrics_run, slugs, capsys):
    store = metrics_run["store"]
    assert main(["--db", str(store.path), "metrics", "--run", "sim", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    respondents = metrics_run["respondents"]
    assert set(data["similarity"]) == set(respondents)
    assert set(data["agreement"]) == set(respondents)
    assert set(data["counts"]) == set(respondents)
    for r in respondents:
        assert set(data["similarity"][r]) == set(slugs)
        assert all(isinstance(v, float) for v in data["similarity"][r].values())
        assert all(FLOOR - 1e-12 <= v <= 1 for v in data["similarity"][r].values())
        assert set(data["counts"][r]) == {"A", "B", "C", "unparsed"}
        assert sum(data["counts"][r].values()) == 120
    sim, _ = _expected(metrics_run["answers"], "Qwen2.5-7B-Instruct", slugs[2])
    assert data["similarity"]["Qwen2.5-7B-Instruct"][slugs[2]] == pytest.approx(sim, abs=1e-12)


def test_cli_metrics_table(metrics_run, capsys):
    assert main(["--db", str(metrics_run["store"].path), "metrics", "--run", "sim"]) == 0
    out = capsys.readouterr().out
    assert "Qwen2.5-7B-Instruct" in out and "P6" in out and "unparsed" in out

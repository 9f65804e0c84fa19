"""Answer consistency: option order (both orders of a --debias permute run) and framing
(framing 1 against framing 2 of one problem, group and dimension), beside the distance from
uniform. The option-order test runs the real embedded model; the framing test uses
generated answers, so every pair's expected verdict is known."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from fairpp_app.cli import main
from fairpp_app.core import consistency, metrics
from fairpp_app.core.answers import OptionScores
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.jobs.simulation import run_simulation
from fairpp_app.store.database import Store

TWIN_FIELDS = ("kind", "topic", "category", "problem", "group_type", "group_name", "dimension")


def _argmax(p) -> int:
    return max(range(3), key=lambda i: p[i])


def test_order_consistency_counts_the_questions_whose_winner_stays():
    rng = np.random.default_rng(3)
    fwd = rng.dirichlet(np.ones(3), size=40)
    swap = rng.dirichlet(np.ones(3), size=40)
    swap[:10] = fwd[:10]  # a quarter kept for sure
    result = consistency.order_consistency(fwd, swap)
    kept = [_argmax(f) == _argmax(s) for f, s in zip(fwd, swap)]
    flips = [{_argmax(f), _argmax(s)} == {0, 1} for f, s in zip(fwd, swap)]
    assert result == {"share": sum(kept) / 40, "flips": sum(flips) / 40, "questions": 40}
    assert consistency.order_consistency(np.empty((0, 3)), np.empty((0, 3))) is None
    # Ties go to the first letter, as the answer of an OptionScores does.
    tie = (0.4, 0.4, 0.2)
    assert consistency.order_consistency([tie], [tie])["share"] == 1.0
    assert "ABC"[_argmax(tie)] == OptionScores(probs=tie).answer
    with pytest.raises(ValueError):
        consistency.order_consistency(fwd, swap[:3])


def test_pair_consistency_skips_unparsed_pairs():
    first = np.array([0, 0, 1, 2, -1, 0, -2])
    second = np.array([0, 1, 0, 0, 1, -1, 2])
    # Parsed pairs: (0,0) same, (0,1) flip, (1,0) flip, (2,0) neither.
    assert consistency.pair_consistency(first, second) == {"share": 0.25, "flips": 0.5,
                                                           "pairs": 4}
    assert consistency.pair_consistency([-1], [0]) is None


def test_distance_from_uniform():
    assert metrics.distance_from_uniform([1, 1, 1])[0] == pytest.approx(0.0, abs=1e-12)
    onehot = metrics.distance_from_uniform([[5, 0, 0], [0, 0.0, 2]])
    expected = 1 - metrics.js_similarity([1, 0, 0], [1, 1, 1])
    assert onehot == pytest.approx([expected, expected])
    assert np.isnan(metrics.distance_from_uniform([0, 0, 0])[0])
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(3), size=5), rng.dirichlet(np.ones(3), size=5)
    assert metrics.js_distance_rows(p, q) == pytest.approx(
        [1 - metrics.js_similarity(a, b) for a, b in zip(p, q)])


def _framing_run(store: Store, n_pairs: int = 30, seed: int = 11):
    """A run where three personas answer both framings of ``n_pairs`` (problem, group,
    dimension) triples with seeded letters (None = unparsed)."""
    rng = random.Random(seed)
    personas = builtin_personas()[:3]
    run = store.create_run("framings", "simulation", mode="text", status="finished")
    questions = store.questions("all", limit=2 * n_pairs)
    rows = []
    for q in questions:
        for p in personas:
            letter = None if rng.random() < 0.1 else rng.choice("ABC")
            rows.append({"run_id": run["id"], "question_id": q.id, "respondent": p.slug,
                         "answer": letter, "raw_text": letter or "no idea", "method": "text"})
    store.upsert_records(rows)
    return run, questions, personas, rows


def test_framing_consistency_of_generated_answers(store):
    run, questions, personas, rows = _framing_run(store)
    letters = {(r["question_id"], r["respondent"]): r["answer"] for r in rows}
    by_key: dict[tuple, dict[int, str]] = {}
    for q in questions:
        by_key.setdefault(tuple(getattr(q, f) for f in TWIN_FIELDS), {})[q.framing] = q.id
    pairs = [(k[1], k[2]) for k in by_key.values() if set(k) == {1, 2}]
    assert len(pairs) == 30  # the bank lists each question's two framings side by side
    assert sorted(store.framing_twins(run["id"])) == sorted(pairs)

    result = run_metrics(store, "framings", builtin_personas())
    for p in personas:
        got = [(letters[(a, p.slug)], letters[(b, p.slug)]) for a, b in pairs]
        parsed = [(x, y) for x, y in got if x is not None and y is not None]
        framing = result["consistency"][p.slug]["framing"]
        assert framing["pairs"] == len(parsed)
        assert framing["share"] == pytest.approx(sum(x == y for x, y in parsed) / len(parsed))
        assert framing["flips"] == pytest.approx(
            sum({x, y} == {"A", "B"} for x, y in parsed) / len(parsed))
        assert result["consistency"][p.slug]["order"] is None  # scored once: no orders
        answered = [letters[(q.id, p.slug)] for q in questions]
        counts = [answered.count(x) for x in "ABC"]
        assert result["uniform_distance"][p.slug]["shares"] == pytest.approx(
            1 - metrics.js_similarity(counts, [1, 1, 1]))
        assert result["uniform_distance"][p.slug]["probabilities"] is None

    # A split that holds only one framing of a pair has no pair.
    split_only = run_metrics(store, "framings", builtin_personas(), split="test")
    test_ids = {q.id for q in store.questions("test")}
    inside = [(a, b) for a, b in pairs if a in test_ids and b in test_ids]
    for p in personas:
        framing = split_only["consistency"][p.slug]["framing"]
        n = sum(letters[(a, p.slug)] is not None and letters[(b, p.slug)] is not None
                for a, b in inside)
        assert (framing or {"pairs": 0})["pairs"] == n


def test_question_consistency_names_the_other_framing(store):
    run, questions, personas, rows = _framing_run(store, n_pairs=2)
    letters = {(r["question_id"], r["respondent"]): r["answer"] for r in rows}
    q1, q2 = questions[0], questions[1]
    assert store.framing_twin(q1.id) == q2.id and store.framing_twin(q2.id) == q1.id
    seen = store.question_consistency(run["id"], q1.id)
    for p in personas:
        assert seen[p.slug] == {"fwd": None, "swap": None, "twin": letters[(q2.id, p.slug)],
                                "wording": None}


def test_a_version_4_database_reads_as_before(tmp_path, bank):
    path = tmp_path / "v4.db"
    with Store(path, upgrade_to=4) as old:
        old.upsert_questions(bank[:2])
        run = old.create_run("old", "simulation", mode="logprob", status="finished")
        old.db.execute(
            "INSERT INTO records (run_id, question_id, respondent, answer, p_a, p_b, p_c, "
            "method, created_at) VALUES (?, ?, 'loyal-nationals', 'B', 0.2, 0.7, 0.1, "
            "'logprob+permute', 0)", [run["id"], bank[0].id])
    with Store(path) as new:
        row = next(new.db.query("SELECT * FROM records"))
        assert (row["answer"], row["p_b"]) == ("B", 0.7)
        assert row["p_a_fwd"] is None and row["p_a_swap"] is None
        assert new.order_probabilities(run["id"]).empty
        assert {"surveys", "survey_segments", "survey_shares"} <= set(new.db.table_names())
        result = run_metrics(new, "old", builtin_personas())
        assert result["consistency"]["loyal-nationals"]["order"] is None
        assert result["similarity"]["loyal-nationals"]["loyal-nationals"] == 1.0


@pytest.mark.model
def test_permute_run_of_the_embedded_model_keeps_both_orders(store, capsys, db_path):
    personas = builtin_personas()
    config = SimulationConfig(personas="1,6", split="all", limit=4, debias="permute",
                              run="perm")
    outcome = run_simulation(store, config, personas)
    assert outcome.status == "finished" and outcome.written == 8
    frame = store.order_probabilities(store.get_run("perm")["id"])
    assert len(frame) == 8
    records = {(r["question_id"], r["respondent"]): r
               for r in store.db.query("SELECT * FROM records")}
    kept: dict[str, list[bool]] = {}
    for row in frame.itertuples():
        fwd = (row.p_a_fwd, row.p_b_fwd, row.p_c_fwd)
        swap = (row.p_a_swap, row.p_b_swap, row.p_c_swap)
        assert sum(fwd) == pytest.approx(1.0) and sum(swap) == pytest.approx(1.0)
        rec = records[(row.question_id, row.respondent)]
        # The stored answer is still the average of the two orders.
        for i, x in enumerate("abc"):
            assert rec[f"p_{x}"] == pytest.approx((fwd[i] + swap[i]) / 2)
        kept.setdefault(row.respondent, []).append(_argmax(fwd) == _argmax(swap))

    result = run_metrics(store, "perm", personas)
    for slug, verdicts in kept.items():
        order = result["consistency"][slug]["order"]
        assert order["questions"] == 4 and order["share"] == pytest.approx(np.mean(verdicts))
        assert result["consistency"][slug]["framing"]["pairs"] == 2  # 4 questions, 2 pairs
        assert result["uniform_distance"][slug]["probabilities"] is not None

    # The CLI reports it, as JSON and as a table.
    assert main(["--db", str(db_path), "metrics", "--run", "perm", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["consistency"] == json.loads(json.dumps(result["consistency"]))
    assert main(["--db", str(db_path), "metrics", "--run", "perm"]) == 0
    text = capsys.readouterr().out
    assert "answer consistency" in text and "unif p" in text


def _expected_wording(fairpp_letters, official_letters) -> dict:
    """Independent count of the wording check: same letter, and A against B."""
    both = list(zip(fairpp_letters, official_letters))
    return {"share": pytest.approx(np.mean([a == b for a, b in both])),
            "flips": pytest.approx(np.mean([{a, b} == {"A", "B"} for a, b in both])),
            "pairs": len(both)}


def test_wording_consistency_pairs_each_question_with_its_official_twin(store, bank, tmp_path):
    """An import run holding both banks (the release's rows and a fairpp export of the same
    cells), and a persona-run whose official answers take the personas' place."""
    from fairpp_app.jobs.importing import import_fairpp
    from tests.support.official_files import official_frame, pairs, write

    personas = builtin_personas()
    questions = pairs(bank, 6, seed=30)
    official, said_o = official_frame(questions, seed=30)
    fairpp, said_f = official_frame(questions, seed=31)
    fairpp["bank"] = "fairpp"
    import_fairpp(store, write(official, tmp_path / "o.csv"), personas, "both", split="test")
    import_fairpp(store, write(fairpp, tmp_path / "f.csv"), personas, "both")
    result = run_metrics(store, "both", personas)
    assert result["bank"] == "fairpp"
    for who in said_o[0]:
        assert result["consistency"][who]["wording"] == _expected_wording(
            [s[who] for s in said_f], [s[who] for s in said_o]), who

    # A split selects pairs by their question in the bank compared: fairpp's own split here.
    in_test = [i for i, q in enumerate(questions) if q.split == "test"]
    split = run_metrics(store, "both", personas, split="test")
    for who in said_o[0]:
        expected = (_expected_wording([said_f[i][who] for i in in_test],
                                      [said_o[i][who] for i in in_test]) if in_test else None)
        assert split["consistency"].get(who, {}).get("wording") == expected, who
    # Compared on the official bank, every pair is in its test split.
    official_test = run_metrics(store, "both", personas, split="test", bank="official")
    assert all(official_test["consistency"][w]["wording"]["pairs"] == 12 for w in said_o[0])

    # A persona-run's answers stand in for the personas' (both wordings read together);
    # the models' stay the run's own.
    again, said_again = official_frame(questions, seed=32)
    import_fairpp(store, write(again, tmp_path / "again.csv"), personas, "again", split="test")
    mixed = run_metrics(store, "both", personas, persona_run="again")
    for who in said_o[0]:
        source = said_again if who in {p.slug for p in personas} else said_o
        assert mixed["consistency"][who]["wording"] == _expected_wording(
            [s[who] for s in said_f], [s[who] for s in source]), who


@pytest.mark.model
def test_wording_consistency_of_the_embedded_model(db_path, capsys):
    """Personas 1 and 6, played by the embedded model, answer four fairpp test questions and
    the same four in the official wording of an imported file (two runs: a run answers one
    bank); `fairpp metrics` pairs them across the run and the persona-run."""
    from tests.support.official_files import official_frame, write

    with Store(db_path) as store:
        twins = store.questions("test", limit=4)  # the ones `--split test --limit 4` asks
    path = write(official_frame(twins, seed=40)[0], db_path.parent / "release.csv")
    db = ["--db", str(db_path)]
    assert main(db + ["import", "fairpp-csv", str(path), "--split", "test"]) == 0
    ask = ["simulate", "--personas", "1,6", "--split", "test", "--limit", "4", "--quiet"]
    assert main(db + ask + ["--run", "ours"]) == 0
    assert main(db + ask + ["--run", "theirs", "--bank", "official"]) == 0
    capsys.readouterr()

    with Store(db_path) as store:
        by_twin = {q.twin_id: q.id for q in store.questions("test", bank="official")}
        assert set(by_twin) == {q.id for q in twins}
        letters = {}
        for run in ("ours", "theirs"):
            for r in store.db.query("SELECT question_id, respondent, answer FROM records "
                                    "WHERE run_id = ?", [store.get_run(run)["id"]]):
                letters[(r["question_id"], r["respondent"])] = r["answer"]
    assert main(db + ["metrics", "--run", "ours", "--persona-run", "theirs", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for slug in ("progressive-activists", "disengaged-traditionalists"):
        got = [(letters[(q.id, slug)], letters[(by_twin[q.id], slug)]) for q in twins]
        parsed = [(a, b) for a, b in got if a is not None and b is not None]
        wording = printed["consistency"][slug]["wording"]
        assert wording["pairs"] == len(parsed) > 0
        assert wording["share"] == pytest.approx(np.mean([a == b for a, b in parsed]))
        assert wording["flips"] == pytest.approx(np.mean([{a, b} == {"A", "B"}
                                                          for a, b in parsed]))
    # One run alone holds one wording: no pair.
    assert main(db + ["metrics", "--run", "ours", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert all(c["wording"] is None for c in alone["consistency"].values())
    assert main(db + ["metrics", "--run", "ours", "--persona-run", "theirs"]) == 0
    printed = capsys.readouterr()
    assert "wording" in printed.out and "progressive-activists" in printed.out
    # The personas' answers come from the persona-run, which holds the other bank only.
    assert "only wording consistency (both banks) is reported" in printed.err


def test_framing_pairs_stay_within_a_bank(store, bank, tmp_path):
    """A run holding both banks pairs framing 1 with framing 2 of the same bank: the other
    bank's question in the other framing is another wording, not the same question."""
    from fairpp_app.jobs.importing import import_fairpp
    from tests.support.official_files import official_frame, pairs, row_ids, write

    personas = builtin_personas()
    questions = pairs(bank, 3, seed=80)
    official, _ = official_frame(questions, seed=80)
    fairpp = official.copy()
    fairpp["bank"] = "fairpp"
    import_fairpp(store, write(official, tmp_path / "o.csv"), personas, "both", split="test")
    import_fairpp(store, write(fairpp, tmp_path / "f.csv"), personas, "both")
    ids = row_ids(store, questions)
    theirs = list(zip(ids[::2], ids[1::2]))
    ours = [(a.id, b.id) for a, b in zip(questions[::2], questions[1::2])]
    assert sorted(store.framing_twins(store.get_run("both")["id"])) == sorted(ours + theirs)
    assert [store.framing_twin(a) for a, _ in theirs] == [b for _, b in theirs]
    assert [store.bank_twin(i) for i in ids] == [q.id for q in questions]
    assert [store.bank_twin(q.id) for q in questions] == ids

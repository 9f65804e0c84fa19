"""The template bank: the Fair-PP sizes (28,420 questions over 5 topics, 15 categories, 98
problems, 29 groups, 5 dimensions x 2 framings), stable ids, a deterministic split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fairpp_app.cli import main
from fairpp_app.core import questions as qb
from fairpp_app.store.database import Store


def test_bank_has_the_published_sizes(bank):
    assert len(bank) == 28_420
    assert len({q.topic for q in bank}) == 5
    assert len({(q.topic, q.category) for q in bank}) == 15
    assert len({(q.topic, q.category, q.problem) for q in bank}) == 98
    assert len({q.group_name for q in bank}) == 29
    assert len({q.group_type for q in bank}) == 6
    assert {q.dimension for q in bank} == {1, 2, 3, 4, 5}
    assert {q.framing for q in bank} == {1, 2}
    assert {q.kind for q in bank} == {"template"}


def test_group_types_hold_the_published_group_counts(bank):
    groups = {}
    for q in bank:
        groups.setdefault(q.group_type, set()).add(q.group_name)
    assert {k: len(v) for k, v in groups.items()} == {
        "Gender": 3, "Race": 5, "Religion": 5, "Sexual Orientation": 2, "Age": 4, "Minority": 10}


def test_every_combination_appears_exactly_once(bank):
    keys = Counter((q.topic, q.category, q.problem, q.group_type, q.group_name, q.dimension,
                    q.framing) for q in bank)
    assert len(keys) == 28_420
    assert set(keys.values()) == {1}


def test_question_text_and_options_are_filled_in(bank):
    for q in bank[::997]:
        assert q.group_name in q.text and q.problem in q.text
        assert "{" not in q.text + q.option_a + q.option_b
        assert q.option_a != q.option_b
        assert q.option_c == qb.wording()["option_c"]


def test_verb_follows_the_topic(bank):
    verbs = qb.wording()["topic_verbs"]
    for topic, verb in verbs.items():
        q = next(q for q in bank if q.topic == topic and q.framing == 1)
        assert f"should {verb} {q.problem}" in q.text


def test_test_split_is_exactly_the_published_size(bank):
    splits = Counter(q.split for q in bank)
    assert splits == {"test": 5_669, "train": 28_420 - 5_669}


def test_every_topic_and_dimension_is_on_both_sides(bank):
    for attr in ("topic", "dimension"):
        train = {getattr(q, attr) for q in bank if q.split == "train"}
        test = {getattr(q, attr) for q in bank if q.split == "test"}
        assert train == test == {getattr(q, attr) for q in bank}
    cells = {(q.topic, q.dimension) for q in bank}
    for split in ("train", "test"):
        assert {(q.topic, q.dimension) for q in bank if q.split == split} == cells


def test_split_is_stratified_by_topic_and_dimension(bank):
    total = Counter((q.topic, q.dimension) for q in bank)
    test = Counter((q.topic, q.dimension) for q in bank if q.split == "test")
    for cell, n in total.items():
        assert abs(test[cell] - 5_669 * n / 28_420) < 1


def test_ids_are_unique_and_stable_across_builds(bank):
    ids = [q.id for q in bank]
    assert len(set(ids)) == len(ids)
    again = qb.build_bank()
    assert [q.id for q in again] == ids
    assert [q.split for q in again] == [q.split for q in bank]
    assert again == bank


@pytest.fixture(scope="module")
def unsplit() -> list[qb.Question]:
    return list(qb.iter_template_questions())


def test_split_does_not_depend_on_input_order(bank, unsplit):
    forward = {q.id: q.split for q in qb.assign_splits(unsplit)}
    backward = {q.id: q.split for q in qb.assign_splits(unsplit[::-1])}
    assert forward == backward == {q.id: q.split for q in bank}


def test_split_depends_on_the_seed(bank, unsplit):
    other = qb.assign_splits(unsplit, seed="another-seed")
    assert Counter(q.split for q in other)["test"] == 5_669
    assert [q.split for q in other] != [q.split for q in bank]


def test_template_id_is_a_function_of_the_defining_fields(bank):
    q = bank[1234]
    assert qb.template_id(q.topic, q.category, q.problem, q.group_type, q.group_name,
                          q.dimension, q.framing) == q.id
    assert qb.scenario_id(q.id) != q.id and qb.scenario_id(q.id).startswith("s")


def test_cli_build_twice_leaves_one_copy(tmp_path, capsys):
    db = tmp_path / "built.db"
    assert main(["--db", str(db), "questions", "build", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["total"] == 28_420 and first["added"] == 28_420
    assert first["test"] == 5_669 and first["train"] == 22_751
    # Second time without --json: narration on stderr, nothing on stdout.
    assert main(["questions", "build", "--db", str(db)]) == 0
    second = capsys.readouterr()
    assert second.out == ""
    assert "28,420 template questions (0 new)" in second.err
    assert "test 5,669" in second.err
    with Store(db) as s:
        assert s.question_count() == 28_420
        assert s.db.execute("SELECT count(DISTINCT id) FROM questions").fetchone()[0] == 28_420

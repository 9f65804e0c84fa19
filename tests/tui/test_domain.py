"""The domain modules behind the TUI (browse, positioning, userpersonas): no textual in them,
and the numbers they give match the store and the CLI's functions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fairpp_app.core import user_personas
from fairpp_app.core.errors import PersonaFileError, UsageError
from fairpp_app.core.personas import Persona, builtin_personas, load_personas
from fairpp_app.jobs import positioning
from fairpp_app.store import browse
from tests.support.tui_data import MODEL, RUN


def test_domain_modules_do_not_import_textual():
    code = ("import sys, fairpp_app.store.browse, fairpp_app.jobs.positioning, fairpp_app.core.user_personas; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_filter_sql_matches_a_python_filter(store, bank):
    flt = browse.QuestionFilter(topic=bank[0].topic, dimension=2, framing=1, split="train")
    expected = [q.id for q in bank if q.topic == flt.topic and q.dimension == 2
                and q.framing == 1 and q.split == "train"]
    assert browse.count(store, flt) == len(expected)
    assert [r["id"] for r in browse.page(store, flt, 0, 50)] == expected[:50]
    assert [r["id"] for r in browse.page(store, flt, 50, 50)] == expected[50:100]
    assert browse.position(store, flt, expected[73]) == 73
    assert browse.position(store, flt, bank[1].id) is None or bank[1].id in expected
    assert browse.neighbour(store, flt, expected[10], 1) == expected[11]
    assert browse.neighbour(store, flt, expected[10], -1) == expected[9]
    assert browse.neighbour(store, flt, expected[-1], 1) is None
    assert browse.neighbour(store, flt, expected[0], -1) is None


def test_free_text_is_literal(store):
    assert browse.count(store, browse.QuestionFilter(text="100%")) == 0
    assert browse.count(store, browse.QuestionFilter(text="_")) == 0
    some = store.questions(limit=1)[0]
    assert browse.count(store, browse.QuestionFilter(text=some.id)) == 1
    n = browse.count(store, browse.QuestionFilter(text="housing"))
    assert 0 < n < 28420


def test_next_matching_and_majority(synthetic):
    store, run, qs = synthetic
    flt = browse.QuestionFilter(split="test")
    assert browse.next_matching(store, flt, qs[0].id, run["id"], "disagree") == qs[2].id
    assert browse.next_matching(store, flt, qs[2].id, run["id"], "disagree") == qs[5].id
    assert browse.next_matching(store, flt, None, run["id"], "unparsed") == qs[4].id
    records = browse.question_records(store, run["id"], qs[5].id)
    assert [r["respondent_kind"] for r in records][-1] == "model"
    assert browse.majority(records) == ("A", {"A": 3, "B": 2, "C": 2})
    assert browse.majority(browse.question_records(store, run["id"], qs[2].id))[0] == "A"
    assert browse.question_tier(records, "disengaged-traditionalists") == 6
    with pytest.raises(ValueError):
        browse.next_matching(store, flt, None, run["id"], "nonsense")


def test_positioning_agrees_with_run_metrics(synthetic):
    from fairpp_app.jobs.run_metrics import run_metrics

    store, _, _ = synthetic
    personas = builtin_personas()
    pos = positioning.position_run(store, RUN, personas, "all", "disengaged-traditionalists")
    metrics = run_metrics(store, RUN, personas)
    assert pos.similarity == metrics["similarity"]
    assert pos.respondents[-1] == MODEL
    assert sum(t["count"] for t in pos.tiers) == 240 - sum(
        1 for qid, by in _persona_answers(store).items()
        if by.get("disengaged-traditionalists") is None)
    assert sum(t["weight"] for t in pos.tiers) == pytest.approx(1.0)
    for shares in pos.shares["civic-pragmatists"].values():
        assert sum(shares) == pytest.approx(1.0)
    header, rows = pos.table("agreement")
    assert header[0] == "respondent" and len(rows) == 8
    with pytest.raises(ValueError):
        pos.table("nope")


def _persona_answers(store):
    from fairpp_app.jobs.run_metrics import persona_answers

    return persona_answers(store, RUN, [p.slug for p in builtin_personas()], "all")


def test_pca_separates_what_marginals_cannot():
    answers = {"x": {"q1": "A", "q2": "B"}, "y": {"q1": "B", "q2": "A"},
               "z": {"q1": "A", "q2": "B"}}
    matrix, qids = positioning.one_hot(answers, ["x", "y", "z"])
    assert qids == ["q1", "q2"] and matrix.shape == (3, 6)
    coords, explained = positioning.pca_2d(matrix)
    assert np.allclose(coords[0], coords[2]) and not np.allclose(coords[0], coords[1])
    assert explained[0] == pytest.approx(1.0)
    # Unparsed is no option at all, not C.
    matrix, _ = positioning.one_hot({"x": {"q": None}}, ["x"])
    assert matrix.sum() == 0


def test_user_personas_round_trip_and_refusals():
    p = Persona(8, "night-nurses", "Night nurses", "You work nights in a hospital.", False)
    path = user_personas.save_persona(p)
    assert [q.slug for q in load_personas()][-1] == "night-nurses"
    with pytest.raises(PersonaFileError):
        user_personas.save_persona(p)  # same number again
    with pytest.raises(PersonaFileError):
        user_personas.save_persona(Persona(9, "loyal-nationals", "x", "y"))
    user_personas.save_persona(Persona(8, "night-nurses", "Nurses", "Nights.", False), replaces=8)
    assert load_personas()[-1].name == "Nurses"
    with pytest.raises(UsageError, match="built in"):
        user_personas.delete_persona(3)
    user_personas.delete_persona(8)
    assert len(load_personas()) == 7 and path.exists()

"""Human reference data: generated survey files imported, checked row by row, and compared
with a run's respondents (similarity, agreement, match, intervals from the sample sizes)."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from fairpp_app.cli import main
from fairpp_app.core import metrics
from fairpp_app.core.errors import ImportFileError, UnknownPersonaError, UsageError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.jobs.survey import compare, import_survey, parse_map
from tests.support.tui_data import RUN, insert_synthetic_run

COLUMNS = ("segment", "persona", "question_id", "topic", "category", "problem", "group_type",
           "group", "dimension", "framing", "share_a", "share_b", "share_c", "n")


def _write(path, rows, columns=COLUMNS):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def _generated(questions, seed: int = 5) -> list[dict]:
    """Two segments over the questions (by id, and the first few by their fields) and two
    (topic, dimension) cells, with seeded shares rounded as a published table would be."""
    rng = np.random.default_rng(seed)
    rows = []
    for segment, persona in (("Loyal Nationals", "5"), ("Established Liberals", "established-liberals")):
        for i, q in enumerate(questions):
            shares = np.round(rng.dirichlet([2.0, 2.0, 1.0]), 3)
            item = ({"topic": q.topic, "category": q.category, "problem": q.problem,
                     "group_type": q.group_type, "group": q.group_name,
                     "dimension": q.dimension, "framing": q.framing} if i < 3
                    else {"question_id": q.id})
            rows.append({"segment": segment, "persona": persona, **item,
                         "share_a": shares[0], "share_b": shares[1],
                         "share_c": round(1 - shares[0] - shares[1], 3),
                         "n": int(rng.integers(20, 400))})
        for topic, dimension in {(q.topic, q.dimension) for q in questions[:2]}:
            rows.append({"segment": segment, "persona": persona, "topic": topic,
                         "dimension": dimension, "share_a": 0.5, "share_b": 0.3, "share_c": 0.2,
                         "n": 150})
    return rows


@pytest.fixture
def surveyed(store, tmp_path):
    run, questions = insert_synthetic_run(store, n=30)
    path = _write(tmp_path / "survey.csv", _generated(questions[:20]))
    report = import_survey(store, path, "bsa", builtin_personas())
    return store, questions, path, report


def test_import_stores_every_row_and_a_second_import_replaces_the_first(surveyed):
    store, questions, path, report = surveyed
    assert report.segments == {"Loyal Nationals": "loyal-nationals",
                               "Established Liberals": "established-liberals"}
    cells = len({(q.topic, q.dimension) for q in questions[:2]})
    assert (report.questions, report.cells) == (40, 2 * cells)
    survey = store.get_survey("bsa")
    rows = store.survey_shares(survey["id"])
    assert len(rows) == report.rows == 40 + 2 * cells
    # Rows named by their fields found their question; shares were normalised to sum to 1.
    assert {r["question_id"] for r in rows if r["question_id"]} == {q.id for q in questions[:20]}
    assert all(r["share_a"] + r["share_b"] + r["share_c"] == pytest.approx(1.0) for r in rows)
    import_survey(store, path, "bsa", builtin_personas())
    assert len(store.survey_shares(store.get_survey("bsa")["id"])) == len(rows)
    assert store.db.execute("SELECT count(*) FROM surveys").fetchone()[0] == 1


def test_comparison_matches_its_definitions(surveyed):
    store, questions, _, _ = surveyed
    personas = builtin_personas()
    result = compare(store, RUN, "bsa", personas)
    assert result["respondents"][:7] == [p.slug for p in personas]
    items = store.survey_shares(store.get_survey("bsa")["id"])
    frame = store.record_frame(store.get_run(RUN)["id"])
    for r in ("disengaged-battlers", "tiny-model"):
        mine = frame[frame["respondent"] == r]
        letter = dict(zip(mine["question_id"], mine["answer"]))
        for segment in ("Loyal Nationals", "Established Liberals"):
            human, own = [], []
            for item in (i for i in items if i["segment"] == segment):
                h = [item["share_a"], item["share_b"], item["share_c"]]
                if item["question_id"]:
                    a = letter.get(item["question_id"])
                    if not isinstance(a, str):
                        continue
                    v = [float(a == x) for x in "ABC"]
                else:
                    cell = mine[(mine["topic"] == item["topic"])
                                & (mine["dimension"] == item["dimension"])]["answer"].dropna()
                    v = [float((cell == x).mean()) for x in "ABC"]
                human.append(h)
                own.append(v)
            human, own = np.array(human), np.array(own)
            got = result["comparison"][r][segment]
            assert got["items"] == len(human)
            assert got["similarity"] == pytest.approx(
                metrics.js_similarity(human.mean(axis=0), own.mean(axis=0)))
            assert got["agreement"] == pytest.approx(
                np.mean(human.argmax(axis=1) == own.argmax(axis=1)))
            assert got["match"] == pytest.approx(np.mean((human * own).sum(axis=1)))
            for key in ("similarity", "agreement", "match"):
                lo, hi = got[f"{key}_ci"]
                assert 0 <= lo <= hi <= 1
    # The seed is fixed: the same call gives the same intervals.
    assert compare(store, RUN, "bsa", personas) == result
    segment = result["segments"][0]
    assert segment["persona"] == "loyal-nationals" and segment["items"] > 20
    assert result["closest_persona"]["Loyal Nationals"] in [p.slug for p in personas]


def test_intervals_narrow_as_samples_grow(store, tmp_path):
    _, questions = insert_synthetic_run(store, n=30)
    rows = _generated(questions[20:30], seed=9)
    widths = []
    for factor in (1, 100):
        scaled = [{**r, "n": r["n"] * factor} for r in rows]
        import_survey(store, _write(tmp_path / f"x{factor}.csv", scaled), f"x{factor}",
                      builtin_personas())
        got = compare(store, RUN, f"x{factor}", builtin_personas())["comparison"]
        widths.append([got[r][s][f"{k}_ci"][1] - got[r][s][f"{k}_ci"][0]
                       for r in got for s in got[r] for k in ("similarity", "match")])
    assert np.all(np.array(widths[1]) < np.array(widths[0]))


def test_a_segment_of_one_person_per_question_is_the_papers_similarity(store, tmp_path):
    """One person answering each question (n=1, one-hot shares) is a respondent: the
    comparison then equals the paper's similarity and agreement to that respondent."""
    _, questions = insert_synthetic_run(store, n=30)
    frame = store.record_frame(store.get_run(RUN)["id"])
    target = frame[frame["respondent"] == "civic-pragmatists"].dropna(subset=["answer"])
    rows = [{"segment": "one", "persona": "2", "question_id": qid,
             **{f"share_{x.lower()}": float(a == x) for x in "ABC"}, "n": 1}
            for qid, a in zip(target["question_id"], target["answer"])]
    import_survey(store, _write(tmp_path / "one.csv", rows), "one", builtin_personas())
    ref = compare(store, RUN, "one", builtin_personas())
    paper = run_metrics(store, RUN, builtin_personas())
    for r in ref["respondents"]:
        got = ref["comparison"][r]["one"]
        assert got["similarity"] == pytest.approx(paper["similarity"][r]["civic-pragmatists"])
        assert got["agreement"] == pytest.approx(paper["agreement"][r]["civic-pragmatists"])


BAD = [
    ("missing", lambda rows: rows, ("segment", "question_id", "share_a", "share_b", "n"),
     "missing column(s) share_c"),
    ("sum", lambda rows: rows[:2] + [{**rows[2], "share_a": 0.9}], COLUMNS,
     "row 3: shares sum to"),
    ("question", lambda rows: rows[:4] + [{**rows[4], "question_id": "t000nosuchid"}], COLUMNS,
     "row 5: unknown question 't000nosuchid'"),
    ("fields", lambda rows: [{**rows[0], "problem": "free ponies"}] + rows[1:], COLUMNS,
     "row 1: unknown question: no question of topic"),
    ("negative", lambda rows: rows[:1] + [{**rows[1], "n": -5}], COLUMNS,
     "row 2: n '-5' is not a positive whole number"),
    ("persona", lambda rows: rows[:6] + [{**rows[6], "persona": "99"}], COLUMNS,
     "row 7: unknown persona '99'"),
    ("percent", lambda rows: [{**rows[0], "share_a": 40, "share_b": 40, "share_c": 20}]
     + rows[1:], COLUMNS, "row 1: shares 40, 40, 20 must lie between 0 and 1"),
    ("duplicate", lambda rows: rows + [rows[3]], COLUMNS,
     "the same segment and item as row 4"),
]


@pytest.mark.parametrize("case,edit,columns,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_names_the_row_and_imports_nothing(surveyed, tmp_path, case, edit, columns,
                                                      message):
    store, questions, good, _ = surveyed
    before = store.survey_shares(store.get_survey("bsa")["id"])
    rows = _generated(questions[20:30], seed=2)
    path = _write(tmp_path / f"{case}.csv", edit(rows), columns)
    with pytest.raises(ImportFileError) as exc:
        import_survey(store, path, "bsa", builtin_personas())
    assert message in str(exc.value) and (case == "missing" or "nothing was imported" in str(exc.value))
    # The survey of that name is as it was.
    assert store.survey_shares(store.get_survey("bsa")["id"]) == before


def test_segments_need_a_persona(store, tmp_path):
    _, questions = insert_synthetic_run(store, n=5)
    rows = [{k: v for k, v in r.items() if k != "persona"} for r in _generated(questions[:3])]
    path = _write(tmp_path / "nopersona.csv", rows)
    with pytest.raises(ImportFileError, match="segment 'Loyal Nationals' has no persona"):
        import_survey(store, path, "s", builtin_personas())
    mapping = parse_map(["Loyal Nationals=5", "Established Liberals=4"], builtin_personas())
    assert import_survey(store, path, "s", builtin_personas(), mapping).segments == {
        "Loyal Nationals": "loyal-nationals", "Established Liberals": "established-liberals"}
    with pytest.raises(ImportFileError, match="--map names segment 'Nobody'"):
        import_survey(store, path, "s", builtin_personas(), {**mapping, "Nobody": "x"})
    with pytest.raises(UsageError, match="SEGMENT=PERSONA"):
        parse_map(["Loyal Nationals"], builtin_personas())
    with pytest.raises(UnknownPersonaError):
        parse_map(["Loyal Nationals=12"], builtin_personas())


def test_cli_imports_and_compares(store, db_path, tmp_path, capsys):
    _, questions = insert_synthetic_run(store, n=12)
    rows = [{k: v for k, v in r.items() if k != "persona"} for r in _generated(questions[:10])]
    path = _write(tmp_path / "s.csv", rows)
    db = ["--db", str(db_path)]
    assert main([*db, "import", "survey", str(path), "--name", "bsa", "--map",
                 "Loyal Nationals=5", "--map", "Established Liberals=4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(rows)
    assert main([*db, "metrics", "--run", RUN, "--reference", "bsa", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reference"]["comparison"] == json.loads(json.dumps(
        compare(store, RUN, "bsa", builtin_personas())["comparison"]))
    assert main([*db, "metrics", "--run", RUN, "--reference", "bsa"]) == 0
    text = capsys.readouterr().out
    assert "similarity to human segments" in text and "Loyal Nationals (P5)" in text
    bad = _write(tmp_path / "bad.csv", [{**rows[0], "n": 0}])
    assert main([*db, "import", "survey", str(bad), "--name", "b", "--map",
                 "Loyal Nationals=5"]) == 2
    assert "row 1: n '0' is not a positive whole number" in capsys.readouterr().err
    assert main([*db, "metrics", "--run", RUN, "--reference", "nope"]) == 4
    assert "no survey named 'nope'; surveys here: bsa" in capsys.readouterr().err


def test_rows_count_like_the_importer(store, tmp_path):
    """Row numbers count from the first row under the header, as `fairpp import` does."""
    _, questions = insert_synthetic_run(store, n=3)
    rows = _generated(questions[:1])
    rng = random.Random(0)
    k = rng.randrange(len(rows))
    rows[k] = {**rows[k], "segment": ""}
    with pytest.raises(ImportFileError, match=f"row {k + 1}: empty segment"):
        import_survey(store, _write(tmp_path / "e.csv", rows), "e", builtin_personas())


def test_chunked_draws_give_the_same_intervals(surveyed, monkeypatch):
    """A survey too big to draw at once is drawn in chunks: the intervals stay put."""
    from fairpp_app.jobs import survey

    store = surveyed[0]
    whole = compare(store, RUN, "bsa", builtin_personas())["comparison"]
    monkeypatch.setattr(survey, "CHUNK", 3 * 30 * 7)  # 7 draws of the ~30 items per chunk
    chunked = compare(store, RUN, "bsa", builtin_personas())["comparison"]
    for r in whole:
        for s in whole[r]:
            assert chunked[r][s]["similarity"] == whole[r][s]["similarity"]
            for k in ("similarity_ci", "match_ci"):
                assert chunked[r][s][k] == pytest.approx(whole[r][s][k], abs=0.03)


def test_the_readme_example_imports(store, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```\nsegment,persona,question_id", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.csv"
    path.write_text("segment,persona,question_id" + block)
    report = import_survey(store, path, "readme", builtin_personas())
    assert (report.questions, report.cells) == (2, 1)
    assert report.segments == {"Progressive Activists": "progressive-activists",
                               "Loyal Nationals": "loyal-nationals"}

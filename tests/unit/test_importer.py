"""Importing the official Fair-PP layout into a real database.

That layout has one row per question (Topic, Problem Category, Specific Problem, Group Type,
Group, Perspective, Option, Question), a ``{source}_role_{N}_answer`` column per persona N and
a ``{model}_answer`` column per model respondent. Its rows become questions of the
``official`` bank, each linked (``twin_id``) to the fairpp template question of the same
fields and pole; the fixtures' files are worded as fairpp's bank, so ``official_ids`` maps the
fixtures' fairpp ids onto the imported questions. ``test_official_import`` covers files worded
and laid out as the release is.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fairpp_app.cli import main
from fairpp_app.core import questions as qb
from fairpp_app.core.errors import ImportFileError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.importing import import_fairpp, parse_answer, parse_dimension
from fairpp_app.jobs.official_layout import infer_framing
from fairpp_app.store.database import Store

MODEL = "Qwen2.5-7B-Instruct"


def records(store: Store, run: str) -> dict[tuple[str, str], dict]:
    run_id = store.get_run(run)["id"]
    return {(r["question_id"], r["respondent"]): r for r in store.db.query(
        "SELECT * FROM records WHERE run_id = ?", [run_id])}


def official_ids(store: Store) -> dict[str, str]:
    """fairpp question id -> the official question imported for it (templates by their
    twin, scenarios by their parent's twin)."""
    out = {}
    for q in store.questions(bank="official"):
        if q.twin_id:
            out[q.twin_id] = q.id
    for q in store.questions(bank="official", split="scenario"):
        twin = store.get_question(q.parent_id).twin_id
        if twin:
            out[qb.scenario_id(twin)] = q.id
    return out


def assert_answers(store, run, answers):
    got = records(store, run)
    ids = official_ids(store)
    expected = {(ids.get(qid, qid), r): letter for qid, by in answers.items()
                for r, letter in by.items()}
    assert {k: v["answer"] for k, v in got.items()} == expected


def test_official_csv_imports(store, sample, slugs, write_fairpp_file):
    questions = sample(60, seed=1)
    path, answers = write_fairpp_file(questions, "official.csv")
    report = import_fairpp(store, path, builtin_personas())
    assert report.run == "official"
    assert (report.rows, report.matched, report.added, report.scenarios) == (60, 0, 60, 0)
    assert report.records == 60 * 8 and report.unparsed == 0
    assert report.problems == [] and report.conflicts == []
    assert report.respondents == list(slugs) + [MODEL]
    assert report.splits == {"official/train": 60}  # nothing in the file names a split
    assert store.question_count() == 28_420
    assert store.question_count(bank="official") == 60
    assert_answers(store, "official", answers)
    got = records(store, "official")
    q = store.get_question(official_ids(store)[questions[0].id])
    persona = got[(q.id, slugs[3])]
    assert persona["respondent_kind"] == "persona"
    assert persona["raw_text"] == f"{persona['answer']}. because reasons 4"
    assert persona["method"] == "import"
    model = got[(q.id, MODEL)]
    assert model["respondent"] == MODEL and model["respondent_kind"] == "model"
    run = store.get_run("official")
    assert run["kind"] == "import" and run["status"] == "finished"
    assert store.events(run_id=run["id"])[-1]["payload"]["records"] == 480


def test_index_column_and_float_perspective(store, sample, write_fairpp_file):
    questions = sample(40, seed=2)
    path, answers = write_fairpp_file(questions, "indexed.csv", index_column=True,
                                      float_perspective=True)
    header = path.read_text("utf-8").splitlines()[0]
    assert header.startswith(",Topic,")
    report = import_fairpp(store, path, builtin_personas())
    assert report.problems == [] and report.matched == 0 and report.added == 40
    assert_answers(store, "indexed", answers)


def test_parquet_with_float_perspective_and_index(store, sample, write_fairpp_file):
    questions = sample(40, seed=3)
    path, answers = write_fairpp_file(questions, "official.parquet", float_perspective=True,
                                      index_column=True)
    assert pd.read_parquet(path)["Perspective"].dtype == float
    report = import_fairpp(store, path, builtin_personas(), run_name="pq")
    assert report.problems == [] and report.added == 40
    assert report.records == 40 * 8
    assert_answers(store, "pq", answers)


def test_reimport_duplicates_nothing(store, sample, write_fairpp_file):
    path, answers = write_fairpp_file(sample(50, seed=4), "again.csv")
    import_fairpp(store, path, builtin_personas())
    before = store.record_count(), store.question_count(), len(store.list_runs())
    second = import_fairpp(store, path, builtin_personas())
    assert (second.records, second.unchanged, second.matched, second.added) == (0, 400, 50, 0)
    assert (store.record_count(), store.question_count(), len(store.list_runs())) == before
    assert before[0] == 400
    assert_answers(store, "again", answers)


def test_framing_column_wins_over_text(store, sample, make_fairpp_frame, tmp_path):
    questions = sample(20, seed=5)
    frame, answers = make_fairpp_frame(questions, framing_column=True)
    frame["Question"] = "Which is fairer?"  # no hint in the text: the column decides
    path = tmp_path / "framed.csv"
    frame.drop(columns=["Option"]).to_csv(path, index=False)
    report = import_fairpp(store, path, builtin_personas())
    assert report.added == 20 and report.problems == []
    assert_answers(store, "framed", answers)


def test_framing_inferred_from_bank_wording(bank):
    for q in bank[::37]:
        assert infer_framing(None, None, None, q.text) == (q.framing, False)


def test_field_case_is_tolerated(store, sample, make_fairpp_frame, tmp_path):
    questions = sample(10, seed=6)
    frame, answers = make_fairpp_frame(questions)
    for col in ("Topic", "Problem Category", "Specific Problem", "Group Type", "Group"):
        frame[col] = frame[col].str.upper()
    path = tmp_path / "upper.csv"
    frame.to_csv(path, index=False)
    report = import_fairpp(store, path, builtin_personas())
    assert report.added == 10 and report.problems == []
    assert {q.topic for q in store.questions(bank="official")} <= set(qb.taxonomy()["topics"])
    assert_answers(store, "upper", answers)


def test_malformed_rows_are_reported_and_the_rest_imported(store, sample, make_fairpp_frame,
                                                         tmp_path, slugs):
    questions = sample(12, seed=7)
    frame, answers = make_fairpp_frame(questions)
    frame = frame.astype(object)
    frame.loc[2, "Group"] = ""                            # row 3
    frame.loc[4, "Perspective"] = "three.four"            # row 5
    frame.loc[6, "gpt-4o-mini_role_2_answer"] = 7         # row 7: one bad cell
    frame.loc[8, "Perspective"] = "3.9"                   # row 9: no dimension 9
    frame.loc[9, "gpt-4o-mini_role_3_answer"] = None      # row 10: unparsed, raw kept
    frame.loc[9, "gpt-4o-mini_role_3"] = "N/A"
    frame.loc[10, "gpt-4o-mini_role_4_answer"] = None     # row 11: no answer at all
    frame.loc[10, "gpt-4o-mini_role_4"] = None
    frame.loc[11, f"{MODEL}_answer"] = "maybe"            # row 12
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    report = import_fairpp(store, path, builtin_personas())
    problems = report.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("row 3:") and "Group" in problems[0]
    assert problems[1].startswith("row 5:") and "Perspective" in problems[1]
    assert problems[2].startswith("row 7, column gpt-4o-mini_role_2_answer:")
    assert problems[3].startswith("row 9:") and "dimension 9" in problems[3]
    assert problems[4].startswith(f"row 12, column {MODEL}_answer:")
    assert store.question_count(bank="official") == 9
    bad_rows = {questions[2].id, questions[4].id, questions[8].id}
    expected = {qid: dict(by) for qid, by in answers.items() if qid not in bad_rows}
    del expected[questions[6].id][slugs[1]]
    expected[questions[9].id][slugs[2]] = None
    del expected[questions[10].id][slugs[3]]
    del expected[questions[11].id][MODEL]
    assert_answers(store, "broken", expected)
    assert report.records == sum(len(by) for by in expected.values())
    assert report.unparsed == 1
    unparsed = records(store, "broken")[(official_ids(store)[questions[9].id], slugs[2])]
    assert unparsed["answer"] is None and unparsed["raw_text"] == "N/A"


def test_missing_required_column(tmp_path, store, sample, make_fairpp_frame):
    frame, _ = make_fairpp_frame(sample(3))
    path = tmp_path / "nogroup.csv"
    frame.drop(columns=["Group", "Perspective"]).to_csv(path, index=False)
    with pytest.raises(ImportFileError) as exc:
        import_fairpp(store, path, builtin_personas())
    assert "Group" in str(exc.value) and "Perspective" in str(exc.value)
    assert store.record_count() == 0 and store.list_runs() == []


def test_no_answer_columns(tmp_path, store, sample, make_fairpp_frame):
    frame, _ = make_fairpp_frame(sample(3), models=())
    path = tmp_path / "noanswers.csv"
    frame[[c for c in frame.columns if not c.endswith("_answer")]].to_csv(path, index=False)
    with pytest.raises(ImportFileError):
        import_fairpp(store, path, builtin_personas())


def test_undefined_persona_column(tmp_path, store, sample, make_fairpp_frame):
    frame, _ = make_fairpp_frame(sample(3))
    frame["gpt-4o-mini_role_9_answer"] = 0
    path = tmp_path / "nine.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ImportFileError) as exc:
        import_fairpp(store, path, builtin_personas())
    assert "persona 9" in str(exc.value)


def test_missing_file(tmp_path, store):
    with pytest.raises(ImportFileError) as exc:
        import_fairpp(store, tmp_path / "absent.csv", builtin_personas())
    assert "absent.csv" in str(exc.value)


def test_unreadable_parquet(tmp_path, store):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ImportFileError):
        import_fairpp(store, path, builtin_personas())


def test_cli_import_errors_exit_2(tmp_path, db_path, capsys):
    assert main(["--db", str(db_path), "import", "fairpp-csv", str(tmp_path / "absent.csv")]) == 2
    err = capsys.readouterr().err
    assert "absent.csv" in err and "Traceback" not in err


def test_cli_import_json(db_path, sample, write_fairpp_file, capsys):
    path, answers = write_fairpp_file(sample(25, seed=8), "cli.csv")
    assert main(["--db", str(db_path), "import", "fairpp-csv", str(path), "--run", "mine",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run"] == "mine" and report["records"] == 200 and report["added"] == 25
    with Store(db_path) as s:
        assert_answers(s, "mine", answers)


def test_import_into_a_non_import_run_is_refused(store, sample, write_fairpp_file):
    store.create_run("sim", "simulate")
    path, _ = write_fairpp_file(sample(3), "sim.csv")
    with pytest.raises(ImportFileError):
        import_fairpp(store, path, builtin_personas())
    assert store.record_count() == 0


def test_import_into_an_empty_database_builds_the_bank(tmp_path, sample, write_fairpp_file):
    path, answers = write_fairpp_file(sample(5, seed=9), "fresh.csv")
    with Store(tmp_path / "fresh.db") as s:
        report = import_fairpp(s, path, builtin_personas())
        assert s.question_count() == 28_420
        assert report.added == 5
        assert_answers(s, "fresh", answers)


def test_questions_outside_the_bank_are_added(store, sample, make_fairpp_frame, tmp_path):
    frame, _ = make_fairpp_frame(sample(3, seed=10))
    frame.loc[0, "Specific Problem"] = "moon rocks"
    frame.loc[0, "Question"] = "Thinking about how men should obtain moon rocks, which is fairer?"
    frame.loc[1, "Topic"] = "fair weather"
    path = tmp_path / "extra.csv"
    frame.to_csv(path, index=False)
    report = import_fairpp(store, path, builtin_personas())
    assert report.added == 3 and report.matched == 0 and report.problems == []
    assert store.question_count() == 28_420
    added = store.questions(where="kind = 'imported'", bank="official")
    assert len(added) == 2 and all(q.twin_id is None for q in added)
    moon = next(q for q in added if q.problem == "moon rocks")
    assert moon.text == frame.loc[0, "Question"]
    assert moon.id.startswith("o")
    assert records(store, "extra")[(moon.id, MODEL)]["answer"] is not None
    # Importing again matches the added questions instead of adding them twice.
    again = import_fairpp(store, path, builtin_personas())
    assert again.added == 0 and again.matched == 3
    assert store.question_count(bank="official") == 3


def test_scenario_layout_creates_linked_scenario_questions(store, sample, write_fairpp_file):
    questions = sample(15, seed=11)
    path, answers = write_fairpp_file(questions, "scenarios.csv", scenario=True)
    report = import_fairpp(store, path, builtin_personas())
    # Each row's template row comes with it (the release's scenarios are of test questions).
    assert report.scenarios == 15 and report.added == 15 and report.problems == []
    assert store.question_count() == 28_420 and store.question_count("scenario") == 0
    assert store.question_count("scenario", bank="official") == 15
    assert store.question_count("test", bank="official") == 15
    ids = official_ids(store)
    for q in questions:
        s = store.get_question(ids[qb.scenario_id(q.id)])
        assert s.kind == "scenario" and s.split == "scenario" and s.bank == "official"
        parent = store.get_question(s.parent_id)
        assert parent.twin_id == q.id and parent.text == q.text
        assert s.option_a.startswith("Scenario A") and s.option_c.startswith("Scenario C")
        assert s.text.startswith("Which scenario")
        assert (s.topic, s.problem, s.group_name, s.dimension, s.framing) == (
            q.topic, q.problem, q.group_name, q.dimension, q.framing)
    assert_answers(store, "scenarios", answers)
    again = import_fairpp(store, path, builtin_personas())
    assert again.scenarios == 0 and again.matched == 15 and again.records == 0
    assert store.question_count("scenario", bank="official") == 15


def test_scenario_row_without_options_is_reported(store, sample, make_fairpp_frame, tmp_path):
    frame, _ = make_fairpp_frame(sample(3, seed=12), scenario=True)
    frame.loc[1, "Option_B"] = None
    path = tmp_path / "scen.csv"
    frame.to_csv(path, index=False)
    report = import_fairpp(store, path, builtin_personas())
    assert len(report.problems) == 1 and report.problems[0].startswith("row 2:")
    assert report.scenarios == 2 and store.question_count("scenario", bank="official") == 2


@pytest.mark.parametrize("value, letter", [
    (0, "A"), (1, "B"), (2, "C"), ("0", "A"), ("2.0", "C"), (1.0, "B"), ("b", "B"),
    (" C ", "C"), (None, None), ("", None), (float("nan"), None)])
def test_parse_answer(value, letter):
    assert parse_answer(value) == letter


@pytest.mark.parametrize("value", [3, "D", "-1", "yes"])
def test_parse_answer_rejects(value):
    with pytest.raises(ValueError):
        parse_answer(value)


@pytest.mark.parametrize("value, dim", [("3.4", 4), (3.4, 4), ("1.1", 1), (5.5, 5), ("2", 2)])
def test_parse_dimension(value, dim):
    assert parse_dimension(value) == dim


@pytest.mark.parametrize("value", ["", None, "3.0", "3.6", "a.b", "3.4.1"])
def test_parse_dimension_rejects(value):
    with pytest.raises(ValueError):
        parse_dimension(value)

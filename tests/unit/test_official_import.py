"""Importing files laid out as the official release is, worded by these tests.

The layout facts follow the authors' generation notebook: an unnamed index column, then
Topic, Problem Category, Specific Problem, Group Type, Group, a float ``Perspective``, the
``Option`` pole (the dimension's first pole for question 1, its second for question 2) and a
``Question`` that carries its options ("...?\\nA. ...\\nB. ...\\nC. N/A"), question 2 opening
with "Assuming"; then the raw answers ``gpt-4o-mini_role_N``, the parsed ones
``gpt-4o-mini_role_N_answer`` (0/1/2) and one ``{model}_answer`` column per model. The
scenario file adds ``Scenario Reconstruction``, ``Option_A/B/C``, ``simulation_question``
(the options, then a question and an answer instruction) and ``gpt-4o-mini_role_N_simulation``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from fairpp_app.cli import main
from fairpp_app.core import questions as qb
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import TEMPLATE, build_prompt
from fairpp_app.jobs.importing import import_fairpp
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.store.database import Store
from tests.support.official_files import (
    MODELS,
    SCENARIO_ASK,
    SCENARIO_INSTRUCTION,
    SOURCE,
    official_frame,
    pairs,
    row_ids,
    wording,
    write,
)


def stored(store: Store, run: str) -> dict[tuple[str, str], dict]:
    run_id = store.get_run(run)["id"]
    return {(r["question_id"], r["respondent"]): r for r in store.db.query(
        "SELECT * FROM records WHERE run_id = ?", [run_id])}


def test_every_row_is_its_own_question_with_the_file_s_wording_and_split(
        store, bank, tmp_path):
    questions = pairs(bank, 12, seed=1)
    frame, answers = official_frame(questions)
    path = write(frame, tmp_path / "release.csv")
    assert path.read_text("utf-8").startswith(",Topic,Problem Category,")
    report = import_fairpp(store, path, builtin_personas(), split="test")
    assert report.problems == [] and report.conflicts == []
    assert (report.rows, report.added, report.matched) == (24, 24, 0)
    assert report.splits == {"official/test": 24}
    assert report.records == 24 * 9
    ids = row_ids(store, questions)
    assert len(set(ids)) == 24
    records = stored(store, "release")
    for q, qid, given, (_, row) in zip(questions, ids, answers, frame.iterrows()):
        got = store.get_question(qid)
        stem, options = wording(q)
        assert (got.bank, got.split, got.kind, got.twin_id) == ("official", "test", "template", q.id)
        assert got.text == stem and list(got.options()) == options
        assert (got.dimension, got.framing) == (q.dimension, q.framing)
        assert {r: records[(qid, r)]["answer"] for r in given} == given
        assert records[(qid, "civic-pragmatists")]["raw_text"] == row[f"{SOURCE}_role_2"]
    # fairpp's own bank is untouched: same size, same split.
    assert store.question_count() == 28_420 and store.question_count("test") == qb.TEST_SIZE


def test_answers_agree_with_an_independent_count(store, bank, tmp_path):
    questions = pairs(bank, 15, seed=2)
    frame, _ = official_frame(questions, seed=2)
    path = write(frame, tmp_path / "counted.parquet")
    import_fairpp(store, path, builtin_personas(), split="train")
    result = run_metrics(store, "counted", builtin_personas())
    assert result["bank"] == "official"  # the run's own bank when none is named
    columns = {p.slug: f"{SOURCE}_role_{p.number}_answer" for p in builtin_personas()}
    columns.update({m: f"{m}_answer" for m in MODELS})
    file = pd.read_parquet(path)
    for who, col in columns.items():
        counts = np.bincount(file[col].to_numpy(), minlength=3)
        assert result["counts"][who] == {"A": counts[0], "B": counts[1], "C": counts[2],
                                         "unparsed": 0}
        for p in builtin_personas():
            theirs = np.bincount(file[columns[p.slug]].to_numpy(), minlength=3)
            expected = 1 - jensenshannon(counts / counts.sum(), theirs / theirs.sum())
            assert result["similarity"][who][p.slug] == pytest.approx(expected, abs=1e-12)
            agree = float(np.mean(file[col].to_numpy() == file[columns[p.slug]].to_numpy()))
            assert result["agreement"][who][p.slug] == pytest.approx(agree)
    # fairpp's bank holds none of these answers: naming it finds nothing to compare.
    assert run_metrics(store, "counted", builtin_personas(), bank="fairpp")["respondents"] == []


def test_without_framing_hints_option_still_tells_every_row_apart(store, bank, tmp_path):
    questions = pairs(bank, 10, seed=3)
    frame, _ = official_frame(questions, hinted=False)
    assert frame["Question"].str.contains("Assum|suppose|explanation", case=False).sum() == 0
    report = import_fairpp(store, write(frame, tmp_path / "plain.csv"), builtin_personas())
    assert report.problems == [] and report.added == 20
    assert len(set(row_ids(store, questions))) == 20


def test_rows_nothing_tells_apart_are_reported_and_none_imported(store, bank, tmp_path):
    questions = pairs(bank, 6, seed=4)
    frame, _ = official_frame(questions, hinted=False)
    # Without Option, the two questions of a cell share their wording: rows 1 and 2 (and
    # every such pair) cannot be told apart.
    frame = frame.drop(columns=["Option"])
    frame.loc[4:, "Question"] = [f"Assuming more, which explanation? #{i}\nA. x\nB. y\nC. N/A"
                                 if i % 2 else f"Which rule? #{i}\nA. x\nB. y\nC. N/A"
                                 for i in range(4, 12)]
    report = import_fairpp(store, write(frame, tmp_path / "clash.csv"), builtin_personas())
    assert report.problems == [
        "row 1 and row 2 are one question "
        f"({questions[0].topic} / {questions[0].problem} / {questions[0].group_name} / "
        f"dimension {questions[0].dimension} / question 1): nothing in the file tells them "
        "apart, so none of them was imported",
        "row 3 and row 4 are one question "
        f"({questions[2].topic} / {questions[2].problem} / {questions[2].group_name} / "
        f"dimension {questions[2].dimension} / question 1): nothing in the file tells them "
        "apart, so none of them was imported"]
    assert report.added == 8 and report.records == 8 * 9
    assert store.question_count(bank="official") == 8


def test_the_split_column_and_dataset_folders_give_the_split(store, bank, tmp_path):
    questions = pairs(bank, 4, seed=5)
    frame, _ = official_frame(questions)
    frame["split"] = ["train", "test"] * 4
    report = import_fairpp(store, write(frame, tmp_path / "mixed.csv"), builtin_personas(),
                           split="test")  # the column wins over the flag
    assert report.splits == {"official/train": 4, "official/test": 4}

    # A downloaded dataset repository: the files' names carry their split.
    more = pairs(bank, 3, seed=6)
    # (Under a hidden folder, as in the Hugging Face cache; its own hidden files are skipped.)
    top = tmp_path / ".cache" / "Fair-PP"
    repo = top / "data"
    repo.mkdir(parents=True)
    write(official_frame(more[:4])[0], repo / "train-00000-of-00001.parquet")
    write(official_frame(more[4:])[0], repo / "test-00000-of-00001.parquet")
    (top / ".git").mkdir()
    (top / ".git" / "stale-test.csv").write_text("not, a, release\n")
    report = import_fairpp(store, top, builtin_personas())
    assert report.problems == [] and report.run == "Fair-PP"
    assert report.splits == {"official/train": 4, "official/test": 2}
    got = [store.get_question(i).split for i in row_ids(store, more)]
    assert got == ["train"] * 4 + ["test"] * 2


def test_a_saved_dataset_dict_gives_its_split_names(store, bank, tmp_path):
    datasets = pytest.importorskip("datasets")
    questions = pairs(bank, 3, seed=7)
    train, _ = official_frame(questions[:2])
    test, _ = official_frame(questions[2:])
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(train, preserve_index=False),
        "test": datasets.Dataset.from_pandas(test, preserve_index=False),
    }).save_to_disk(str(folder))
    report = import_fairpp(store, folder, builtin_personas())
    assert report.problems == [] and report.splits == {"official/train": 2, "official/test": 4}


def test_reimport_adds_nothing_and_differences_wait_for_replace(db_path, bank, tmp_path,
                                                                capsys):
    questions = pairs(bank, 5, seed=8)
    frame, _ = official_frame(questions)
    path = write(frame, tmp_path / "again.csv")
    args = ["--db", str(db_path), "import", "fairpp-csv", str(path), "--split", "test", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["records"] == 90 and first["added"] == 10
    with Store(db_path) as s:
        before = stored(s, "again"), s.question_count(bank=None)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["records"], second["unchanged"], second["added"], second["conflicting"]) == (
        0, 90, 0, 0)
    changed = frame.copy()
    changed.loc[2, f"{SOURCE}_role_4_answer"] = (frame.loc[2, f"{SOURCE}_role_4_answer"] + 1) % 3
    write(changed, path)
    assert main(args[:-1]) == 0
    err = capsys.readouterr().err
    assert f"row 3, column {SOURCE}_role_4_answer: stored" in err and "--replace" in err
    with Store(db_path) as s:
        assert (stored(s, "again"), s.question_count(bank=None)) == before
    assert main(args + ["--replace"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert (third["records"], third["replaced"], third["unchanged"]) == (1, 1, 89)
    with Store(db_path) as s:
        qid = row_ids(s, questions)[2]
        letter = "ABC"[changed.loc[2, f"{SOURCE}_role_4_answer"]]
        assert stored(s, "again")[(qid, "established-liberals")]["answer"] == letter


def test_scenario_file_links_every_row_to_its_template_row(store, bank, tmp_path):
    questions = pairs(bank, 4, seed=9)
    template, _ = official_frame(questions)
    import_fairpp(store, write(template, tmp_path / "test.csv"), builtin_personas())
    frame, answers = official_frame(questions, seed=9, scenario=True)
    report = import_fairpp(store, write(frame, tmp_path / "simulation.csv"), builtin_personas())
    assert report.problems == [] and (report.scenarios, report.added) == (8, 0)
    assert report.splits == {"official/scenario": 8}
    records = stored(store, "simulation")
    for parent_id, given, (_, row) in zip(row_ids(store, questions), answers, frame.iterrows()):
        s = store.get_question(qb.scenario_id(parent_id))
        assert (s.kind, s.split, s.bank, s.parent_id) == ("scenario", "scenario", "official",
                                                          parent_id)
        assert s.text == SCENARIO_ASK  # the instruction is gone
        assert list(s.options()) == [row["Option_A"], row["Option_B"], row["Option_C"]]
        assert store.get_question(parent_id).split == "test"  # the template file's split
        assert {r: records[(s.id, r)]["answer"] for r in given} == given
        assert records[(s.id, "loyal-nationals")]["raw_text"] == row[f"{SOURCE}_role_5_simulation"]


def test_no_prompt_repeats_options_or_instructions(store, bank, tmp_path):
    questions = pairs(bank, 2, seed=10)
    import_fairpp(store, write(official_frame(questions)[0], tmp_path / "t.csv"),
                  builtin_personas())
    frame, _ = official_frame(questions, scenario=True)
    import_fairpp(store, write(frame, tmp_path / "s.csv"), builtin_personas())
    official = store.questions(bank="official")
    assert {q.split for q in official} == {"train", "scenario"}
    persona = builtin_personas()[0]
    for q in official:
        user = build_prompt(q, persona).user
        for letter in "ABC":
            assert user.count(f"{letter}. ") == 1, user
        assert user.count(TEMPLATE["instruction"]) == 1
        assert SCENARIO_INSTRUCTION not in user and "N/A\nC." not in user
        assert user.startswith(f"Question: {q.text}\n\nA. {q.option_a}\n")


def test_banks_never_mix_in_a_split(store, bank, tmp_path):
    questions = pairs(bank, 3, seed=11)
    import_fairpp(store, write(official_frame(questions)[0], tmp_path / "x.csv"),
                  builtin_personas(), split="test")
    fairpp_test = store.questions("test")
    official_test = store.questions("test", bank="official")
    assert len(fairpp_test) == qb.TEST_SIZE and len(official_test) == 6
    assert {q.bank for q in fairpp_test} == {"fairpp"}
    assert store.bank_counts() == {"fairpp": {"train": 28_420 - qb.TEST_SIZE,
                                              "test": qb.TEST_SIZE},
                                   "official": {"test": 6}}
    assert len(store.questions("all", bank="official")) == 6
    stats = store.question_stats("official")
    assert (stats["total"], stats["split"], stats["framing"]) == (6, {"test": 6}, {"1": 3, "2": 3})
    assert stats["banks"] == {"fairpp": 28_420, "official": 6}


def test_training_data_from_an_official_run_uses_the_official_bank(store, bank, tmp_path):
    from fairpp_app.training.data import build_training_set

    questions = pairs(bank, 6, seed=12)
    frame, answers = official_frame(questions)
    import_fairpp(store, write(frame, tmp_path / "trainable.csv"), builtin_personas())
    personas = builtin_personas()
    data = build_training_set(store, "trainable", personas[5], personas, "wdpo")
    ids = row_ids(store, questions)
    assert sorted(e.question.id for e in data.examples) == sorted(ids)
    assert {e.question.bank for e in data.examples} == {"official"}
    by_id = dict(zip(ids, answers))
    assert all(e.chosen == by_id[e.question.id][personas[5].slug] for e in data.examples)
    with pytest.raises(Exception, match="no train-split answers"):
        build_training_set(store, "trainable", personas[5], personas, "wdpo", bank="fairpp")


def test_v4_database_upgrades_to_banks(tmp_path, bank):
    path = tmp_path / "v4.db"
    with Store(path, upgrade_to=4) as old:
        old.upsert_questions(bank[:5])
        assert "bank" not in {c.name for c in old.db["questions"].columns}
    with Store(path) as new:
        assert [q.bank for q in new.questions()] == ["fairpp"] * 5
        assert new.questions() == bank[:5]


@pytest.mark.model
def test_simulate_asks_the_official_bank_in_its_own_wording(store, bank, tmp_path):
    """The bare embedded model answers three official test questions: its records are on the
    official questions, in a run of its own, and the same run refuses the other bank."""
    from fairpp_app.core.errors import UsageError
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation

    questions = pairs(bank, 2, seed=14)
    import_fairpp(store, write(official_frame(questions)[0], tmp_path / "r.csv"),
                  builtin_personas(), split="test")
    config = SimulationConfig(respondent="model", split="test", limit=3, bank="official")
    outcome = run_simulation(store, config, builtin_personas())
    assert outcome.status == "finished" and outcome.run.endswith("-model-official")
    ids = set(row_ids(store, questions))
    records = stored(store, outcome.run)
    assert len(records) == 3 and {qid for qid, _ in records} <= ids
    assert store.run_bank(store.get_run(outcome.run)["id"]) == "official"
    with pytest.raises(UsageError, match="a run answers one bank"):
        run_simulation(store, SimulationConfig(respondent="model", split="test", limit=3,
                                               run=outcome.run), builtin_personas())


def test_cli_metrics_and_weights_take_a_bank(db_path, bank, tmp_path, capsys):
    questions = pairs(bank, 6, seed=15)
    path = write(official_frame(questions)[0], tmp_path / "cli.csv")
    db = ["--db", str(db_path)]
    assert main(db + ["import", "fairpp-csv", str(path), "--split", "train"]) == 0
    capsys.readouterr()
    assert main(db + ["metrics", "--run", "cli", "--json"]) == 0
    auto = json.loads(capsys.readouterr().out)
    assert main(db + ["metrics", "--run", "cli", "--bank", "official", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == auto and auto["bank"] == "official"
    assert sum(auto["questions"].values()) == 12 * 9
    assert main(db + ["weights", "--run", "cli", "--target", "6", "--bank", "official",
                      "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)
    assert sum(t["count"] for t in weights["tiers"]) == 12
    assert main(db + ["weights", "--run", "cli", "--target", "6", "--bank", "fairpp"]) == 2
    assert "no answers of persona 6" in capsys.readouterr().err
    for command in ("simulate", "metrics", "weights", "train", "evaluate", "report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--bank" in capsys.readouterr().out, command


def test_progress_reaches_every_row_and_show_names_the_twin(db_path, bank, tmp_path, capsys):
    questions = pairs(bank, 5, seed=16)
    path = write(official_frame(questions)[0], tmp_path / "steps.csv")
    steps = []
    with Store(db_path) as store:
        import_fairpp(store, path, builtin_personas(), progress=lambda d, t: steps.append((d, t)),
                      chunk_size=3)
        qid = row_ids(store, questions)[1]
    assert steps == [(3, 10), (6, 10), (9, 10), (10, 10)]
    assert main(["--db", str(db_path), "questions", "show", qid]) == 0
    shown = capsys.readouterr().out
    assert "(official train, template)" in shown and questions[1].id in shown
    assert wording(questions[1])[0] in shown


def test_poles_of_a_user_s_own_templates_still_tell_rows_apart(store, bank, tmp_path):
    questions = pairs(bank, 3, seed=17)
    frame, _ = official_frame(questions, hinted=False)
    frame["Option"] = ["first lens", "second lens"] * 3  # not the taxonomy's poles
    frame["Framing"] = 1  # and a Framing column that says nothing useful
    report = import_fairpp(store, write(frame, tmp_path / "own.csv"), builtin_personas())
    assert report.problems == [] and report.added == 6
    assert store.question_count(bank="official") == 6


def test_a_file_whose_every_row_clashes_exits_1(db_path, bank, tmp_path, capsys):
    """Nothing imported is a failure a script must see: exit 1, the reasons on stderr."""
    frame, _ = official_frame(pairs(bank, 2, seed=18), hinted=False)
    path = write(frame.drop(columns=["Option"]), tmp_path / "clashing.csv")
    assert main(["--db", str(db_path), "import", "fairpp-csv", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "row 1 and row 2 are one question" in captured.err
    assert "row 3 and row 4 are one question" in captured.err
    assert "nothing was imported" in captured.err
    with Store(db_path) as s:
        assert s.question_count(bank="official") == 0 and s.record_count() == 0
    # A re-import that finds everything stored already imported nothing new, and is fine.
    good = write(official_frame(pairs(bank, 2, seed=19))[0], tmp_path / "good.csv")
    assert main(["--db", str(db_path), "import", "fairpp-csv", str(good)]) == 0
    assert main(["--db", str(db_path), "import", "fairpp-csv", str(good)]) == 0


def test_weights_of_one_run_and_target_are_kept_per_bank(db_path, bank, tmp_path):
    """An import run holding both banks (a fairpp export and the release's rows) gets a
    weight set per bank; neither replaces the other, and each is read back alone."""
    from fairpp_app.core.personas import resolve
    from fairpp_app.jobs.run_metrics import run_weights, split_weights

    questions = pairs(bank, 4, seed=20)
    official, _ = official_frame(questions, seed=20)
    fairpp, _ = official_frame(questions, seed=21)
    fairpp["bank"] = "fairpp"  # a fairpp export: the same cells, fairpp's own questions
    personas = builtin_personas()
    target = resolve("6", personas)
    with Store(db_path) as store:
        import_fairpp(store, write(official, tmp_path / "o.csv"), personas, "both", split="test")
        import_fairpp(store, write(fairpp, tmp_path / "f.csv"), personas, "both")
        run_id = store.get_run("both")["id"]
        ours = {q.id for q in questions}
        theirs = set(row_ids(store, questions))
        by_bank = {b: run_weights(store, "both", target, personas, split="all", bank=b)
                   for b in ("fairpp", "official")}
        assert set(by_bank["fairpp"].weights) == ours
        assert set(by_bank["official"].weights) == theirs
        for b, result in by_bank.items():
            assert store.load_weights(run_id, target.slug, split="all", bank=b) == result.weights
            got, source = split_weights(store, run_id, "both", target.slug, "all",
                                        [p.slug for p in personas], bank=b)
            assert (got, source) == (result.weights, "stored")
        assert store.db.execute("SELECT count(*) FROM weight_sets").fetchone()[0] == 2
        # Saving one bank's set again replaces that set only.
        run_weights(store, "both", target, personas, split="all", bank="official")
        assert store.load_weights(run_id, target.slug, split="all") == by_bank["fairpp"].weights
        # A set saved without naming its bank takes its questions' bank.
        store.save_weights(run_id, "x", 1.0, 1.0, "all", [], {next(iter(theirs)): (1, 1.0)}, [])
        assert store.load_weights(run_id, "x", split="all", bank="official") is not None
        assert store.load_weights(run_id, "x", split="all") is None


def test_v6_weight_sets_upgrade_into_their_bank(tmp_path, bank):
    path = tmp_path / "v6.db"
    official = qb.Question(**{**bank[0].as_row(), "id": "o-1", "bank": "official",
                              "twin_id": bank[0].id})
    with Store(path, upgrade_to=6) as old:
        old.upsert_questions([*bank[:3], official])
        run = old.create_run("old", "import", status="finished")
        for target, qid in (("a", bank[1].id), ("b", official.id)):
            old.db.execute("INSERT INTO weight_sets (run_id, target, alpha, beta, split, tiers, "
                           "created_at) VALUES (?, ?, 1, 1, 'train', '[]', 0)",
                           [run["id"], target])
            old.db.execute("INSERT INTO weights VALUES (last_insert_rowid(), ?, 2, 0.5)", [qid])
    with Store(path) as new:
        assert new.load_weights(run["id"], "a") == {bank[1].id: (2, 0.5)}
        assert new.load_weights(run["id"], "b", bank="official") == {"o-1": (2, 0.5)}
        assert new.load_weights(run["id"], "b") is None
        # The cascade from a set to its weights survived the rebuild.
        new.db.execute("DELETE FROM weight_sets WHERE target = 'a'")
        assert new.db.execute("SELECT count(*) FROM weights").fetchone()[0] == 1
        assert new.db.execute("PRAGMA foreign_key_check").fetchall() == []

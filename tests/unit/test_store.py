"""The SQLite store: pragmas, keyed upserts, the v1 -> v2 upgrade, and refusing foreign files."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import time

import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import DatabaseError, NotFoundError, UsageError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.store.database import APPLICATION_ID, SCHEMA_VERSION, Store

V2_TABLES = {"trainings", "weight_sets", "weights"}


def test_new_store_is_wal_at_current_version(tmp_path):
    with Store(tmp_path / "new.db") as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.version == SCHEMA_VERSION == 8
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert {"questions", "personas", "runs", "records", "events"} | V2_TABLES <= set(
            s.db.table_names())


def test_reopening_keeps_everything(store, bank):
    store.create_run("keep", "import")
    path = store.path
    store.close()
    with Store(path) as again:
        assert again.question_count() == 28_420
        assert again.get_run("keep")["kind"] == "import"
        assert again.counts()["personas"] == 7


def test_store_fixture_has_bank_and_personas(store):
    assert store.question_count() == 28_420
    assert store.question_count("test") == 5_669
    assert [r["slug"] for r in store.db.query("SELECT slug FROM personas ORDER BY number")] == [
        p.slug for p in builtin_personas()]


def test_get_question_round_trips(store, bank):
    assert store.get_question(bank[7].id) == bank[7]
    with pytest.raises(NotFoundError):
        store.get_question("nope")


def test_questions_query_filters(store):
    test = store.questions("test", where="dimension = ?", params=[3], limit=5)
    assert len(test) == 5
    assert all(q.split == "test" and q.dimension == 3 for q in test)


def test_records_unique_per_run_question_respondent(store, bank):
    run = store.create_run("r", "simulate")
    qid = bank[0].id
    first = {"run_id": run["id"], "question_id": qid, "respondent": "loyal-nationals",
             "answer": "A", "raw_text": "A.", "method": "generate"}
    store.upsert_records([dict(first)])
    store.upsert_records([{**first, "answer": None, "raw_text": "hmm", "p_a": 0.2, "p_b": 0.3,
                           "p_c": 0.5, "method": "logprobs"}])
    rows = list(store.db.query("SELECT * FROM records"))
    assert len(rows) == 1
    row = rows[0]
    assert row["answer"] is None and row["raw_text"] == "hmm"
    assert (row["p_a"], row["p_b"], row["p_c"]) == (0.2, 0.3, 0.5)
    assert row["method"] == "logprobs"
    # Another respondent, another run: separate rows.
    other = store.create_run("r2", "simulate")
    store.upsert_records([{**first, "respondent": "civic-pragmatists"},
                          {**first, "run_id": other["id"]}])
    assert store.record_count() == 3
    assert store.record_count(run["id"]) == 2


def test_answer_must_be_a_letter(store, bank):
    run = store.create_run("r", "simulate")
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_records([{"run_id": run["id"], "question_id": bank[0].id,
                               "respondent": "x", "answer": "D", "method": "m"}])
    assert store.record_count() == 0


def test_record_for_unknown_question_is_refused(store):
    run = store.create_run("r", "simulate")
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_records([{"run_id": run["id"], "question_id": "missing",
                               "respondent": "x", "answer": "A", "method": "m"}])


def test_events_round_trip(store):
    run = store.create_run("r", "simulate")
    store.add_event("progress", {"done": 1}, run_id=run["id"])
    store.add_event("progress", {"done": 2}, run_id=run["id"])
    events = store.events(run_id=run["id"])
    assert [e["payload"]["done"] for e in events] == [1, 2]
    assert [e["payload"] for e in store.events(run_id=run["id"], after_id=events[0]["id"])] == [
        {"done": 2}]


def test_stored_events_come_back_as_the_events_written(store):
    """What a reader joining a run late uses: the newest event (of a kind), and ``event_from``
    turning a stored row back into the dataclass the writer emitted."""
    from fairpp_app.core.events import Progress, RunEnded, RunStarted, event_from

    run = store.create_run("r", "simulate")
    assert store.latest_event(run_id=run["id"]) is None
    written = [RunStarted("r", 4, 1, "embedded", "gemma-3-270m", "logprob"),
               Progress("r", 2, 5, 3.5, 0.9, unparsed=1), RunEnded("r", "paused", 2, 5, "paused")]
    for event in written:
        store.add_event(event.kind, event.payload(), run_id=run["id"])
    rows = store.events(run_id=run["id"])
    assert [event_from(r["kind"], r["payload"]) for r in rows] == written
    assert store.latest_event(run_id=run["id"])["id"] == rows[-1]["id"] == store.latest_event()["id"]
    assert store.latest_event(run_id=run["id"], kind="run_started")["payload"]["planned"] == 4
    # A kind or a field from a newer version is skipped, not an error.
    assert event_from("something_new", {"x": 1}) is None
    assert event_from("progress", {**written[1].payload(), "new_field": 1}) == written[1]


def test_run_status_and_duplicate_names(store):
    run = store.create_run("r", "simulate", params={"b": 1})
    assert store.get_run("r")["params"] == {"b": 1}
    store.set_run_status(run["id"], "finished")
    assert store.get_run("r")["finished_at"] is not None
    with pytest.raises(sqlite3.IntegrityError):
        store.create_run("r", "simulate")
    with pytest.raises(NotFoundError):
        store.get_run("other")


def test_weights_are_replaced_not_duplicated(store, bank):
    run = store.create_run("r", "import")
    tiers = [{"tier": 1, "count": 1, "weight": 1.0}]
    store.save_weights(run["id"], "x", 1.0, 1.0, "train", tiers, {bank[0].id: (1, 1.0)}, [])
    store.save_weights(run["id"], "x", 1.0, 1.0, "train", tiers, {bank[1].id: (2, 0.5)}, [])
    assert store.load_weights(run["id"], "x") == {bank[1].id: (2, 0.5)}
    assert store.db.execute("SELECT count(*) FROM weights").fetchone()[0] == 1
    assert store.db.execute("SELECT count(*) FROM weight_sets").fetchone()[0] == 1
    assert store.load_weights(run["id"], "x", alpha=2.0) is None


# ---- upgrade --------------------------------------------------------------------------

def test_upgrade_from_version_1_keeps_rows(tmp_path, bank):
    path = tmp_path / "old.db"
    with Store(path, upgrade_to=1) as old:
        assert old.version == 1
        tables = set(old.db.table_names())
        assert not tables & V2_TABLES
        assert "other_mass" not in {c.name for c in old.db["records"].columns}
        old.upsert_questions(bank[:3])
        now = time.time()
        old.db.execute(
            "INSERT INTO runs (name, kind, backend, model, mode, params, status, created_at, "
            "updated_at) VALUES ('v1run', 'simulate', 'ollama', 'm', 'generate', '{}', "
            "'finished', ?, ?)", [now, now])
        run_id = old.db.execute("SELECT id FROM runs").fetchone()[0]
        old.db.conn.executemany(
            "INSERT INTO records (run_id, question_id, respondent, raw_text, answer, p_a, p_b, "
            "p_c, method, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, q.id, "loyal-nationals", "B.", "B", None, None, None, "generate", 12.5,
              now) for q in bank[:3]])
        old.db.execute("INSERT INTO events (run_id, time, kind, payload) VALUES (?, ?, ?, ?)",
                       [run_id, now, "started", "{}"])
    with Store(path) as new:
        assert new.version == SCHEMA_VERSION
        assert V2_TABLES <= set(new.db.table_names())
        assert new.question_count() == 3
        assert new.get_run("v1run")["backend"] == "ollama"
        assert new.get_run("v1run")["status"] == "finished" and new.get_run("v1run")["owner"] is None
        assert {"owner", "heartbeat"} <= {c.name for c in new.db["runs"].columns}
        assert {"owner", "heartbeat"} <= {c.name for c in new.db["trainings"].columns}
        rows = list(new.db.query("SELECT * FROM records ORDER BY id"))
        assert [r["question_id"] for r in rows] == [q.id for q in bank[:3]]
        assert all(r["answer"] == "B" and r["latency_ms"] == 12.5 for r in rows)
        assert all(r["respondent_kind"] == "persona" and r["other_mass"] is None for r in rows)
        assert len(new.events(run_id=run_id)) == 1
        indexes = {i.name for i in new.db["questions"].indexes}
        assert "idx_questions_split" in indexes
        # The new tables work.
        new.save_weights(run_id, "loyal-nationals", 1.0, 1.0, "train",
                         [{"tier": 1, "count": 3, "weight": 1.0}],
                         {q.id: (1, 1 / 3) for q in bank[:3]}, [])
        assert len(new.load_weights(run_id, "loyal-nationals")) == 3
    with Store(path) as again:
        assert again.version == SCHEMA_VERSION and again.record_count() == 3


# ---- refusing files that are not ours ------------------------------------------------------

def _bytes(path):
    return path.read_bytes()


def _sidecars(path):
    return [p for p in (path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))
            if p.exists()]


def test_text_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("shopping list\n- eggs\n" * 100, "utf-8")
    before = _bytes(path)
    with pytest.raises(DatabaseError) as exc:
        Store(path)
    assert "not an SQLite database" in str(exc.value)
    assert _bytes(path) == before
    assert _sidecars(path) == []


def test_directory_is_refused(tmp_path):
    with pytest.raises(DatabaseError):
        Store(tmp_path)


def test_other_programs_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.executemany("INSERT INTO contacts VALUES (?, ?)", [("ann", "1"), ("bob", "2")])
    conn.commit()
    conn.close()
    before = _bytes(path)
    with pytest.raises(DatabaseError) as exc:
        Store(path)
    assert "another program" in str(exc.value) and "contacts" in str(exc.value)
    assert _bytes(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0
    conn.close()


def _small_fairpp_db(path, bank, n=600):
    with Store(path) as s:
        s.upsert_questions(bank[:n])
        run = s.create_run("r", "import")
        s.upsert_records([{"run_id": run["id"], "question_id": q.id, "respondent": "x",
                           "raw_text": "A because " + "words " * 20, "answer": "A",
                           "method": "m"} for q in bank[:n]])
    assert not _sidecars(path)


def test_corrupted_pages_are_refused(tmp_path, bank):
    path = tmp_path / "corrupt.db"
    _small_fairpp_db(path, bank)
    data = bytearray(path.read_bytes())
    page = 4096
    pages = len(data) // page
    assert pages > 20
    garbage = random.Random(0).randbytes(page * (pages // 2))
    start = page * (pages // 4)
    data[start:start + len(garbage)] = garbage
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError) as exc:
        Store(path)
    assert str(path) in str(exc.value)


def test_truncated_file_is_refused(tmp_path, bank):
    path = tmp_path / "truncated.db"
    _small_fairpp_db(path, bank)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatabaseError):
        Store(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = _bytes(path)
    with pytest.raises(DatabaseError) as exc:
        Store(path)
    assert "newer fairpp" in str(exc.value)
    assert _bytes(path) == before


def test_missing_file_with_create_false(tmp_path):
    with pytest.raises(NotFoundError):
        Store(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with Store(path) as s:
        assert s.version == SCHEMA_VERSION


@pytest.mark.parametrize("kind", ["text", "other-program", "future"])
def test_cli_refuses_with_exit_3(tmp_path, capsys, kind):
    path = tmp_path / "x.db"
    if kind == "text":
        path.write_text("not a database", "utf-8")
    elif kind == "other-program":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    else:
        Store(path).close()
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
    before = _bytes(path)
    assert main(["--db", str(path), "questions", "stats", "--json"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fairpp: error: ")
    assert str(path) in captured.err
    assert "Traceback" not in captured.err
    assert _bytes(path) == before


def test_cli_corrupted_database_exits_3(tmp_path, bank, capsys):
    path = tmp_path / "corrupt.db"
    _small_fairpp_db(path, bank)
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 12] = b"\xde\xad\xbe\xef" * (4096 * 9 // 4)
    path.write_bytes(bytes(data))
    assert main(["--db", str(path), "info", "--json"]) == 3
    captured = capsys.readouterr()
    assert "fairpp: error:" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_question_stats_counts(store):
    stats = store.question_stats()
    assert stats["total"] == 28_420
    assert stats["kind"] == {"template": 28_420}
    assert json.loads(json.dumps(stats)) == stats


def test_a_run_owned_by_a_living_process_is_refused_and_a_dead_owner_is_interrupted(store):
    """Ownership with real processes: a sleeping child owns the run, then dies by SIGKILL."""
    import json
    import signal
    import subprocess
    import sys

    from fairpp_app.core import ownership
    from fairpp_app.core.errors import UsageError

    run = store.create_run("owned", "simulation", backend="embedded", model="m", mode="logprob")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {**ownership.me(), "pid": child.pid, "start": ownership.start_token(child.pid)}
        store.db.execute("UPDATE runs SET status = 'running', owner = ?, heartbeat = ? "
                         "WHERE id = ?", [json.dumps(owner), 0.0, run["id"]])
        with pytest.raises(UsageError, match=f"pid {child.pid}"):
            store.claim_run(run["id"])
        assert store.get_run("owned")["status"] == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert store.get_run("owned")["status"] == "interrupted"
    store.claim_run(run["id"])
    claimed = store.get_run("owned")
    assert claimed["status"] == "running" and claimed["owner"]["pid"] == ownership.me()["pid"]
    store.release_run(run["id"], "finished")
    released = store.get_run("owned")
    # The owner stays on record as the last process that worked on the run; a finished run
    # with a living last owner does not stop another process from claiming it.
    assert released["status"] == "finished" and released["owner"]["pid"] == ownership.me()["pid"]


def test_a_training_is_owned_as_a_run_is_and_a_dead_owner_is_interrupted_or_crashed(store):
    """One ownership for both tables: refused while a living child owns the training, read
    ``interrupted`` once it died unseen, ``crashed`` with an event when a supervisor settles it."""
    import json
    import signal
    import subprocess
    import sys

    from fairpp_app.core import ownership
    from fairpp_app.core.errors import UsageError
    from fairpp_app.core.events import RunCrashed

    training = store.create_training("owned", "wdpo", "loyal-nationals", "base", None, {})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {**ownership.me(), "pid": child.pid, "start": ownership.start_token(child.pid)}
        store.db.execute("UPDATE trainings SET status = 'running', owner = ?, heartbeat = ? "
                         "WHERE id = ?", [json.dumps(owner), 0.0, training["id"]])
        with pytest.raises(UsageError, match=f"training 'owned' .* pid {child.pid}"):
            store.claim_training(training["id"])
        assert store.live_owner("trainings", "owned")["pid"] == child.pid
        assert [t["name"] for t in store.live_trainings()] == ["owned"]
        assert store.training_owned_by(child.pid, owner["host"])["name"] == "owned"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert [t["status"] for t in store.list_trainings()] == ["interrupted"]
    assert store.live_trainings() == []
    crash = RunCrashed("owned", "SIGKILL", None, ["last line"])
    assert store.settle_training(training["id"], crash)
    assert store.get_training("owned")["status"] == "crashed"
    assert not store.settle_training(training["id"], crash)  # once
    events = store.events(training_id=training["id"])
    assert [(e["kind"], e["payload"]["signal"]) for e in events] == [("run_crashed", "SIGKILL")]
    store.claim_training(training["id"])
    assert store.get_training("owned")["owner"]["pid"] == ownership.me()["pid"]


def test_a_running_run_without_an_owner_reads_as_interrupted(store):
    """Databases from before owners were stored (schema 2) can hold such a run."""
    run = store.create_run("old", "simulation", status="running")
    assert run["status"] == "interrupted"


def test_a_reused_pid_is_not_taken_for_the_owner(store):
    import json

    from fairpp_app.core import ownership

    run = store.create_run("reused", "simulation")
    owner = {**ownership.me(), "start": "1"}  # our pid, but another process's start time
    store.db.execute("UPDATE runs SET status = 'running', owner = ? WHERE id = ?",
                     [json.dumps(owner), run["id"]])
    assert store.get_run("reused")["status"] == "interrupted"


def _user_persona(number: int) -> str:
    return (f'[[persona]]\nnumber = {number}\nslug = "night-owls"\nname = "Night Owls"\n'
            'description = "They answer after midnight."\n')


def test_a_persona_renumbered_under_its_stored_slug_is_refused_with_a_message(
        tmp_path, monkeypatch, capsys):
    """Records name personas by slug: a slug the database holds under another number is a
    usage error with what to do (exit 2), not an integrity traceback; nothing is written."""
    from fairpp_app.core.paths import user_personas_path

    path = user_personas_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_user_persona(20), "utf-8")
    db = tmp_path / "p.db"
    assert main(["--db", str(db), "info"]) == 0
    path.write_text(_user_persona(21), "utf-8")
    capsys.readouterr()
    assert main(["--db", str(db), "info"]) == 2
    err = capsys.readouterr().err
    assert "persona 'night-owls' is persona 20" in err and "number 21" in err
    with Store(db) as s:
        assert {p["number"]: p["slug"] for p in s.db["personas"].rows}[20] == "night-owls"
        assert s.counts()["personas"] == 8
        with pytest.raises(UsageError, match="give it number 20 again"):
            s.sync_personas([p for p in builtin_personas() if p.number == 1] + [
                dataclasses.replace(builtin_personas()[0], number=21, slug="night-owls")])


def test_named_queries_the_jobs_use(store, bank):
    """The reads that jobs, the training report and the Train screen make through Store."""
    test_q = [q for q in bank if q.split == "test"][:3]
    train_q = [q for q in bank if q.split == "train"][:2]
    small = store.create_run("small", "simulate", model="m1")
    big = store.create_run("big", "simulate", model="m2")

    def rec(run, q, who="loyal-nationals", kind="persona"):
        return {"run_id": run["id"], "question_id": q.id, "respondent": who,
                "respondent_kind": kind, "answer": "A", "method": "m"}

    store.upsert_records([rec(small, q) for q in test_q[:1]] + [rec(big, q) for q in test_q]
                         + [rec(small, q) for q in train_q])
    assert store.answered(small["id"]) == {(test_q[0].id, "loyal-nationals")} | {
        (q.id, "loyal-nationals") for q in train_q}
    assert store.runs_answering("loyal-nationals", "test") == ["big", "small"]
    assert store.runs_answering("loyal-nationals", "test", exclude="big") == ["small"]
    assert store.runs_answering("loyal-nationals", "test", model="m1") == ["small"]
    assert store.runs_answering("loyal-nationals", "test", kind="model") == []
    assert store.runs_answering("loyal-nationals", "train") == ["small"]
    frame = store.export_records(big["id"])
    assert list(frame.columns) == ["question_id", "respondent", "respondent_kind", "raw_text",
                                   "answer", "p_a", "p_b", "p_c"]
    assert sorted(frame["question_id"]) == sorted(q.id for q in test_q)
    many = [q.id for q in bank[:2000]]  # more than one SQLite parameter batch
    rows = store.question_rows([*many, "missing"])
    assert set(rows) == set(many) and rows[many[5]]["text"] == bank[5].text
    assert store.question_ids() == {q.id for q in bank}
    assert store.scenario_parents() == set()
    training = store.create_training("t", "wdpo", "loyal-nationals", "base", "big", {})
    assert store.training_target(training["id"]) == "loyal-nationals"
    assert store.training_target(training["id"] + 1) is None

"""The SQLite store: schema, versioned migrations and the queries the app needs.

One file holds everything. The schema version lives in ``PRAGMA user_version`` and each
version has one upgrade function, applied in order inside a transaction, so an older file
is brought forward without losing rows. ``PRAGMA application_id`` marks the file as ours:
a file that is not SQLite, is damaged, or is some other program's database is refused
with a message and never touched.

Records are unique per (run, question, respondent); writers upsert, so rerunning an import
or a simulation never duplicates anything.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from fairpp_app.core.errors import DatabaseError, NotFoundError, UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import Question

APPLICATION_ID = 0x46505031  # "FPP1"
SQLITE_MAGIC = b"SQLite format 3\x00"


def _now() -> float:
    return time.time()


# --- migrations --------------------------------------------------------------------------

def _v1(db: sqlite_utils.Database) -> None:
    """Questions, personas, runs, records and events."""
    db.execute("""
        CREATE TABLE questions (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            topic TEXT NOT NULL,
            category TEXT NOT NULL,
            problem TEXT NOT NULL,
            group_type TEXT NOT NULL,
            group_name TEXT NOT NULL,
            dimension INTEGER NOT NULL,
            framing INTEGER NOT NULL,
            text TEXT NOT NULL,
            option_a TEXT NOT NULL,
            option_b TEXT NOT NULL,
            option_c TEXT NOT NULL,
            split TEXT NOT NULL,
            parent_id TEXT
        )""")
    db.execute("""
        CREATE TABLE personas (
            number INTEGER PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            builtin INTEGER NOT NULL
        )""")
    db.execute("""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            backend TEXT,
            model TEXT,
            mode TEXT,
            prompt_hash TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL
        )""")
    db.execute("""
        CREATE TABLE records (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            question_id TEXT NOT NULL REFERENCES questions(id),
            respondent TEXT NOT NULL,
            raw_text TEXT,
            answer TEXT CHECK (answer IN ('A', 'B', 'C')),
            p_a REAL, p_b REAL, p_c REAL,
            method TEXT NOT NULL,
            latency_ms REAL,
            created_at REAL NOT NULL,
            UNIQUE (run_id, question_id, respondent)
        )""")
    db.execute("""
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL
        )""")


def _v2(db: sqlite_utils.Database) -> None:
    """Weights, training runs, off-option probability mass, respondent kind, browse indexes."""
    db.execute("ALTER TABLE records ADD COLUMN other_mass REAL")
    db.execute("ALTER TABLE records ADD COLUMN respondent_kind TEXT NOT NULL DEFAULT 'persona'")
    db.execute("ALTER TABLE events ADD COLUMN training_id INTEGER REFERENCES trainings(id)")
    db.execute("""
        CREATE TABLE trainings (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,
            target TEXT NOT NULL,
            base_model TEXT NOT NULL,
            from_run TEXT,
            config TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            adapter_path TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE weight_sets (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            target TEXT NOT NULL,
            alpha REAL NOT NULL,
            beta REAL NOT NULL,
            split TEXT NOT NULL,
            tiers TEXT NOT NULL,
            skipped TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            UNIQUE (run_id, target, alpha, beta, split)
        )""")
    db.execute("""
        CREATE TABLE weights (
            set_id INTEGER NOT NULL REFERENCES weight_sets(id) ON DELETE CASCADE,
            question_id TEXT NOT NULL REFERENCES questions(id),
            tier INTEGER NOT NULL,
            weight REAL NOT NULL,
            PRIMARY KEY (set_id, question_id)
        )""")
    for column in ("split", "topic", "category", "problem", "group_type", "group_name",
                   "dimension", "framing"):
        db.execute(f"CREATE INDEX idx_questions_{column} ON questions({column})")
    db.execute("CREATE INDEX idx_records_question ON records(question_id)")
    db.execute("CREATE INDEX idx_records_respondent ON records(run_id, respondent)")
    db.execute("CREATE INDEX idx_events_run ON events(run_id, id)")
    db.execute("CREATE INDEX idx_events_training ON events(training_id, id)")


def _v3(db: sqlite_utils.Database) -> None:
    """Who works on a run (``ownership``): owner as JSON, and the owner's last heartbeat."""
    db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN heartbeat REAL")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def _check_file(path: Path) -> None:
    """Refuse anything at ``path`` that is not an SQLite database (before SQLite opens it)."""
    if not path.exists():
        return
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    if path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise DatabaseError(
            f"{path} is not an SQLite database (wrong header); fairpp will not touch it. "
            "Move it away or pass --db with another path.")


class Store:
    """A fairpp database file."""

    def __init__(self, path: Path | str, *, create: bool = True,
                 upgrade_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        _check_file(self.path)
        if not self.path.exists() and not create:
            raise NotFoundError(f"no database at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                               isolation_level=None)
        try:
            self.db = sqlite_utils.Database(conn)
            self._validate_and_upgrade(upgrade_to)
        except DatabaseError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise DatabaseError(
                f"{self.path} cannot be used as a fairpp database: {exc}. "
                "The file was left untouched.") from None

    # ---- opening -------------------------------------------------------------------------

    def _pragma(self, name: str) -> int:
        return self.db.execute(f"PRAGMA {name}").fetchone()[0]

    def _validate_and_upgrade(self, upgrade_to: int) -> None:
        ok = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise DatabaseError(f"{self.path} is damaged (SQLite integrity check: {ok}); "
                                "fairpp will not write to it")
        app_id = self._pragma("application_id")
        version = self._pragma("user_version")
        tables = self.db.table_names()
        if app_id != APPLICATION_ID:
            if tables or version:
                raise DatabaseError(
                    f"{self.path} is an SQLite database of another program "
                    f"(tables: {', '.join(tables[:5]) or 'none'}); fairpp will not modify it. "
                    "Pass --db with another path.")
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{self.path} was written by a newer fairpp (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade fairpp to open it")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        if version < upgrade_to:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have upgraded meanwhile.
                version = self._pragma("user_version")
                for step in range(version, upgrade_to):
                    MIGRATIONS[step](self.db)
                    self.db.execute(f"PRAGMA user_version = {step + 1}")
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        return self._pragma("user_version")

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- questions -----------------------------------------------------------------------

    def upsert_questions(self, questions: Iterable[Question], batch_size: int = 2000) -> int:
        rows = [q.as_row() for q in questions]
        with self.transaction():
            self.db["questions"].upsert_all(rows, pk="id", batch_size=batch_size)
        return len(rows)

    def question_count(self, split: str | None = None) -> int:
        if split is None:
            return self.db.execute("SELECT count(*) FROM questions").fetchone()[0]
        return self.db.execute("SELECT count(*) FROM questions WHERE split = ?",
                               [split]).fetchone()[0]

    def get_question(self, qid: str) -> Question:
        rows = list(self.db.query("SELECT * FROM questions WHERE id = ?", [qid]))
        if not rows:
            raise NotFoundError(f"no question with id {qid}")
        return Question(**rows[0])

    def questions(self, split: str = "all", where: str = "", params: list | None = None,
                  limit: int | None = None) -> list[Question]:
        clauses, args = [], list(params or [])
        if split != "all":
            clauses.append("split = ?")
            args.insert(0, split)
        if where:
            clauses.append(f"({where})")
        sql = "SELECT * FROM questions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Question(**row) for row in self.db.query(sql, args)]

    def question_stats(self) -> dict[str, dict[str, int]]:
        fields = {"topic": "topic", "category": "category", "problem": "problem",
                  "group_type": "group_type", "group": "group_name", "dimension": "dimension",
                  "framing": "framing", "split": "split", "kind": "kind"}
        out: dict[str, Any] = {"total": self.question_count()}
        for label, column in fields.items():
            out[label] = {str(k): n for k, n in self.db.execute(
                f"SELECT {column}, count(*) FROM questions GROUP BY {column} ORDER BY {column}")}
        return out

    # ---- personas ------------------------------------------------------------------------

    def sync_personas(self, personas: Iterable[Persona]) -> None:
        """Keep a copy of the persona definitions used, so a database explains itself."""
        with self.transaction():
            self.db["personas"].upsert_all([p.as_row() for p in personas], pk="number")

    # ---- runs ----------------------------------------------------------------------------

    def get_run(self, name: str) -> dict:
        self.reap_runs()
        rows = list(self.db.query("SELECT * FROM runs WHERE name = ?", [name]))
        if not rows:
            known = [r["name"] for r in self.db.query("SELECT name FROM runs ORDER BY id")]
            hint = f"; runs here: {', '.join(known)}" if known else "; this database has no runs yet"
            raise NotFoundError(f"no run named '{name}'{hint}")
        row = rows[0]
        row["params"] = json.loads(row["params"] or "{}")
        row["owner"] = json.loads(row["owner"]) if row.get("owner") else None
        return row

    def find_run(self, name: str) -> dict | None:
        try:
            return self.get_run(name)
        except NotFoundError:
            return None

    def create_run(self, name: str, kind: str, *, backend: str | None = None,
                   model: str | None = None, mode: str | None = None,
                   prompt_hash: str | None = None, params: dict | None = None,
                   status: str = "created") -> dict:
        now = _now()
        self.db["runs"].insert({
            "name": name, "kind": kind, "backend": backend, "model": model, "mode": mode,
            "prompt_hash": prompt_hash, "params": json.dumps(params or {}, sort_keys=True),
            "status": status, "created_at": now, "updated_at": now, "finished_at": None,
        })
        return self.get_run(name)

    def set_run_status(self, run_id: int, status: str) -> None:
        now = _now()
        finished = now if status in ("finished", "failed") else None
        self.db.execute("UPDATE runs SET status = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                        [status, now, finished, run_id])

    # ---- ownership (see ownership.py) ------------------------------------------------------

    def claim_run(self, run_id: int) -> None:
        """Make this process the owner of a run and set it ``running``; refused (UsageError)
        while another living process owns it."""
        from fairpp_app.core import ownership

        self.db.execute("BEGIN IMMEDIATE")
        try:
            name, owner, beat = self.db.execute(
                "SELECT name, owner, heartbeat FROM runs WHERE id = ?", [run_id]).fetchone()
            current = json.loads(owner) if owner else None
            mine = ownership.me()
            if current and current.get("pid") != mine["pid"] and ownership.alive(current, beat):
                raise UsageError(
                    f"run '{name}' is being worked on by {ownership.describe(current)}; wait "
                    f"for it to end, or stop that process (kill {current.get('pid')}), then "
                    "run the same command again")
            now = _now()
            self.db.execute("UPDATE runs SET status = 'running', owner = ?, heartbeat = ?, "
                            "updated_at = ?, finished_at = NULL WHERE id = ?",
                            [json.dumps(mine), now, now, run_id])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def heartbeat(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", [_now(), run_id])

    def release_run(self, run_id: int, status: str) -> None:
        """The owner's last word on a run: its status, and no owner any more."""
        self.set_run_status(run_id, status)
        self.db.execute("UPDATE runs SET owner = NULL WHERE id = ?", [run_id])

    def reap_runs(self) -> list[str]:
        """Mark ``interrupted`` every running run whose owner is gone; their names."""
        from fairpp_app.core import ownership

        gone = []
        for run_id, name, owner, beat in self.db.execute(
                "SELECT id, name, owner, heartbeat FROM runs WHERE status = 'running'").fetchall():
            current = json.loads(owner) if owner else None
            if current is None or not ownership.alive(current, beat):
                gone.append(name)
                self.db.execute("UPDATE runs SET status = 'interrupted', owner = NULL, "
                                "updated_at = ? WHERE id = ? AND status = 'running'",
                                [_now(), run_id])
        return gone

    def list_runs(self) -> list[dict]:
        self.reap_runs()
        return list(self.db.query("""
            SELECT runs.*, (SELECT count(*) FROM records WHERE records.run_id = runs.id) AS records
            FROM runs ORDER BY runs.id"""))

    def recent_latencies(self, backend: str, method: str, model: str | None = None,
                         limit: int = 200) -> list[float]:
        """Milliseconds per record of the latest records one backend (and model) answered
        with ``method``: what a new run of the same kind will probably take."""
        sql = """SELECT records.latency_ms FROM records JOIN runs ON runs.id = records.run_id
                 WHERE runs.backend = ? AND records.method = ? AND records.latency_ms > 0"""
        params: list = [backend, method]
        if model is not None:
            sql += " AND runs.model = ?"
            params.append(model)
        sql += " ORDER BY records.id DESC LIMIT ?"
        return [row[0] for row in self.db.execute(sql, [*params, limit])]

    # ---- records -------------------------------------------------------------------------

    def upsert_records(self, rows: list[dict]) -> int:
        now = _now()
        for row in rows:
            row.setdefault("created_at", now)
            row.setdefault("respondent_kind", "persona")
        with self.transaction():
            self.db.conn.executemany(_UPSERT_RECORD, [_record_params(r) for r in rows])
        return len(rows)

    def record_frame(self, run_id: int, split: str = "all", respondents: list[str] | None = None):
        """Records joined with their question's fields, as a pandas DataFrame."""
        import pandas as pd

        sql = """
            SELECT r.question_id, r.respondent, r.respondent_kind, r.answer, r.p_a, r.p_b, r.p_c,
                   r.raw_text, r.method, q.dimension, q.framing, q.topic, q.split, q.group_name
            FROM records r JOIN questions q ON q.id = r.question_id
            WHERE r.run_id = ?"""
        args: list[Any] = [run_id]
        if split != "all":
            sql += " AND q.split = ?"
            args.append(split)
        if respondents:
            sql += f" AND r.respondent IN ({','.join('?' * len(respondents))})"
            args.extend(respondents)
        return pd.read_sql_query(sql, self.db.conn, params=args)

    def record_count(self, run_id: int | None = None) -> int:
        if run_id is None:
            return self.db.execute("SELECT count(*) FROM records").fetchone()[0]
        return self.db.execute("SELECT count(*) FROM records WHERE run_id = ?",
                               [run_id]).fetchone()[0]

    # ---- events --------------------------------------------------------------------------

    def add_event(self, kind: str, payload: dict, *, run_id: int | None = None,
                  training_id: int | None = None) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, training_id, time, kind, payload) VALUES (?, ?, ?, ?, ?)",
            [run_id, training_id, _now(), kind, json.dumps(payload, sort_keys=True)])

    def events(self, *, run_id: int | None = None, training_id: int | None = None,
               after_id: int = 0) -> list[dict]:
        clauses, args = ["id > ?"], [after_id]
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        if training_id is not None:
            clauses.append("training_id = ?")
            args.append(training_id)
        rows = list(self.db.query(
            f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY id", args))
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    # ---- weights -------------------------------------------------------------------------

    def save_weights(self, run_id: int, target: str, alpha: float, beta: float, split: str,
                     tiers: list[dict], weights: dict[str, tuple[int, float]],
                     skipped: list[str]) -> int:
        with self.transaction():
            self.db.execute(
                "DELETE FROM weight_sets WHERE run_id = ? AND target = ? AND alpha = ? "
                "AND beta = ? AND split = ?", [run_id, target, alpha, beta, split])
            cur = self.db.execute(
                "INSERT INTO weight_sets (run_id, target, alpha, beta, split, tiers, skipped, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, target, alpha, beta, split, json.dumps(tiers), json.dumps(skipped), _now()])
            set_id = cur.lastrowid
            self.db.conn.executemany(
                "INSERT INTO weights (set_id, question_id, tier, weight) VALUES (?, ?, ?, ?)",
                [(set_id, qid, tier, w) for qid, (tier, w) in weights.items()])
        return set_id

    def load_weights(self, run_id: int, target: str, alpha: float = 1.0, beta: float = 1.0,
                     split: str = "train") -> dict[str, tuple[int, float]] | None:
        rows = list(self.db.query(
            "SELECT id FROM weight_sets WHERE run_id = ? AND target = ? AND alpha = ? AND beta = ? "
            "AND split = ?", [run_id, target, alpha, beta, split]))
        if not rows:
            return None
        return {r["question_id"]: (r["tier"], r["weight"]) for r in self.db.query(
            "SELECT question_id, tier, weight FROM weights WHERE set_id = ?", [rows[0]["id"]])}

    # ---- trainings -----------------------------------------------------------------------

    def create_training(self, name: str, method: str, target: str, base_model: str,
                        from_run: str | None, config: dict, status: str = "created") -> dict:
        now = _now()
        self.db["trainings"].insert({
            "name": name, "method": method, "target": target, "base_model": base_model,
            "from_run": from_run, "config": json.dumps(config, sort_keys=True), "status": status,
            "adapter_path": None, "created_at": now, "updated_at": now,
        })
        return self.get_training(name)

    def find_training(self, name: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM trainings WHERE name = ?", [name]))
        if not rows:
            return None
        row = rows[0]
        row["config"] = json.loads(row["config"] or "{}")
        return row

    def get_training(self, name: str) -> dict:
        row = self.find_training(name)
        if row is None:
            known = [r["name"] for r in self.db.query("SELECT name FROM trainings ORDER BY id")]
            hint = (f"; trainings here: {', '.join(known)}" if known
                    else "; this database has no trainings yet")
            raise NotFoundError(f"no training named '{name}'{hint}")
        return row

    def update_training(self, training_id: int, *, status: str | None = None,
                        adapter_path: str | None = None, config: dict | None = None) -> None:
        sets, args = ["updated_at = ?"], [_now()]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if adapter_path is not None:
            sets.append("adapter_path = ?")
            args.append(adapter_path)
        if config is not None:
            sets.append("config = ?")
            args.append(json.dumps(config, sort_keys=True))
        self.db.execute(f"UPDATE trainings SET {', '.join(sets)} WHERE id = ?", [*args, training_id])

    def list_trainings(self, *, target: str | None = None, method: str | None = None,
                       status: str | None = None) -> list[dict]:
        clauses, args = [], []
        for column, value in (("target", target), ("method", method), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = list(self.db.query(f"SELECT * FROM trainings{where} ORDER BY id", args))
        for row in rows:
            row["config"] = json.loads(row["config"] or "{}")
        return rows

    # ---- overview ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        q = self.db.execute
        return {
            "questions": q("SELECT count(*) FROM questions").fetchone()[0],
            "personas": q("SELECT count(*) FROM personas").fetchone()[0],
            "runs": q("SELECT count(*) FROM runs").fetchone()[0],
            "records": q("SELECT count(*) FROM records").fetchone()[0],
            "trainings": q("SELECT count(*) FROM trainings").fetchone()[0],
        }


RECORD_COLUMNS = ("run_id", "question_id", "respondent", "respondent_kind", "raw_text", "answer",
                  "p_a", "p_b", "p_c", "other_mass", "method", "latency_ms", "created_at")

_UPSERT_RECORD = (
    f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
    "ON CONFLICT (run_id, question_id, respondent) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RECORD_COLUMNS[3:])
)


def _record_params(row: dict) -> tuple:
    return tuple(row.get(c) for c in RECORD_COLUMNS)


def open_store(path: Path | str | None = None) -> Store:
    from fairpp_app.core.paths import default_db_path

    return Store(path if path is not None else default_db_path())

"""The SQLite store: every query the app makes, as named methods of ``Store``.

Other modules never write SQL; they call these methods (paged browsing of the bank is in
``browse``). The schema, its versioned migrations and the checks made when a file is
opened live in ``migrations``.

Records are unique per (run, question, respondent); writers upsert, so rerunning an import
or a simulation never duplicates anything.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from fairpp_app.core.errors import DatabaseError, NotFoundError, UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import DEFAULT_BANK, Question
from fairpp_app.store.analysis_rows import AnalysisRows
from fairpp_app.store.common import (  # noqa: F401  (TWIN_FIELDS, twin_sql: browse and tests import them from here)
    TWIN_FIELDS,
    _now,
    twin_sql,
)
from fairpp_app.store.migrations import (  # noqa: F401  (re-exported: tests and tools use them)
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    check_file,
    schema_version,
    validate_and_upgrade,
)
from fairpp_app.store.ownership_rows import OwnershipRows

# Connections this process holds, per database file (its real path). POSIX record locks
# belong to a process, not to a file descriptor: closing *any* descriptor of the file drops
# every lock this process holds on it, the SQLite connections' included. Another process
# closing its last connection then believes it is the last one, checkpoints and removes the
# WAL under our open connections (SQLITE_IOERR_SHORT_READ, SQLITE_CORRUPT on their next read).
# So the header check that opens the file runs only while this process has it closed.
_OPEN: dict[str, int] = {}
_OPEN_LOCK = threading.Lock()


class Store(OwnershipRows, AnalysisRows):
    """A fairpp database file."""

    def __init__(self, path: Path | str, *, create: bool = True,
                 upgrade_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self._key: str | None = None
        self._reader = False  # see refuse_writes
        with _OPEN_LOCK:
            key = os.path.realpath(self.path)
            if not _OPEN.get(key):  # see _OPEN: never while a connection of ours is open
                check_file(self.path)
            if not self.path.exists() and not create:
                raise NotFoundError(f"no database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                                   isolation_level=None)
            _OPEN[key] = _OPEN.get(key, 0) + 1
            self._key, self._conn = key, conn
        try:
            self.db = sqlite_utils.Database(conn)
            validate_and_upgrade(self.db, self.path, upgrade_to)
        except DatabaseError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise DatabaseError(
                f"{self.path} cannot be used as a fairpp database: {exc} "
                f"({getattr(exc, 'sqlite_errorname', 'SQLITE_ERROR')}). "
                "The file was left untouched.") from None

    def refuse_writes(self) -> None:
        """From now on this connection only reads (SQLite's ``query_only``: a write raises),
        and it no longer marks vanished owners' rows ``interrupted`` on reading. The ranks
        of a training launched across processes other than rank 0 open the store this way."""
        self.db.execute("PRAGMA query_only = ON")
        self._reader = True

    @property
    def version(self) -> int:
        return schema_version(self.db)

    def close(self) -> None:
        with _OPEN_LOCK:
            if self._key is None:
                return  # closed already
            self._conn.close()
            _OPEN[self._key] -= 1
            if not _OPEN[self._key]:
                del _OPEN[self._key]
            self._key = None

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

    def upsert_questions(self, questions: Iterable[Question]) -> int:
        # Only the columns this file has: a store opened at an older version (upgrade_to)
        # still takes questions, without the fields later versions added. One executemany:
        # a release import writes 34,089 questions and sqlite-utils' upsert_all took seconds.
        have = set(self.db["questions"].columns_dict)
        columns = [name for name in Question.__dataclass_fields__ if name in have]
        sql = (f"INSERT INTO questions ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id"))
        rows = [tuple(getattr(q, c) for c in columns) for q in questions]
        with self.transaction():
            self.db.conn.executemany(sql, rows)
        return len(rows)

    def question_count(self, split: str | None = None, bank: str | None = DEFAULT_BANK) -> int:
        """Questions of one bank (all banks with ``bank=None``), of one split or all."""
        clauses, args = [], []
        if bank is not None:
            clauses.append("bank = ?")
            args.append(bank)
        if split is not None:
            clauses.append("split = ?")
            args.append(split)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.db.execute(f"SELECT count(*) FROM questions{where}", args).fetchone()[0]

    def get_question(self, qid: str) -> Question:
        rows = list(self.db.query("SELECT * FROM questions WHERE id = ?", [qid]))
        if not rows:
            raise NotFoundError(f"no question with id {qid}")
        return Question(**rows[0])

    def questions(self, split: str = "all", where: str = "", params: list | None = None,
                  limit: int | None = None, bank: str | None = DEFAULT_BANK) -> list[Question]:
        """Questions of one bank (all banks with ``bank=None``): a split never mixes two."""
        clauses, args = [], list(params or [])
        if split != "all":
            clauses.append("split = ?")
            args.insert(0, split)
        if bank is not None:
            clauses.insert(0, "bank = ?")
            args.insert(0, bank)
        if where:
            clauses.append(f"({where})")
        sql = "SELECT * FROM questions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Question(**row) for row in self.db.query(sql, args)]

    def question_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM questions")}

    def question_rows(self, ids: Iterable[str]) -> dict[str, dict]:
        """Question id -> its row as a dict, for the given ids that exist."""
        ids = list(ids)
        rows: dict[str, dict] = {}
        for start in range(0, len(ids), 900):  # under SQLite's limit of bound parameters
            part = ids[start:start + 900]
            for row in self.db.query(
                    f"SELECT * FROM questions WHERE id IN ({','.join('?' * len(part))})", part):
                rows[row["id"]] = row
        return rows

    def scenario_parents(self) -> set[str]:
        """Ids of the template questions that already have a scenario question."""
        return {r[0] for r in self.db.execute(
            "SELECT parent_id FROM questions WHERE kind = 'scenario' AND parent_id IS NOT NULL")}

    def question_stats(self, bank: str = DEFAULT_BANK) -> dict[str, dict[str, int]]:
        """Counts of one bank's questions per field; ``banks``: every bank's size."""
        fields = {"topic": "topic", "category": "category", "problem": "problem",
                  "group_type": "group_type", "group": "group_name", "dimension": "dimension",
                  "framing": "framing", "split": "split", "kind": "kind"}
        out: dict[str, Any] = {"total": self.question_count(bank=bank), "bank": bank}
        for label, column in fields.items():
            out[label] = {str(k): n for k, n in self.db.execute(
                f"SELECT {column}, count(*) FROM questions WHERE bank = ? GROUP BY {column} "
                f"ORDER BY {column}", [bank])}
        out["banks"] = {b: sum(splits.values()) for b, splits in self.bank_counts().items()}
        return out

    # ---- personas ------------------------------------------------------------------------

    def sync_personas(self, personas: Iterable[Persona] | Callable[[], Iterable[Persona]]
                      ) -> list[Persona]:
        """Keep a copy of the persona definitions used, so a database explains itself; returns
        the definitions written.

        Give the loader (``load_personas``) rather than its result where the user's file may
        change meanwhile: it is called under the write lock, so a sync that began before an
        edit cannot write the older definitions over the edit's own sync.
        Refused (UsageError) when a slug is stored under another number: records name
        personas by slug, so the database would no longer say which persona answered.
        """
        with self.transaction():
            personas = list(personas() if callable(personas) else personas)
            stored = {slug: number for number, slug in self.db.execute(
                "SELECT number, slug FROM personas")}
            for p in personas:
                if stored.get(p.slug, p.number) != p.number:
                    raise UsageError(
                        f"persona '{p.slug}' is persona {stored[p.slug]} in {self.path}, but "
                        f"your personas give it number {p.number}; give it number "
                        f"{stored[p.slug]} again, or another slug")
            self.db["personas"].upsert_all([p.as_row() for p in personas], pk="number")
        return personas

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

    def runs_answering(self, respondent: str, split: str, *, kind: str | None = None,
                       model: str | None = None, exclude: str | None = None,
                       bank: str = DEFAULT_BANK) -> list[str]:
        """Names of the runs with answers of ``respondent`` on ``split`` of ``bank``, most
        answers first (the newer run first on a tie); ``kind`` is a respondent kind,
        ``model`` the run's model, ``exclude`` a run name to leave out."""
        sql = """SELECT runs.name AS name, count(*) AS n FROM records
                 JOIN runs ON runs.id = records.run_id JOIN questions q ON q.id = records.question_id
                 WHERE records.respondent = ? AND q.split = ? AND q.bank = ?"""
        args: list = [respondent, split, bank]
        if kind is not None:
            sql += " AND records.respondent_kind = ?"
            args.append(kind)
        if model is not None:
            sql += " AND runs.model = ?"
            args.append(model)
        if exclude is not None:
            sql += " AND runs.name != ?"
            args.append(exclude)
        sql += " GROUP BY runs.id ORDER BY n DESC, runs.id DESC"
        return [r["name"] for r in self.db.query(sql, args)]

    # ---- records -------------------------------------------------------------------------

    def answered(self, run_id: int) -> set[tuple[str, str]]:
        """The (question id, respondent) pairs a run already has records for."""
        return {(q, r) for q, r in self.db.execute(
            "SELECT question_id, respondent FROM records WHERE run_id = ?", [run_id])}

    def export_records(self, run_id: int):
        """A run's records with what an export writes of them, as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT question_id, respondent, respondent_kind, raw_text, answer, p_a, p_b, p_c "
            "FROM records WHERE run_id = ?", self.db.conn, params=[run_id])

    def upsert_records(self, rows: list[dict]) -> int:
        now = _now()
        for row in rows:
            row.setdefault("created_at", now)
            row.setdefault("respondent_kind", "persona")
        with self.transaction():
            self.db.conn.executemany(_UPSERT_RECORD, [_record_params(r) for r in rows])
        return len(rows)

    def record_frame(self, run_id: int, split: str = "all", respondents: list[str] | None = None,
                     bank: str | None = None):
        """Records joined with their question's fields, as a pandas DataFrame: those of one
        bank, by default the run's own (:meth:`run_bank`)."""
        return self._record_query(
            "r.question_id, r.respondent, r.respondent_kind, r.answer, r.p_a, r.p_b, r.p_c, "
            "r.raw_text, r.method, q.dimension, q.framing, q.topic, q.split, q.group_name",
            run_id, split, respondents, bank)

    def _record_query(self, columns: str, run_id: int, split: str, respondents: list[str] | None,
                      bank: str | None, where: str = ""):
        """``columns`` of a run's records on one bank (default: the run's own) and split, as a
        DataFrame; ``r`` is the record, ``q`` its question."""
        import pandas as pd

        sql = (f"SELECT {columns} FROM records r JOIN questions q ON q.id = r.question_id "
               f"WHERE r.run_id = ? AND q.bank = ?{where}")
        args: list[Any] = [run_id, bank or self.run_bank(run_id)]
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

    def latest_event(self, *, run_id: int | None = None, kind: str | None = None) -> dict | None:
        """The newest event (of a run, of ``kind``), None when there is none: where a reader
        that joins a run late starts following it."""
        clauses, args = ["1"], []
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        rows = list(self.db.query(
            f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT 1", args))
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows[0] if rows else None

    # ---- weights -------------------------------------------------------------------------

    def save_weights(self, run_id: int, target: str, alpha: float, beta: float, split: str,
                     tiers: list[dict], weights: dict[str, tuple[int, float]],
                     skipped: list[str], bank: str | None = None) -> int:
        """Store a weight set, replacing the one of the same key (run, target, bank, alpha,
        beta, split). ``bank``: the bank of the weighted questions, read from them when not
        given (a split never mixes banks; fairpp when the set weighs no question)."""
        if bank is None:
            first = next(iter(weights), None) or next(iter(skipped), None)
            row = self.db.execute("SELECT bank FROM questions WHERE id = ?",
                                  [first]).fetchone() if first else None
            bank = row[0] if row else DEFAULT_BANK
        key = [run_id, target, bank, alpha, beta, split]
        with self.transaction():
            self.db.execute(
                "DELETE FROM weight_sets WHERE run_id = ? AND target = ? AND bank = ? "
                "AND alpha = ? AND beta = ? AND split = ?", key)
            cur = self.db.execute(
                "INSERT INTO weight_sets (run_id, target, bank, alpha, beta, split, tiers, "
                "skipped, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*key, json.dumps(tiers), json.dumps(skipped), _now()])
            set_id = cur.lastrowid
            self.db.conn.executemany(
                "INSERT INTO weights (set_id, question_id, tier, weight) VALUES (?, ?, ?, ?)",
                [(set_id, qid, tier, w) for qid, (tier, w) in weights.items()])
        return set_id

    def load_weights(self, run_id: int, target: str, alpha: float = 1.0, beta: float = 1.0,
                     split: str = "train", bank: str = DEFAULT_BANK
                     ) -> dict[str, tuple[int, float]] | None:
        """The stored weights of one key (question id -> (tier, weight)), None when unsaved."""
        rows = list(self.db.query(
            "SELECT id FROM weight_sets WHERE run_id = ? AND target = ? AND bank = ? "
            "AND alpha = ? AND beta = ? AND split = ?", [run_id, target, bank, alpha, beta, split]))
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
        self.reap_trainings()
        rows = list(self.db.query("SELECT * FROM trainings WHERE name = ?", [name]))
        if not rows:
            return None
        row = rows[0]
        row["config"] = json.loads(row["config"] or "{}")
        row["owner"] = json.loads(row["owner"]) if row.get("owner") else None
        return row

    def get_training(self, name: str) -> dict:
        row = self.find_training(name)
        if row is None:
            known = [r["name"] for r in self.db.query("SELECT name FROM trainings ORDER BY id")]
            hint = (f"; trainings here: {', '.join(known)}" if known
                    else "; this database has no trainings yet")
            raise NotFoundError(f"no training named '{name}'{hint}")
        return row

    def training_target(self, training_id: int) -> str | None:
        """The target persona's slug of a training, or None when there is no such training."""
        row = self.db.execute("SELECT target FROM trainings WHERE id = ?",
                              [training_id]).fetchone()
        return row[0] if row else None

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
        self.reap_trainings()
        rows = list(self.db.query(f"SELECT * FROM trainings{where} ORDER BY id", args))
        for row in rows:
            row["config"] = json.loads(row["config"] or "{}")
            row["owner"] = json.loads(row["owner"]) if row.get("owner") else None
        return rows

    # ---- banks (see questions.BANKS) ------------------------------------------------------

    def run_bank(self, run_id: int) -> str:
        """The bank a run's answers are about: fairpp's when it has any answer there (or none
        at all), else the bank most of its answers are in."""
        rows = self.db.execute(
            "SELECT q.bank, count(*) AS n FROM records r JOIN questions q ON q.id = r.question_id "
            "WHERE r.run_id = ? GROUP BY q.bank ORDER BY n DESC", [run_id]).fetchall()
        banks = [bank for bank, _ in rows]
        return DEFAULT_BANK if not banks or DEFAULT_BANK in banks else banks[0]

    def bank_counts(self) -> dict[str, dict[str, int]]:
        """Questions per bank and split: {bank: {split: count}}."""
        out: dict[str, dict[str, int]] = {}
        for bank, split, n in self.db.execute(
                "SELECT bank, split, count(*) FROM questions GROUP BY bank, split ORDER BY bank, split"):
            out.setdefault(bank, {})[split] = n
        return out

    def record_state(self, run_id: int) -> dict[tuple[str, str], tuple]:
        """(question id, respondent) -> (answer, raw text, p_a, p_b, p_c) of a run's records:
        what an import compares a file's answers with."""
        return {(qid, who): (answer, raw, pa, pb, pc) for qid, who, answer, raw, pa, pb, pc in
                self.db.execute("SELECT question_id, respondent, answer, raw_text, p_a, p_b, p_c "
                                "FROM records WHERE run_id = ?", [run_id])}

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
                  "p_a", "p_b", "p_c", "other_mass", "method", "latency_ms", "created_at",
                  # both option orders of a --debias permute record (schema v6); None otherwise
                  "p_a_fwd", "p_b_fwd", "p_c_fwd", "p_a_swap", "p_b_swap", "p_c_swap")

_UPSERT_RECORD = (
    f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
    "ON CONFLICT (run_id, question_id, respondent) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RECORD_COLUMNS[3:])
)


def _record_params(row: dict) -> tuple:
    return tuple(row.get(c) for c in RECORD_COLUMNS)


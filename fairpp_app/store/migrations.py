"""The schema of a fairpp database, its versioned migrations, and the checks on opening.

The schema version lives in ``PRAGMA user_version`` and each version has one upgrade
function (``_v1``, ``_v2``, ...), applied in order inside one transaction, so an older
file is brought forward without losing rows. ``PRAGMA application_id`` marks the file as
ours: a file that is not SQLite, is damaged, or is some other program's database is
refused with a message and never touched. The queries live in ``database.Store``; this
module only knows what the tables look like and how a file gets there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from fairpp_app.core.errors import DatabaseError

APPLICATION_ID = 0x46505031  # "FPP1"
SQLITE_MAGIC = b"SQLite format 3\x00"


# --- one upgrade function per version --------------------------------------------------------------------------

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


def _v4(db: sqlite_utils.Database) -> None:
    """Who works on a training, as on a run: owner as JSON, and the owner's last heartbeat."""
    db.execute("ALTER TABLE trainings ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE trainings ADD COLUMN heartbeat REAL")


def _v5(db: sqlite_utils.Database) -> None:
    """Question banks: fairpp's own wording and the official release's, side by side.

    Every question so far is fairpp's (the default fills them in); ``twin_id`` links an
    official question to the fairpp template question it words differently. Questions are
    selected by bank and split together, hence the index on both."""
    db.execute("ALTER TABLE questions ADD COLUMN bank TEXT NOT NULL DEFAULT 'fairpp'")
    db.execute("ALTER TABLE questions ADD COLUMN twin_id TEXT")
    db.execute("CREATE INDEX idx_questions_bank_split ON questions(bank, split)")


def _v6(db: sqlite_utils.Database) -> None:
    """Both option orders of a ``--debias permute`` record, and human reference surveys.

    ``records.p_*`` stays the average of the two orders, so every reader of an old run (or
    of a run in one order) reads as before; the ``*_fwd`` columns hold the order as shown
    and the ``*_swap`` columns the order with A and B swapped, mapped back onto the original
    options, so the two compare option by option. NULL where a record was scored once.

    A survey holds human answer shares per segment, for one question or for a (topic,
    dimension) cell, with the number of people behind each share; each segment is mapped to
    the persona that stands for it. The twin index finds a question's other framing.
    """
    for order in ("fwd", "swap"):
        for letter in "abc":
            db.execute(f"ALTER TABLE records ADD COLUMN p_{letter}_{order} REAL")
    db.execute("""
        CREATE TABLE surveys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT,
            created_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE survey_segments (
            survey_id INTEGER NOT NULL REFERENCES surveys(id) ON DELETE CASCADE,
            segment TEXT NOT NULL,
            persona TEXT NOT NULL,
            PRIMARY KEY (survey_id, segment)
        )""")
    db.execute("""
        CREATE TABLE survey_shares (
            id INTEGER PRIMARY KEY,
            survey_id INTEGER NOT NULL REFERENCES surveys(id) ON DELETE CASCADE,
            segment TEXT NOT NULL,
            question_id TEXT REFERENCES questions(id),
            topic TEXT,
            dimension INTEGER,
            share_a REAL NOT NULL, share_b REAL NOT NULL, share_c REAL NOT NULL,
            n INTEGER NOT NULL CHECK (n > 0),
            CHECK ((question_id IS NULL) != (topic IS NULL AND dimension IS NULL))
        )""")
    db.execute("CREATE UNIQUE INDEX idx_survey_shares_item ON survey_shares "
               "(survey_id, segment, coalesce(question_id, ''), coalesce(topic, ''), "
               "coalesce(dimension, 0))")
    db.execute("CREATE INDEX idx_survey_shares_question ON survey_shares(question_id)")
    # A question's other framing in one lookup (answer consistency, the inspector's `i`).
    db.execute("CREATE INDEX idx_questions_twin ON questions(problem, group_name, dimension, kind)")




def _v7(db: sqlite_utils.Database) -> None:
    """Position sets (``fairpp position --name``): which models were placed among the
    personas of which run, on which split; ``models`` is JSON (label, spec, run per model)."""
    db.execute("""
        CREATE TABLE position_sets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            persona_run TEXT NOT NULL,
            split TEXT NOT NULL,
            models TEXT NOT NULL DEFAULT '[]',
            params TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")




def _v8(db: sqlite_utils.Database) -> None:
    """Weight sets keyed by bank too (a run with answers in both banks has a set per bank),
    and an index from a fairpp question to its official wordings.

    The key is the table's UNIQUE constraint, which SQLite cannot alter, so both weight
    tables are rebuilt. The old ones are renamed first (the child, then the parent, so the
    child's reference follows the parent's new name) and dropped last, child first: dropping
    a parent that still has a child would cascade-delete the child's rows. A set made before
    this version belongs to the bank of its questions (fairpp when it weighs none).

    The index on ``twin_id`` finds the official wordings of a fairpp question (wording
    consistency, the inspector's `i`)."""
    db.execute("ALTER TABLE weights RENAME TO weights_v7")
    db.execute("ALTER TABLE weight_sets RENAME TO weight_sets_v7")
    db.execute("""
        CREATE TABLE weight_sets (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            target TEXT NOT NULL,
            bank TEXT NOT NULL DEFAULT 'fairpp',
            alpha REAL NOT NULL,
            beta REAL NOT NULL,
            split TEXT NOT NULL,
            tiers TEXT NOT NULL,
            skipped TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            UNIQUE (run_id, target, bank, alpha, beta, split)
        )""")
    db.execute("""
        CREATE TABLE weights (
            set_id INTEGER NOT NULL REFERENCES weight_sets(id) ON DELETE CASCADE,
            question_id TEXT NOT NULL REFERENCES questions(id),
            tier INTEGER NOT NULL,
            weight REAL NOT NULL,
            PRIMARY KEY (set_id, question_id)
        )""")
    db.execute("""
        INSERT INTO weight_sets (id, run_id, target, bank, alpha, beta, split, tiers, skipped,
                                 created_at)
        SELECT s.id, s.run_id, s.target,
               coalesce((SELECT q.bank FROM weights_v7 w JOIN questions q ON q.id = w.question_id
                         WHERE w.set_id = s.id LIMIT 1), 'fairpp'),
               s.alpha, s.beta, s.split, s.tiers, s.skipped, s.created_at
        FROM weight_sets_v7 s""")
    db.execute("INSERT INTO weights SELECT set_id, question_id, tier, weight FROM weights_v7")
    db.execute("DROP TABLE weights_v7")
    db.execute("DROP TABLE weight_sets_v7")
    db.execute("CREATE INDEX idx_questions_twin_id ON questions(twin_id)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
SCHEMA_VERSION = len(MIGRATIONS)


def check_file(path: Path) -> None:
    """Refuse anything at ``path`` that is not an SQLite database (before SQLite opens it).

    It opens and closes the file, and closing any descriptor of a file drops every POSIX lock
    the process holds on it: the Store calls it only while the process has no connection to
    the file open (see ``database._OPEN``)."""
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


def _pragma(db: sqlite_utils.Database, name: str) -> int:
    return db.execute(f"PRAGMA {name}").fetchone()[0]


def schema_version(db: sqlite_utils.Database) -> int:
    return _pragma(db, "user_version")


def validate_and_upgrade(db: sqlite_utils.Database, path: Path, upgrade_to: int) -> None:
    """Refuse a damaged file or another program's database, then migrate up to ``upgrade_to``."""
    ok = db.execute("PRAGMA quick_check").fetchone()[0]
    if ok != "ok":
        raise DatabaseError(f"{path} is damaged (SQLite integrity check: {ok}); "
                            "fairpp will not write to it")
    app_id = _pragma(db, "application_id")
    version = _pragma(db, "user_version")
    tables = db.table_names()
    if app_id != APPLICATION_ID:
        if tables or version:
            raise DatabaseError(
                f"{path} is an SQLite database of another program "
                f"(tables: {', '.join(tables[:5]) or 'none'}); fairpp will not modify it. "
                "Pass --db with another path.")
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} was written by a newer fairpp (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade fairpp to open it")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    if version < upgrade_to:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have upgraded meanwhile.
            version = _pragma(db, "user_version")
            for step in range(version, upgrade_to):
                MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

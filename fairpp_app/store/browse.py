"""Browsing the question bank page by page, and stepping through it question by question.

The bank holds 34,089 questions and a run 238,623 records, so nothing here loads them
all: a filter becomes one WHERE clause over the indexed question columns, a page is a
LIMIT/OFFSET slice in rowid order (the order the bank was built in), and "next question"
is a keyset step (``rowid > ?``) that SQLite answers from the primary key. The TUI's
question table and inspector use these functions; the CLI can use them as they are.

A filter always names one bank (fairpp's own unless told), as a split does everywhere else:
the two wordings of one question never show as two rows of one list.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from fairpp_app.core.questions import DEFAULT_BANK
from fairpp_app.store.database import Store, twin_sql

#: Filter field -> question column, in the order the TUI shows them.
FILTER_COLUMNS: dict[str, str] = {
    "topic": "topic", "category": "category", "problem": "problem",
    "group_type": "group_type", "group": "group_name", "dimension": "dimension",
    "framing": "framing", "split": "split",
}
PAGE_COLUMNS = ("id", "split", "kind", "topic", "category", "problem", "group_type",
                "group_name", "dimension", "framing", "text")


@dataclass(frozen=True)
class QuestionFilter:
    """Which questions to show; ``None`` (or an empty text) means "any", except for the
    bank: one bank at a time (``None`` only for callers that want every bank)."""

    topic: str | None = None
    category: str | None = None
    problem: str | None = None
    group_type: str | None = None
    group: str | None = None
    dimension: int | None = None
    framing: int | None = None
    split: str | None = None
    text: str = ""
    bank: str | None = DEFAULT_BANK

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """The SQL condition (never empty) and its parameters."""
        p = f"{alias}." if alias else ""
        clauses, args = [], []
        if self.bank is not None:
            # Unary + keeps SQLite off the bank index: with it, a page or a step in rowid
            # order would sort the whole bank instead of walking the rowids it needs.
            clauses.append(f"+{p}bank = ?")
            args.append(self.bank)
        for name, column in FILTER_COLUMNS.items():
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{p}{column} = ?")
                args.append(value)
        needle = self.text.strip()
        if needle:
            like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            cols = ("text", "option_a", "option_b", "option_c", "problem", "group_name")
            clauses.append("(" + " OR ".join(f"{p}{c} LIKE ? ESCAPE '\\'" for c in cols)
                           + f" OR {p}id = ?)")
            args.extend([like] * len(cols) + [needle])
        return (" AND ".join(clauses) or "1"), args

    def with_(self, **changes: Any) -> QuestionFilter:
        return replace(self, **changes)

    def is_empty(self) -> bool:
        return self == QuestionFilter()

    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if f.name not in ("text", "bank") and getattr(self, f.name) is not None]
        if self.bank != DEFAULT_BANK:  # fairpp's own bank goes without saying
            parts.insert(0, f"bank={self.bank or 'all'}")
        if self.text.strip():
            parts.append(f"text~'{self.text.strip()}'")
        return ", ".join(parts) or "all questions"

    def as_dict(self) -> dict:
        return asdict(self)


def count(store: Store, flt: QuestionFilter) -> int:
    where, args = flt.where()
    return store.db.execute(f"SELECT count(*) FROM questions WHERE {where}", args).fetchone()[0]


def page(store: Store, flt: QuestionFilter, offset: int = 0, limit: int = 100) -> list[dict]:
    """One page of questions (a few columns each) in bank order."""
    where, args = flt.where()
    cur = store.db.execute(
        f"SELECT {', '.join(PAGE_COLUMNS)} FROM questions WHERE {where} "
        f"ORDER BY rowid LIMIT ? OFFSET ?", [*args, int(limit), max(0, int(offset))])
    return [dict(zip(PAGE_COLUMNS, row)) for row in cur]


def _rowid(store: Store, qid: str) -> int | None:
    row = store.db.execute("SELECT rowid FROM questions WHERE id = ?", [qid]).fetchone()
    return row[0] if row else None


def position(store: Store, flt: QuestionFilter, qid: str) -> int | None:
    """0-based index of a question among the filtered ones, or None when it is not there."""
    rowid = _rowid(store, qid)
    if rowid is None:
        return None
    where, args = flt.where()
    inside = store.db.execute(f"SELECT 1 FROM questions WHERE rowid = ? AND {where}",
                              [rowid, *args]).fetchone()
    if inside is None:
        return None
    return store.db.execute(f"SELECT count(*) FROM questions WHERE rowid < ? AND {where}",
                            [rowid, *args]).fetchone()[0]


def neighbour(store: Store, flt: QuestionFilter, qid: str, step: int = 1) -> str | None:
    """The id of the next (step > 0) or previous question in the filter, or None at the end."""
    rowid = _rowid(store, qid)
    if rowid is None:
        return None
    where, args = flt.where()
    op, order = (">", "ASC") if step > 0 else ("<", "DESC")
    row = store.db.execute(
        f"SELECT id FROM questions WHERE rowid {op} ? AND {where} ORDER BY rowid {order} "
        f"LIMIT 1 OFFSET ?", [rowid, *args, abs(step) - 1]).fetchone()
    return row[0] if row else None


def next_matching(store: Store, flt: QuestionFilter, qid: str | None, run_id: int,
                  what: str) -> str | None:
    """The next question after ``qid`` in the filter where, in run ``run_id``, the personas
    disagree (``what="disagree"``) or some answer is unparsed (``what="unparsed"``)."""
    if what == "disagree":
        having = "count(DISTINCT r.answer) > 1"
        kind = "AND r.respondent_kind = 'persona'"
    elif what == "unparsed":
        having = "sum(r.answer IS NULL) > 0"
        kind = ""
    else:
        raise ValueError(f"unknown condition {what!r}")
    start = _rowid(store, qid) if qid else 0
    where, args = flt.where("q")
    row = store.db.execute(
        f"SELECT q.id FROM questions q JOIN records r ON r.question_id = q.id AND r.run_id = ? "
        f"{kind} WHERE q.rowid > ? AND {where} GROUP BY q.rowid HAVING {having} "
        f"ORDER BY q.rowid LIMIT 1", [run_id, start or 0, *args]).fetchone()
    return row[0] if row else None


def facet_values(store: Store, bank: str | None = DEFAULT_BANK) -> dict[str, list]:
    """Distinct values of every filter column in one bank (every bank with None), for the
    filter widgets."""
    # With one bank there is nothing to leave out, and each DISTINCT stays a walk along its
    # column's index (a WHERE on the bank makes it sort the bank's rows instead).
    others = store.db.execute("SELECT 1 FROM questions WHERE bank != ? LIMIT 1",
                              [bank]).fetchone() if bank is not None else None
    where, args = ("WHERE bank = ?", [bank]) if others else ("", [])
    out = {}
    for name, column in FILTER_COLUMNS.items():
        out[name] = [r[0] for r in store.db.execute(
            f"SELECT DISTINCT {column} FROM questions {where} ORDER BY {column}", args)]
    return out


# ---- one question in one run ------------------------------------------------------------

def runs_with_records(store: Store, personas_only: bool = False) -> list[dict]:
    """Runs that hold answers, newest first (name, id, status, records).

    ``personas_only`` keeps the runs with persona answers: the ones a training can learn
    from (an ``eval-NAME`` run holds only a model's answers).
    """
    where = "WHERE records.respondent_kind = 'persona' " if personas_only else ""
    return list(store.db.query(
        "SELECT runs.id, runs.name, runs.status, runs.kind, count(records.id) AS records "
        f"FROM runs JOIN records ON records.run_id = runs.id {where}"
        "GROUP BY runs.id ORDER BY runs.id DESC"))


def question_records(store: Store, run_id: int, qid: str) -> list[dict]:
    """Every respondent's record for one question of a run, personas first by number."""
    return list(store.db.query(
        "SELECT r.respondent, r.respondent_kind, r.answer, r.p_a, r.p_b, r.p_c, r.raw_text, "
        "r.method, r.latency_ms, r.other_mass, p.number, p.name "
        "FROM records r LEFT JOIN personas p ON p.slug = r.respondent "
        "WHERE r.run_id = ? AND r.question_id = ? "
        "ORDER BY r.respondent_kind DESC, p.number, r.respondent", [run_id, qid]))


def majority(records: list[dict]) -> tuple[str | None, dict[str, int]]:
    """The personas' most frequent parsed answer (None on a tie or none) and the counts."""
    counts = Counter(r["answer"] for r in records
                     if r["respondent_kind"] == "persona" and r["answer"] is not None)
    tally = {L: counts.get(L, 0) for L in "ABC"}
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None, tally
    return ranked[0][0], tally


def question_tier(records: list[dict], target: str) -> int | None:
    """The paper's tier of this question for the target persona, from its records."""
    from fairpp_app.core.weighting import tier_of

    persona = {r["respondent"]: r["answer"] for r in records if r["respondent_kind"] == "persona"}
    if persona.get(target) is None:
        return None
    return tier_of(persona[target], [a for s, a in persona.items() if s != target])



def _argmax_sql(prefix: str, order: str) -> str:
    """SQL for the winning letter's index of one option order (ties to the first letter, as
    ``OptionScores.answer`` breaks them)."""
    a, b, c = (f"{prefix}p_{x}_{order}" for x in "abc")
    return f"(CASE WHEN {a} >= {b} AND {a} >= {c} THEN 0 WHEN {b} >= {c} THEN 1 ELSE 2 END)"


def next_inconsistent(store: Store, flt: QuestionFilter, qid: str | None,
                      run_id: int) -> str | None:
    """The next question after ``qid`` in the filter where, in run ``run_id``, a respondent
    changed its answer when options A and B were swapped, or answered the same question
    differently in its other framing or in the other bank's wording (core/consistency.py
    defines the checks)."""
    start = _rowid(store, qid) if qid else 0
    where, args = flt.where("q")
    table, same = twin_sql("t", "q")
    # CROSS JOIN keeps the questions outside, in rowid order: the first match ends the search;
    # in the wording check it starts from the official wordings of a question (a handful)
    # rather than from every record of the respondent.
    row = store.db.execute(
        f"""SELECT q.id FROM questions q
            CROSS JOIN records r ON r.question_id = q.id AND r.run_id = ?
            WHERE q.rowid > ? AND {where} AND (
              (r.p_a_fwd IS NOT NULL AND r.p_a_swap IS NOT NULL
               AND {_argmax_sql('r.', 'fwd')} != {_argmax_sql('r.', 'swap')})
              OR (r.answer IS NOT NULL AND EXISTS (
                SELECT 1 FROM {table} JOIN records o ON o.question_id = t.id
                 AND o.run_id = r.run_id AND o.respondent = r.respondent
                WHERE {same} AND t.framing != q.framing AND o.answer IS NOT NULL
                  AND o.answer != r.answer))
              OR (r.answer IS NOT NULL AND EXISTS (
                SELECT 1 FROM records w WHERE w.run_id = r.run_id AND w.respondent = r.respondent
                  AND w.question_id = q.twin_id AND w.answer IS NOT NULL
                  AND w.answer != r.answer))
              OR (r.answer IS NOT NULL AND EXISTS (
                SELECT 1 FROM questions v CROSS JOIN records w ON w.question_id = v.id
                 AND w.run_id = r.run_id AND w.respondent = r.respondent
                WHERE v.twin_id = q.id AND w.answer IS NOT NULL AND w.answer != r.answer)))
            ORDER BY q.rowid LIMIT 1""", [run_id, start or 0, *args]).fetchone()
    return row[0] if row else None

"""Import the official Fair-PP files (CSV, parquet, JSON lines, dataset folders) and fairpp's
own exports.

A row of the official layout becomes a question of the ``official`` bank, keyed, worded and
split as the file says (``official_layout``), and linked by ``twin_id`` to the fairpp template
question it words differently. A row with a known ``question_id`` (a fairpp export) is that
question; a row marked ``bank = fairpp`` is matched to fairpp's own template question. Scenario
rows (a ``simulation_question``) become scenario questions linked to their template row.

Every ``*_role_N_answer`` column becomes persona N's records, every other ``*_answer`` column
a respondent named exactly as the column without ``_answer``.

Nothing is merged or overwritten in silence: rows that land on one question are reported by
row number and none of them is imported; a row whose answer differs from the one stored for
the same run, question and respondent is reported and changes nothing unless ``replace``.
Importing a file again adds and changes nothing.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from fairpp_app.core import questions as qb
from fairpp_app.core.errors import ImportFileError
from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import Question
from fairpp_app.jobs import official_layout as layout
from fairpp_app.jobs.import_questions import Taxonomy, row_questions
from fairpp_app.jobs.official_layout import (  # noqa: F401  (parse_* re-exported for callers)
    blank,
    parse_answer,
    parse_dimension,
)
from fairpp_app.jobs.official_layout import text as cell
from fairpp_app.store.database import Store

PERSONA_COL = re.compile(r"^(?P<source>.+)_role_(?P<number>\d+)_answer$")
MODEL_COL = re.compile(r"^(?P<name>.+)_answer$")
MAX_CONFLICT_LINES = 200  # a whole file against another run's answers would print 400k lines


@dataclass
class ImportReport:
    run: str
    rows: int = 0
    matched: int = 0       # rows whose question was already stored
    added: int = 0         # template-part questions added
    scenarios: int = 0     # scenario questions added
    records: int = 0       # records written (new ones, and replaced ones with --replace)
    unchanged: int = 0     # records the file holds exactly as stored
    replaced: int = 0
    conflicting: int = 0   # answers that differ from the stored ones (kept unless --replace)
    unparsed: int = 0
    splits: dict[str, int] = field(default_factory=dict)  # "bank/split" -> rows
    respondents: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "row N: why": rows or cells skipped
    conflicts: list[str] = field(default_factory=list)  # "row N, column C: stored X, file Y"

    def as_json(self) -> dict:
        return self.__dict__.copy()

    def conflict(self, message: str) -> None:
        self.conflicting += 1
        if len(self.conflicts) < MAX_CONFLICT_LINES:
            self.conflicts.append(message)


def answer_columns(columns, personas: list[Persona]) -> tuple[dict[str, Persona], dict[str, str]]:
    """Map answer columns to personas and to model respondent names."""
    by_number = {p.number: p for p in personas}
    persona_cols: dict[str, Persona] = {}
    model_cols: dict[str, str] = {}
    for col in columns:
        col = str(col)
        m = PERSONA_COL.match(col)
        if m:
            number = int(m["number"])
            if number not in by_number:
                raise ImportFileError(f"column {col!r} names persona {number}, which is not defined")
            persona_cols[col] = by_number[number]
            continue
        m = MODEL_COL.match(col)
        if m:
            model_cols[col] = m["name"]
    slugs = [p.slug for p in persona_cols.values()]
    if len(slugs) != len(set(slugs)):
        raise ImportFileError("the file has several answer columns for the same persona "
                              "(more than one *_role_N_answer source); import them one at a time")
    return persona_cols, model_cols




@dataclass(frozen=True)
class _Column:
    """One answer column: who answered and where that respondent's raw text and
    probabilities are."""

    column: str
    respondent: str
    kind: str  # persona or model
    stem: str  # the column without "_answer"


def _columns(frame, personas: list[Persona], where: str) -> list[_Column]:
    persona_cols, model_cols = answer_columns(frame.columns, personas)
    if not persona_cols and not model_cols:
        raise ImportFileError(f"{where}: no answer columns (*_role_N_answer or *_answer) found")
    out = [_Column(c, p.slug, "persona", c[:-len("_answer")]) for c, p in persona_cols.items()]
    return out + [_Column(c, name, "model", name) for c, name in model_cols.items()]


def _letters(values: list, col: str, labels: list[str | None],
             problems: list[str]) -> list[str | None]:
    """Parse a whole answer column (a release has 13 of 34,089 cells each), caching per value;
    rows without a label (skipped already) are neither parsed nor reported."""
    cache: dict = {}
    out: list[str | None] = []
    for value, label in zip(values, labels):
        if label is None:
            out.append(False)
            continue
        try:
            out.append(cache[value])
            continue
        except (KeyError, TypeError):
            pass
        try:
            letter = parse_answer(value)
        except ValueError as exc:
            problems.append(f"{label}, column {col}: {exc}")
            letter = False  # marks the cell as skipped
        try:
            cache[value] = letter
        except TypeError:
            pass
        out.append(letter)
    return out


def _column_values(frame, name: str | None) -> list | None:
    return frame[name].tolist() if name is not None and name in frame.columns else None


def _row_number(problem: str) -> tuple[str, int]:
    found = re.search(r"row (\d+)", problem)
    return (problem[:found.start()], int(found.group(1))) if found else ("", 0)


def _same(stored: tuple, new: tuple) -> bool:
    for a, b in zip(stored, new):
        if isinstance(a, float) and isinstance(b, float):
            if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15):
                return False
        elif a != b:
            return False
    return True


def _describe(q: Question | None, qid: str) -> str:
    if q is None:
        return f"question {qid}"
    return (f"{q.topic} / {q.problem} / {q.group_name} / dimension {q.dimension} / "
            f"{'question 1' if q.framing == 1 else 'question 2'}")


def _differences(q: Question, stored: dict) -> list[str]:
    names = {"text": "wording", "option_a": "option A", "option_b": "option B",
             "option_c": "option C", "split": "split", "parent_id": "template row"}
    return [label for key, label in names.items() if stored.get(key) != getattr(q, key)]


class _Row(NamedTuple):
    table: int
    pos: int
    label: str  # "row N" as the user counts (1 = the first data row)
    qid: str
    defined: list[Question]  # the questions the row defines: its own, then a scenario's parent


def import_fairpp(store: Store, path: Path, personas: list[Persona], run_name: str | None = None,
                  progress: Callable[[int, int], None] | None = None, *,
                  split: str | None = None, replace: bool = False,
                  chunk_size: int = 2000) -> ImportReport:
    """Import a file or dataset folder into run ``run_name`` (default: its name).

    ``split`` is the split of rows the file itself does not place (no ``split`` column);
    ``replace`` lets the file's answers and wording win over stored ones that differ."""
    path = Path(path)
    if split is not None:
        named = layout.normalise_split(split)
        if named not in layout.TEMPLATE_SPLITS:
            raise ImportFileError(f"--split {split}: choose train or test (scenario rows are "
                                  "always the scenario split)")
        split = named
    tables = layout.read_tables(path, split)
    columns = [_columns(t.frame, personas, t.name) for t in tables]
    run_name = run_name or path.stem
    run = store.find_run(run_name)
    if run is None:
        run = store.create_run(run_name, "import", backend="import", mode="import",
                               params={"source": path.name}, status="finished")
    elif run["kind"] != "import":
        raise ImportFileError(f"run '{run_name}' exists and is a {run['kind']} run; "
                              "choose another name with --run")
    if store.question_count() == 0:
        store.upsert_questions(qb.build_bank())
    known = store.question_ids()
    report = ImportReport(run=run_name, rows=sum(len(t.frame) for t in tables))
    report.respondents = list(dict.fromkeys(c.respondent for cols in columns for c in cols))
    rows = _resolve(tables, known, report)
    _write_questions(store, rows, known, report, replace)
    _write_answers(store, run["id"], tables, columns, rows, report, replace, progress, chunk_size)
    report.problems.sort(key=_row_number)  # stable: a row's own problem before its cells'
    store.add_event("import", {"file": path.name, "rows": report.rows, "records": report.records,
                               "unchanged": report.unchanged, "conflicting": report.conflicting,
                               "replace": replace, "problems": len(report.problems)},
                    run_id=run["id"])
    return report


def _resolve(tables: list[layout.Table], known: set[str], report: ImportReport) -> list[_Row]:
    """Which question each row is, before anything is written: rows that land on one
    question are reported and left out, all of them."""
    tax = Taxonomy()
    rows: list[_Row] = []
    owners: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Question] = {}
    for ti, table in enumerate(tables):
        prefix = f"{table.name} " if len(tables) > 1 else ""
        for pos, row in enumerate(table.frame.to_dict("records")):
            label = f"{prefix}row {pos + 1}"
            try:
                qid, defined = row_questions(row, tax, known, table.split)
            except ValueError as exc:
                report.problems.append(f"{label}: {exc}")
                continue
            owners[qid].append(label)
            rows.append(_Row(ti, pos, label, qid, defined))
            if defined:
                first.setdefault(qid, defined[0])
    clashing = {qid for qid, labels in owners.items() if len(labels) > 1}
    for qid in sorted(clashing, key=lambda q: owners[q][0]):
        report.problems.append(
            f"{' and '.join(owners[qid])} are one question ({_describe(first.get(qid), qid)}): "
            "nothing in the file tells them apart, so none of them was imported")
    return [r for r in rows if r.qid not in clashing]


def _write_questions(store: Store, rows: list[_Row], known: set[str], report: ImportReport,
                     replace: bool) -> None:
    """Store the questions the rows define that are new (or differ, with ``replace``)."""
    own: dict[str, tuple[Question, str]] = {}
    parents: dict[str, Question] = {}
    for row in rows:
        if row.defined and row.defined[0].id == row.qid:
            own[row.qid] = (row.defined[0], row.label)
        for q in row.defined[1:]:
            parents.setdefault(q.id, q)
    stored = store.question_rows({r.qid for r in rows} & known)
    to_write: list[Question] = []
    for qid, (q, label) in own.items():
        if qid not in known:
            to_write.append(q)
            continue
        differs = _differences(q, stored[qid])
        if differs and replace:
            to_write.append(q)
        elif differs:
            report.conflict(f"{label}: {qid} is stored with another {', '.join(differs)}; "
                            "the stored question was kept")
    to_write += [q for qid, q in parents.items() if qid not in known and qid not in own]
    report.scenarios = sum(q.kind == "scenario" and q.id not in known for q in to_write)
    report.added = sum(q.kind != "scenario" and q.id not in known for q in to_write)
    report.matched = sum(r.qid in known for r in rows)
    for row in rows:
        q = own[row.qid][0].as_row() if row.qid in own else stored[row.qid]
        place = f"{q['bank']}/{q['split']}"
        report.splits[place] = report.splits.get(place, 0) + 1
    if to_write:
        store.upsert_questions(to_write)


def _write_answers(store: Store, run_id: int, tables: list[layout.Table],
                   columns: list[list[_Column]], rows: list[_Row], report: ImportReport,
                   replace: bool, progress: Callable[[int, int], None] | None,
                   chunk_size: int) -> None:
    """The records: each answer column parsed whole, then the rows in chunks (one write and
    one progress step each), each answer compared with the one stored for the run."""
    stored = store.record_state(run_id)
    done = 0
    by_table: dict[int, list[_Row]] = defaultdict(list)
    for row in rows:
        by_table[row.table].append(row)
    for ti, table in enumerate(tables):
        frame = table.frame
        entries = by_table.get(ti, [])
        labels: list[str | None] = [None] * len(frame)
        for row in entries:
            labels[row.pos] = row.label
        scenario_rows = [not blank(v) for v in _column_values(frame, "simulation_question")
                         or [None] * len(frame)]
        parsed = []
        for col in columns[ti]:
            letters = _letters(frame[col.column].tolist(), col.column, labels, report.problems)
            if col.kind == "persona":
                plain = _column_values(frame, col.stem)
                simulated = _column_values(frame, f"{col.stem}_simulation") or plain
            else:
                plain = simulated = (_column_values(frame, f"{col.stem}_raw")
                                     or _column_values(frame, col.stem))
            probs = [_column_values(frame, f"{col.stem}_prob_{x}") for x in "ABC"]
            parsed.append((col, letters, plain, simulated, probs if all(
                p is not None for p in probs) else None))
        for start in range(0, len(entries), chunk_size):
            chunk = entries[start:start + chunk_size]
            records: list[dict] = []
            for row in chunk:
                for col, letters, plain, simulated, probs in parsed:
                    letter = letters[row.pos]
                    if letter is False:
                        continue  # reported by _letters
                    raws = simulated if scenario_rows[row.pos] else plain
                    raw = cell(raws[row.pos]) if raws is not None else None
                    p = [probs[k][row.pos] for k in range(3)] if probs else None
                    p = None if p is None or any(blank(x) for x in p) else [float(x) for x in p]
                    if letter is None and raw is None and p is None:
                        continue  # this respondent did not answer this question
                    values = (letter, raw, *(p or (None, None, None)))
                    before = stored.get((row.qid, col.respondent))
                    if before is not None:
                        if _same(before, values):
                            report.unchanged += 1
                            continue
                        if not replace:
                            report.conflict(f"{row.label}, column {col.column}: "
                                            f"{_change(before, values)}")
                            continue
                        report.replaced += 1
                    records.append({
                        "run_id": run_id, "question_id": row.qid, "respondent": col.respondent,
                        "respondent_kind": col.kind, "raw_text": raw, "answer": letter,
                        "p_a": values[2], "p_b": values[3], "p_c": values[4], "method": "import",
                    })
                    report.unparsed += letter is None
            if records:
                store.upsert_records(records)
                report.records += len(records)
            done += len(chunk)
            if progress:
                progress(done, len(rows))


def _change(before: tuple, after: tuple) -> str:
    if before[0] != after[0]:
        return f"stored {before[0] or 'unparsed'}, the file says {after[0] or 'unparsed'}"
    return f"same answer {after[0] or 'unparsed'}, other raw text or probabilities"

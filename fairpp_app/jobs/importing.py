"""Import the official Fair-PP files (CSV or parquet) and fairpp's own exports.

A row is matched to the bank by its fields (topic, category, problem, group type, group,
dimension, framing) or by an explicit ``question_id`` column; rows that match nothing are
added as questions of kind ``imported``. Scenario rows (a ``simulation_question`` column)
become scenario questions linked to their template. Every ``*_role_N_answer`` column
becomes persona N's records, every other ``*_answer`` column a respondent named exactly as
the column without ``_answer``. Bad rows are reported by row number and skipped; records
are upserted, so importing a file twice changes nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core import questions as qb
from fairpp_app.core.errors import ImportFileError
from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import Question
from fairpp_app.store.database import Store

REQUIRED_COLUMNS = ("Topic", "Problem Category", "Specific Problem", "Group Type", "Group",
                    "Perspective", "Question")
PERSONA_COL = re.compile(r"^(?P<source>.+)_role_(?P<number>\d+)_answer$")
MODEL_COL = re.compile(r"^(?P<name>.+)_answer$")
FRAMING_2_HINTS = re.compile(r"assum|suppose|receives? more|end up with more|explanation", re.I)


@dataclass
class ImportReport:
    run: str
    rows: int = 0
    matched: int = 0
    added: int = 0
    scenarios: int = 0
    records: int = 0
    unparsed: int = 0
    respondents: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "row N: why"

    def as_json(self) -> dict:
        return self.__dict__.copy()


def read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            # Only empty cells are missing: a raw answer such as "N/A" or "None" is text.
            frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas raises many types for unreadable files
        kind = "parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise ImportFileError(f"{path}: cannot be read as {kind}: {exc}") from None
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:") or str(c).strip() == ""]
    frame = frame.drop(columns=unnamed)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ImportFileError(
            f"{path}: missing column(s) {', '.join(missing)}; a Fair-PP file has "
            f"{', '.join(REQUIRED_COLUMNS)}")
    return frame


def _blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    # Nullable parquet columns (Int64, Float64) hold pd.NA, which is neither None nor a float.
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value) -> str | None:
    return None if _blank(value) else str(value).strip()


def parse_dimension(value) -> int:
    """``Perspective`` is 'topic.dimension' (e.g. '3.4'), sometimes a float; the dimension is
    the part after the dot."""
    if _blank(value):
        raise ValueError("empty Perspective")
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(f"Perspective {text!r} is not of the form topic.dimension")
    dim = int(text.split(".")[1]) if "." in text else int(text)
    if not 1 <= dim <= len(qb.taxonomy()["dimensions"]):
        raise ValueError(f"Perspective {text!r} names dimension {dim}, which does not exist")
    return dim


def parse_answer(value) -> str | None:
    """0/1/2 (int, float or text) or A/B/C -> letter; blank -> None (unparsed)."""
    if _blank(value):
        return None
    text = str(value).strip().upper()
    mapping = {"0": "A", "1": "B", "2": "C", "0.0": "A", "1.0": "B", "2.0": "C",
               "A": "A", "B": "B", "C": "C"}
    if text not in mapping:
        raise ValueError(f"answer {value!r} is not 0/1/2 or A/B/C")
    return mapping[text]


def _canonical(name: str, choices) -> str | None:
    lowered = {c.lower(): c for c in choices}
    return lowered.get(name.strip().lower())


def _infer_framing(row) -> int:
    explicit = _text(row.get("Framing"))
    if explicit in ("1", "2", "1.0", "2.0"):
        return int(float(explicit))
    return 2 if FRAMING_2_HINTS.search(str(row.get("Question", ""))) else 1


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


def _question_for_row(row, known: set[str]) -> tuple[Question, bool]:
    """The question a row refers to and whether it was already in the bank."""
    tax = qb.taxonomy()
    explicit = _text(row.get("question_id"))
    if explicit and explicit in known:
        return Question(id=explicit, kind="", topic="", category="", problem="", group_type="",
                        group_name="", dimension=0, framing=0, text="", option_a="",
                        option_b="", option_c=""), True
    fields = {k: _text(row.get(k)) for k in REQUIRED_COLUMNS}
    for k, v in fields.items():
        if v is None:
            raise ValueError(f"empty {k}")
    dimension = parse_dimension(row.get("Perspective"))
    framing = _infer_framing(row)
    topic = _canonical(fields["Topic"], tax["topics"]) or fields["Topic"]
    category = _canonical(fields["Problem Category"], tax["topics"].get(topic, {})) or fields["Problem Category"]
    problems = tax["topics"].get(topic, {}).get(category, [])
    problem = _canonical(fields["Specific Problem"], problems) or fields["Specific Problem"]
    group_type = _canonical(fields["Group Type"], tax["groups"]) or fields["Group Type"]
    group = _canonical(fields["Group"], tax["groups"].get(group_type, [])) or fields["Group"]
    tid = qb.template_id(topic, category, problem, group_type, group, dimension, framing)
    in_taxonomy = topic in tax["topics"] and problem in problems and group in tax["groups"].get(group_type, [])
    scenario_text = _text(row.get("simulation_question"))
    if in_taxonomy:
        text, a, b, c = qb.render(topic, problem, group, dimension, framing)
    else:
        text, a, b, c = fields["Question"], *qb.render(
            next(iter(tax["topics"])), problem, group, dimension, framing)[1:]
        tid = "i" + hashlib.sha256("\x1f".join(
            [topic, category, problem, group_type, group, str(dimension), str(framing),
             fields["Question"]]).encode()).hexdigest()[:15]
    base = Question(id=tid, kind="template" if in_taxonomy else "imported", topic=topic,
                    category=category, problem=problem, group_type=group_type, group_name=group,
                    dimension=dimension, framing=framing, text=text, option_a=a, option_b=b,
                    option_c=c, split=_text(row.get("split")) or "train")
    if scenario_text is None:
        return base, tid in known
    options = [_text(row.get(f"Option_{x}")) for x in "ABC"]
    if options[0] is None or options[1] is None:
        raise ValueError("scenario row without Option_A and Option_B")
    sid = qb.scenario_id(tid)
    scenario = Question(id=sid, kind="scenario", topic=topic, category=category, problem=problem,
                        group_type=group_type, group_name=group, dimension=dimension,
                        framing=framing, text=scenario_text, option_a=options[0],
                        option_b=options[1], option_c=options[2] or qb.wording()["option_c"],
                        split="scenario", parent_id=tid)
    return scenario, sid in known


def import_fairpp(store: Store, path: Path, personas: list[Persona], run_name: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  chunk_size: int = 2000) -> ImportReport:
    frame = read_table(path)
    persona_cols, model_cols = answer_columns(frame.columns, personas)
    if not persona_cols and not model_cols:
        raise ImportFileError(f"{path}: no answer columns (*_role_N_answer or *_answer) found")
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
    report = ImportReport(run=run_name, rows=len(frame))
    respondents = [(c, p.slug, "persona", f"{c[:-len('_answer')]}") for c, p in persona_cols.items()]
    respondents += [(c, name, "model", name) for c, name in model_cols.items()]
    report.respondents = [r[1] for r in respondents]
    columns = set(map(str, frame.columns))
    total = len(frame)
    for start in range(0, total, chunk_size):
        chunk = frame.iloc[start:start + chunk_size]
        new_questions: list[Question] = []
        records: list[dict] = []
        for offset, (_, row) in enumerate(chunk.iterrows()):
            line = start + offset + 1
            try:
                question, existed = _question_for_row(row, known)
            except ValueError as exc:
                report.problems.append(f"row {line}: {exc}")
                continue
            if existed:
                report.matched += 1
            else:
                new_questions.append(question)
                known.add(question.id)
                if question.kind == "scenario":
                    report.scenarios += 1
                else:
                    report.added += 1
            for col, respondent, kind, stem in respondents:
                try:
                    letter = parse_answer(row.get(col))
                except ValueError as exc:
                    report.problems.append(f"row {line}, column {col}: {exc}")
                    continue
                raw_col = stem if stem in columns and kind == "persona" else (
                    f"{stem}_raw" if f"{stem}_raw" in columns else (stem if stem in columns else None))
                raw = _text(row.get(raw_col)) if raw_col else None
                probs = [row.get(f"{stem}_prob_{x}") for x in "ABC"]
                probs = None if any(_blank(p) for p in probs) else [float(p) for p in probs]
                if letter is None and raw is None and probs is None:
                    continue  # this respondent did not answer this question
                records.append({
                    "run_id": run["id"], "question_id": question.id, "respondent": respondent,
                    "respondent_kind": kind, "raw_text": raw, "answer": letter,
                    "p_a": probs[0] if probs else None, "p_b": probs[1] if probs else None,
                    "p_c": probs[2] if probs else None, "method": "import",
                })
                report.unparsed += letter is None
        if new_questions:
            store.upsert_questions(new_questions)
        if records:
            store.upsert_records(records)
            report.records += len(records)
        if progress:
            progress(min(start + chunk_size, total), total)
    store.add_event("import", {"file": path.name, "rows": report.rows, "records": report.records,
                               "problems": len(report.problems)}, run_id=run["id"])
    return report

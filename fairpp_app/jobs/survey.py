"""Human reference data: survey answer shares per segment, and a run compared with them.

A survey file gives, per segment of people and per item, the shares of A, B and C and the
number of people behind them. An item is one question of the bank (by ``question_id``, or
by its fields) or a (topic, dimension) cell, for surveys that asked about a theme rather
than about every group and problem. Each segment is mapped to the persona that stands for
it, so "does persona 3 answer like the people it was written from?" (the paper's open
question 1) is one row of the comparison. A file with any bad row imports nothing: every
problem is reported with its row number (rows count from the first one under the
header), so the file can be fixed in one go.

The comparison treats a segment as a respondent whose answer to an item is its share
vector: similarity is 1 - JS distance between the mean shares of the segment and the
respondent's answer shares over the items both have (the paper's metric, which for
one-person segments is exactly ``metrics.similarity``); ``agreement`` is the share of items
where the respondent chose the segment's most common answer; ``match`` is the chance that a
random member of the segment gives the respondent's answer. A cell item compares the
segment's shares with the respondent's shares over the run's questions in that cell.

Intervals come from the sample sizes by drawing each item's shares from the posterior a
sample of n people gives, Dirichlet(n * shares + 1/2) (Jeffreys prior), 1,000 times with
a fixed seed, and taking the 2.5th and 97.5th percentiles of each figure. A multinomial
bootstrap was the alternative, but it resamples from the observed shares, so an item
where all 40 people of a segment said A would never vary and a small segment would look
exactly known; a delta method would need the derivative of a square root at zero, where JS
distances of close distributions sit. Only the human side varies: a model's answers are
what it answered, not a sample of people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairpp_app.core import metrics
from fairpp_app.core import questions as qb
from fairpp_app.core.errors import ImportFileError, UnknownPersonaError, UsageError
from fairpp_app.core.personas import Persona, resolve
from fairpp_app.jobs import run_metrics
from fairpp_app.store.database import Store

SHARE_COLUMNS = ("share_a", "share_b", "share_c")
REQUIRED = ("segment", *SHARE_COLUMNS, "n")
FIELD_COLUMNS = ("topic", "category", "problem", "group_type", "group", "dimension", "framing")
#: How far a row's shares may sum from 1 (published tables round each share).
TOLERANCE = 0.015
DRAWS = 1000
SEED = 0
#: Problems listed in an error before "... and N more".
MAX_LISTED = 30


@dataclass
class SurveyImport:
    name: str
    rows: int = 0
    questions: int = 0
    cells: int = 0
    segments: dict[str, str] = field(default_factory=dict)  # segment -> persona slug

    def as_json(self) -> dict:
        return self.__dict__.copy()


def parse_map(specs: list[str], personas: list[Persona]) -> dict[str, str]:
    """``--map segment=persona`` options -> segment -> persona slug (UsageError if bad)."""
    out: dict[str, str] = {}
    for spec in specs:
        segment, sep, persona = spec.partition("=")
        if not sep or not segment.strip() or not persona.strip():
            raise UsageError(f"--map {spec!r}: write SEGMENT=PERSONA (a persona number or slug)")
        out[segment.strip()] = resolve(persona, personas).slug
    return out


def _read(path: Path):
    import pandas as pd

    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas raises many types for unreadable files
        raise ImportFileError(f"{path}: cannot be read as CSV: {exc}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ImportFileError(f"{path}: missing column(s) {', '.join(missing)}; a survey file "
                              f"has {', '.join(REQUIRED)} and question_id, the question's "
                              "fields or topic and dimension (see the README)")
    if not {"question_id", "topic"} & set(frame.columns):
        raise ImportFileError(f"{path}: no column names the items: add question_id, the "
                              f"question's fields ({', '.join(FIELD_COLUMNS)}) or topic and "
                              "dimension")
    return frame


def _cell(row, column: str) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _canonical(name: str, choices) -> str | None:
    return {c.lower(): c for c in choices}.get(name.lower())


def _number(text: str | None, what: str) -> float:
    if text is None:
        raise ValueError(f"empty {what}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a number")
    return value


def _dimension(text: str | None) -> int:
    value = _number(text, "dimension")
    n_dims = len(qb.taxonomy()["dimensions"])
    if value != int(value) or not 1 <= value <= n_dims:
        raise ValueError(f"dimension {text!r} is not a whole number from 1 to {n_dims}")
    return int(value)


def _item(row, known: set[str]) -> dict:
    """The item a row names: ``{"question_id": id}`` or ``{"topic": t, "dimension": d}``."""
    tax = qb.taxonomy()
    qid = _cell(row, "question_id")
    if qid is not None:
        if qid not in known:
            raise ValueError(f"unknown question {qid!r} (not in this database's bank)")
        return {"question_id": qid}
    topic_text = _cell(row, "topic")
    if topic_text is None:
        raise ValueError("no question_id and no topic: the row names no item")
    topic = _canonical(topic_text, tax["topics"])
    if topic is None:
        raise ValueError(f"unknown topic {topic_text!r}")
    dimension = _dimension(_cell(row, "dimension"))
    given = {c: _cell(row, c) for c in FIELD_COLUMNS[1:5]}
    if not any(given.values()):
        return {"topic": topic, "dimension": dimension}
    empty = [c for c, v in given.items() if v is None] + (
        ["framing"] if _cell(row, "framing") is None else [])
    if empty:
        raise ValueError(f"a question named by its fields needs {', '.join(empty)} as well")
    category = _canonical(given["category"], tax["topics"][topic]) or given["category"]
    problem = _canonical(given["problem"], tax["topics"][topic].get(category, [])) or given["problem"]
    group_type = _canonical(given["group_type"], tax["groups"]) or given["group_type"]
    group = _canonical(given["group"], tax["groups"].get(group_type, [])) or given["group"]
    framing = _number(_cell(row, "framing"), "framing")
    if framing not in (1, 2):
        raise ValueError(f"framing {_cell(row, 'framing')!r} is not 1 or 2")
    qid = qb.template_id(topic, category, problem, group_type, group, dimension, int(framing))
    if qid not in known:
        raise ValueError(f"unknown question: no question of topic {topic!r}, category "
                         f"{category!r}, problem {problem!r}, group {group_type}/{group}, "
                         f"dimension {dimension}, framing {int(framing)}")
    return {"question_id": qid}


def _shares(row) -> tuple[tuple[float, float, float], int]:
    shares = tuple(_number(_cell(row, c), c) for c in SHARE_COLUMNS)
    if any(s < 0 or s > 1 for s in shares):
        raise ValueError(f"shares {', '.join(f'{s:g}' for s in shares)} must lie between 0 "
                         "and 1 (write 0.42, not 42%)")
    total = sum(shares)
    if abs(total - 1.0) > TOLERANCE:
        raise ValueError(f"shares sum to {total:.4g}, not 1 (within {TOLERANCE})")
    n = _number(_cell(row, "n"), "n")
    if n != int(n) or n <= 0:
        raise ValueError(f"n {_cell(row, 'n')!r} is not a positive whole number of people")
    return (shares[0] / total, shares[1] / total, shares[2] / total), int(n)


def import_survey(store: Store, path: Path, name: str, personas: list[Persona],
                  mapping: dict[str, str] | None = None) -> SurveyImport:
    """Read, check and store a survey file under ``name`` (replacing a survey of that name).

    Any bad row stops the import before anything is written (ImportFileError listing every
    problem by row)."""
    frame = _read(path)
    mapping = dict(mapping or {})
    if store.question_count() == 0:
        store.upsert_questions(qb.build_bank())
    known = store.question_ids()
    problems: list[str] = []
    segments: dict[str, str] = {}
    seen: dict[tuple, int] = {}
    rows: list[dict] = []
    report = SurveyImport(name=name, rows=len(frame))
    file_segments = {_cell(row, "segment") for _, row in frame.iterrows()} - {None}
    for line, (_, row) in enumerate(frame.iterrows(), start=1):
        try:
            segment = _cell(row, "segment")
            if segment is None:
                raise ValueError("empty segment")
            persona_text = _cell(row, "persona")
            if persona_text is not None and segment not in mapping:
                try:
                    slug = resolve(persona_text, personas).slug
                except UnknownPersonaError as exc:
                    raise ValueError(str(exc)) from None
                if segments.setdefault(segment, slug) != slug:
                    raise ValueError(f"segment {segment!r} is mapped to persona {slug} here and "
                                     f"to {segments[segment]} on an earlier row")
            item = _item(row, known)
            shares, n = _shares(row)
        except ValueError as exc:
            problems.append(f"row {line}: {exc}")
            continue
        key = (segment, item.get("question_id"), item.get("topic"), item.get("dimension"))
        if key in seen:
            problems.append(f"row {line}: the same segment and item as row {seen[key]}")
            continue
        seen[key] = line
        rows.append({"segment": segment, **item, "share_a": shares[0], "share_b": shares[1],
                     "share_c": shares[2], "n": n})
    in_file = list(dict.fromkeys(r["segment"] for r in rows))
    for segment in mapping:
        if segment not in file_segments:
            problems.append(f"--map names segment {segment!r}, which the file does not have "
                            f"(segments: {', '.join(sorted(file_segments)) or 'none'})")
    for segment in in_file:
        slug = mapping.get(segment) or segments.get(segment)
        if slug is None:
            problems.append(f"segment {segment!r} has no persona: add a persona column or "
                            f"--map '{segment}=NUMBER'")
        else:
            report.segments[segment] = slug
    if not rows and not problems:
        problems.append("no rows under the header")
    if problems:
        listed = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ImportFileError(f"{path}: {len(problems)} problem(s); nothing was imported:\n  "
                              + "\n  ".join(listed) + more)
    report.questions = sum(r.get("question_id") is not None for r in rows)
    report.cells = len(rows) - report.questions
    store.save_survey(name, path.name, report.segments, rows)
    return report


# ---- comparison -------------------------------------------------------------------------

def compare(store: Store, run_name: str, survey_name: str, personas: list[Persona],
            split: str = "all", persona_run: str | None = None, draws: int = DRAWS,
            seed: int = SEED, bank: str | None = None) -> dict:
    """Every respondent of a run against every segment of a survey, with 95% intervals.
    ``bank``: the question bank whose answers are compared (default: the run's own)."""
    survey = store.get_survey(survey_name)
    items = store.survey_shares(survey["id"])
    slugs = [p.slug for p in personas]
    frame = run_metrics.run_frame(store, run_name, slugs, split, persona_run, bank)
    respondents = run_metrics.ordered_respondents(frame, slugs)
    answers = _respondent_vectors(frame)
    rng = np.random.default_rng(seed)
    out: dict = {"run": run_name, "survey": survey_name, "split": split, "draws": draws,
                 "seed": seed, "interval": 0.95, "respondents": respondents, "segments": [],
                 "comparison": {r: {} for r in respondents}, "closest_persona": {}}
    for segment, persona in survey["segments"].items():
        mine = [i for i in items if i["segment"] == segment]
        keys = [_key(i) for i in mine]
        human = np.array([[i["share_a"], i["share_b"], i["share_c"]] for i in mine])
        n = np.array([i["n"] for i in mine], dtype=float)
        out["segments"].append({
            "segment": segment, "persona": persona, "items": len(mine),
            "people": {"min": int(n.min()), "median": float(np.median(n)), "max": int(n.max())},
            "uniform_distance": float(metrics.distance_from_uniform(human.mean(axis=0))[0])})
        owns = {r: np.array([answers[r].get(k, (np.nan,) * 3) for k in keys], dtype=float)
                for r in respondents}
        spreads = _spreads(rng, human, n, owns, draws)
        for r in respondents:
            out["comparison"][r][segment] = _summary(human, owns[r], spreads[r])
        scored = [(out["comparison"][s][segment]["similarity"], s) for s in respondents
                  if s in slugs and out["comparison"][s][segment]["similarity"] is not None]
        out["closest_persona"][segment] = max(scored)[1] if scored else None
    return out


def _key(item: dict) -> tuple:
    if item["question_id"] is not None:
        return ("q", item["question_id"])
    return ("cell", item["topic"], int(item["dimension"]))


def _respondent_vectors(frame) -> dict[str, dict[tuple, tuple[float, float, float]]]:
    """respondent -> item key -> answer shares: one-hot per question, shares per cell."""
    out: dict[str, dict[tuple, tuple[float, float, float]]] = {}
    cells: dict[str, dict[tuple, np.ndarray]] = {}
    for qid, resp, answer, topic, dim in zip(frame["question_id"], frame["respondent"],
                                              frame["answer"], frame["topic"], frame["dimension"]):
        if not isinstance(answer, str):
            continue
        onehot = np.zeros(3)
        onehot[qb.LETTERS.index(answer)] = 1.0
        out.setdefault(resp, {})[("q", qid)] = tuple(onehot)
        cell = cells.setdefault(resp, {}).setdefault(("cell", topic, int(dim)), np.zeros(3))
        cell += onehot
    for resp, by_cell in cells.items():
        for key, counts in by_cell.items():
            out[resp][key] = tuple(counts / counts.sum())
    for resp in set(frame["respondent"]):
        out.setdefault(resp, {})
    return out


def _posterior_draws(rng: np.random.Generator, shares: np.ndarray, n: np.ndarray,
                     draws: int) -> np.ndarray:
    """(draws, items, 3) shares from Dirichlet(n * shares + 1/2) per item (gamma sampling:
    numpy's ``dirichlet`` takes one parameter vector for all draws)."""
    alpha = shares * n[:, None] + 0.5
    gamma = rng.standard_gamma(np.broadcast_to(alpha, (draws, *alpha.shape)))
    return gamma / gamma.sum(axis=-1, keepdims=True)


#: Draws are made in chunks of at most this many numbers, so a survey of every question of
#: the bank (28,420 items x 1,000 draws x 3 shares) never sits in memory at once.
CHUNK = 3_000_000
FIGURES = ("similarity", "agreement", "match")


def _figures(shares: np.ndarray, own: np.ndarray) -> dict[str, np.ndarray]:
    """The three figures of answers ``own`` (items, 3) against ``shares`` (items, 3), or
    against many draws of them at once (draws, items, 3)."""
    top = own.argmax(axis=1)
    return {"similarity": 1.0 - metrics.js_distance_rows(shares.mean(axis=-2), own.mean(axis=0)),
            "agreement": np.mean(shares.argmax(axis=-1) == top, axis=-1),
            "match": np.mean(np.sum(shares * own, axis=-1), axis=-1)}


def _spreads(rng: np.random.Generator, human: np.ndarray, n: np.ndarray,
             owns: dict[str, np.ndarray], draws: int) -> dict[str, dict[str, list]]:
    """Per respondent, each figure under every draw of the segment's shares."""
    out: dict[str, dict[str, list]] = {r: {k: [] for k in FIGURES} for r in owns}
    valid = {r: ~np.isnan(own).any(axis=1) for r, own in owns.items()}
    step = max(1, CHUNK // (3 * len(human)))
    for start in range(0, draws, step):
        sampled = _posterior_draws(rng, human, n, min(step, draws - start))
        for r, own in owns.items():
            if valid[r].any():
                for k, v in _figures(sampled[:, valid[r]], own[valid[r]]).items():
                    out[r][k].append(v)
    return out


def _summary(human: np.ndarray, own: np.ndarray, spread: dict[str, list]) -> dict:
    valid = ~np.isnan(own).any(axis=1)
    result: dict = {"items": int(valid.sum())}
    if not valid.any():
        return {**result, **dict.fromkeys(k + s for k in FIGURES for s in ("", "_ci"))}
    point = _figures(human[valid], own[valid])
    for k in FIGURES:
        lo, hi = np.percentile(np.concatenate(spread[k]), [2.5, 97.5])
        result[k] = float(point[k])
        result[f"{k}_ci"] = [float(lo), float(hi)]
    return result

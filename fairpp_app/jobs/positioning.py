"""Where respondents stand: the matrices and the 2-D map behind the analysis views.

``run_metrics`` in ``analysis`` gives every respondent's similarity and agreement to every
persona; this module adds what a picture needs besides: A/B/C shares per dimension, the
target persona's tier histogram, and a PCA map of respondents. The map places each
respondent by its answers question by question (one-hot A/B/C per commonly answered
question, centred, first two singular vectors), so unlike the paper's similarity it
separates two respondents with equal marginals who answer differently. Every view turns
into a header and rows, which is what the CSV export writes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import LETTERS
from fairpp_app.jobs.run_metrics import answer_maps, frame_metrics
from fairpp_app.store.database import Store

VIEWS = ("similarity", "respondents", "dimensions", "agreement", "tiers", "map")


@dataclass
class Positioning:
    """Everything the analysis views draw, for one run, split and target persona."""

    run: str
    split: str
    target: str | None
    personas: list[str]  # persona slugs present in the run, by number
    respondents: list[str]  # personas first, then models
    similarity: dict[str, dict[str, float | None]]  # respondent -> persona -> value
    agreement: dict[str, dict[str, float | None]]
    shares: dict[str, dict[int, tuple[float, float, float]]]  # respondent -> dim -> A/B/C
    answered: dict[str, int]
    sources: dict[str, str] = field(default_factory=dict)  # respondent -> run it came from
    picked: list[list[str]] = field(default_factory=list)  # per pick, the respondents it brought
    tiers: list[dict] = field(default_factory=list)  # {"tier", "count", "weight"}
    coords: dict[str, tuple[float, float]] = field(default_factory=dict)
    explained: tuple[float, float] = (0.0, 0.0)  # variance share of the two axes

    def table(self, view: str) -> tuple[list[str], list[list]]:
        """A view as (header, rows) for CSV."""
        if view == "similarity":
            return self._matrix(self.personas, self.similarity)
        if view == "agreement":
            return self._matrix(self.respondents, self.agreement)
        if view == "respondents":
            return self._matrix(self.respondents, self.similarity)
        if view == "dimensions":
            rows = [[r, d, *(round(x, 6) for x in self.shares[r][d])]
                    for r in self.respondents for d in sorted(self.shares.get(r, {}))]
            return ["respondent", "dimension", "A", "B", "C"], rows
        if view == "tiers":
            return ["tier", "questions", "weight"], [[t["tier"], t["count"], t["weight"]]
                                                      for t in self.tiers]
        if view == "map":
            return ["respondent", "x", "y"], [[r, *self.coords[r]] for r in self.respondents
                                              if r in self.coords]
        raise ValueError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")

    def _matrix(self, rows: list[str], values: dict) -> tuple[list[str], list[list]]:
        header = ["respondent", *self.personas]
        return header, [[r, *(values.get(r, {}).get(p) for p in self.personas)] for r in rows]


def dimension_shares(answers: dict[str, dict[str, str | None]], dims: dict[str, int]
                     ) -> dict[str, dict[int, tuple[float, float, float]]]:
    """respondent -> dimension -> shares of A, B, C among its parsed answers."""
    out: dict[str, dict[int, tuple[float, float, float]]] = {}
    for resp, by_q in answers.items():
        counts: dict[int, np.ndarray] = {}
        for qid, a in by_q.items():
            if a is None or qid not in dims:
                continue
            counts.setdefault(dims[qid], np.zeros(3))[LETTERS.index(a)] += 1
        out[resp] = {d: tuple(float(x) for x in c / c.sum()) for d, c in sorted(counts.items())}
    return out


def one_hot(answers: dict[str, dict[str, str | None]], respondents: list[str]
            ) -> tuple[np.ndarray, list[str]]:
    """(respondents x 3*questions) one-hot matrix over the questions all of them answered.

    An unparsed answer is a row of zeros for that question: no option, not option C.
    """
    common = None
    for r in respondents:
        keys = set(answers.get(r, {}))
        common = keys if common is None else common & keys
    qids = sorted(common or ())
    matrix = np.zeros((len(respondents), 3 * len(qids)))
    for i, r in enumerate(respondents):
        by_q = answers[r]
        for j, q in enumerate(qids):
            a = by_q[q]
            if a is not None:
                matrix[i, 3 * j + LETTERS.index(a)] = 1.0
    return matrix, qids


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Rows projected on the first two principal axes (SVD of the centred matrix)."""
    n = matrix.shape[0]
    out = np.zeros((n, 2))
    if n == 0 or matrix.shape[1] == 0:
        return out, (0.0, 0.0)
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    out[:, :k] = u[:, :k] * s[:k]
    # Fix each axis's sign so reruns on the same data draw the same picture.
    for j in range(k):
        pivot = int(np.argmax(np.abs(out[:, j])))
        if out[pivot, j] < 0:
            out[:, j] *= -1
    total = float((s ** 2).sum())
    shares = [float(s[j] ** 2 / total) if total > 0 and j < k else 0.0 for j in range(2)]
    return out, (shares[0], shares[1])


@dataclass(frozen=True)
class Pick:
    """A run placed beside the persona run; ``label`` names its model respondent."""

    run: str
    label: str | None = None


def combined_frame(store: Store, run_name: str, picks: list[Pick], split: str, slugs: list[str],
                   bank: str | None = None):
    """The records of ``run_name`` plus the model respondents of each picked run, as one frame,
    on one question bank (default: that of ``run_name``'s answers).

    Returns ``(frame, sources, labels)``: ``sources`` maps each respondent to its run and
    ``labels[i]`` lists the respondents pick ``i`` brought. A picked
    run's persona answers are left out (the personas are those of ``run_name``); its model
    respondent takes the pick's label, else its own name, else ``name (run)`` when another
    run already brought a respondent of that name (the same model asked twice).
    """
    import pandas as pd

    run_id = store.get_run(run_name)["id"]
    bank = bank or store.run_bank(run_id)
    frame = store.record_frame(run_id, split, bank=bank)
    sources = dict.fromkeys(dict.fromkeys(frame["respondent"]), run_name)
    frames, labels = [frame], []
    for pick in picks:
        extra = store.record_frame(store.get_run(pick.run)["id"], split, bank=bank)
        extra = extra[~extra["respondent"].isin(slugs)]
        names = list(dict.fromkeys(extra["respondent"]))
        rename = {}
        for name in names:
            label = pick.label if pick.label and len(names) == 1 else name
            if label in sources:
                label = f"{label} ({pick.run})"
            rename[name] = label
            sources[label] = pick.run
        labels.append(list(rename.values()))
        frames.append(extra.assign(respondent=extra["respondent"].map(rename)))
    if len(frames) > 1:
        frame = pd.concat(frames, ignore_index=True)
    return frame, sources, labels


def position_run(store: Store, run_name: str, personas: list[Persona], split: str = "all",
                 target: str | None = None, picks: list[Pick] | None = None) -> Positioning:
    """Compute every analysis view of a run, with the model respondents of ``picks`` placed
    among its personas (seconds on 238,623 records: call off the UI thread)."""
    from fairpp_app.core.weighting import compute_weights

    slugs_all = [p.slug for p in personas]
    frame, sources, picked = combined_frame(store, run_name, list(picks or ()), split, slugs_all)
    result = frame_metrics(frame, slugs_all, run_name, split)
    answers = answer_maps(frame)
    dims = {qid: int(d) for qid, d in zip(frame["question_id"], frame["dimension"])}
    respondents = result["respondents"]
    slugs = result["personas"]
    pos = Positioning(
        run=run_name, split=split, target=target, personas=slugs, respondents=respondents,
        similarity=result["similarity"], agreement=result["agreement"],
        shares=dimension_shares(answers, dims), answered=result["questions"], sources=sources,
        picked=picked)
    if target in slugs:
        by_question: dict[str, dict[str, str | None]] = {}
        for s in slugs:
            for qid, a in answers.get(s, {}).items():
                by_question.setdefault(qid, {})[s] = a
        pos.tiers = compute_weights(by_question, target, slugs).tiers
    matrix, _ = one_hot(answers, respondents)
    coords, pos.explained = pca_2d(matrix)
    pos.coords = {r: (float(x), float(y)) for r, (x, y) in zip(respondents, coords)}
    return pos


def shared_point_labels(coords: dict[str, tuple[float, float]], labels: dict[str, str]
                        ) -> dict[str, str]:
    """Labels for a map where respondents answering alike sit on one point: the first of
    them is labelled "a = b", the others get an empty label (the same model asked through
    two backends lands on one spot, and two names printed there would overwrite each other)."""
    first: dict[tuple[float, float], str] = {}
    out: dict[str, str] = {}
    for name, (x, y) in coords.items():
        key = (round(x, 6), round(y, 6))
        lead = first.setdefault(key, name)
        if lead == name:
            out[name] = labels.get(name, name)
        else:
            out[lead] += " = " + labels.get(name, name)
            out[name] = ""
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def exports_dir() -> Path:
    from fairpp_app.core.paths import data_dir

    return data_dir() / "exports"

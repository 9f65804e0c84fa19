"""Metrics of a stored run: every respondent against every persona.

This is the bridge between the store and the pure functions in ``metrics``: it reads the
records of a run (optionally taking the personas' answers from another run, so a model
evaluated later can be placed among personas simulated earlier) and returns plain dicts
that the CLI prints as JSON or tables and the TUI draws.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fairpp_app.core import consistency, metrics
from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import DEFAULT_BANK
from fairpp_app.core.targets import Target, as_target
from fairpp_app.core.weighting import compute_weights
from fairpp_app.store.database import Store

SPLIT_CHOICES = ("all", "train", "test", "scenario")


def answer_maps(frame) -> dict[str, dict[str, str | None]]:
    """respondent -> question id -> letter or None."""
    out: dict[str, dict[str, str | None]] = defaultdict(dict)
    for qid, resp, ans in zip(frame["question_id"], frame["respondent"], frame["answer"]):
        out[resp][qid] = ans if isinstance(ans, str) else None
    return dict(out)


def prob_maps(frame) -> dict[str, dict[str, np.ndarray]]:
    """respondent -> question id -> (3,) probabilities, for records that have them."""
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    sub = frame.dropna(subset=["p_a", "p_b", "p_c"])
    for qid, resp, a, b, c in zip(sub["question_id"], sub["respondent"], sub["p_a"], sub["p_b"],
                                  sub["p_c"]):
        out[resp][qid] = np.array([a, b, c], dtype=float)
    return dict(out)


def ordered_respondents(frame, persona_slugs: list[str]) -> list[str]:
    """The personas first, in persona order, then the other respondents by name."""
    present = list(dict.fromkeys(frame["respondent"]))
    personas = [s for s in persona_slugs if s in present]
    others = sorted(r for r in present if r not in persona_slugs)
    return personas + others


def run_frame(store: Store, run_name: str, slugs: list[str], split: str = "all",
              persona_run: str | None = None, bank: str | None = None):
    """The records a run's metrics read: the run's own, with the personas' taken from
    ``persona_run`` when one is given. ``bank``: the question bank compared (default: the
    run's own, ``Store.run_bank``)."""
    run = store.get_run(run_name)
    bank = bank or store.run_bank(run["id"])
    frame = store.record_frame(run["id"], split, bank=bank)
    if persona_run and persona_run != run_name:
        import pandas as pd

        ref = store.record_frame(store.get_run(persona_run)["id"], split, bank=bank)
        ref = ref[ref["respondent"].isin(slugs)]
        frame = frame[~frame["respondent"].isin(slugs)]
        frame = pd.concat([ref, frame], ignore_index=True)
    return frame


def run_metrics(store: Store, run_name: str, personas: list[Persona], split: str = "all",
                persona_run: str | None = None, bank: str | None = None) -> dict:
    """``bank``: the question bank compared (default: the run's own, ``Store.run_bank``)."""
    run = store.get_run(run_name)
    bank = bank or store.run_bank(run["id"])
    slugs = [p.slug for p in personas]
    frame = run_frame(store, run_name, slugs, split, persona_run, bank)
    result, grid = _frame_metrics(frame, slugs, run_name, split)
    result["bank"] = bank
    respondents, target_personas = result["respondents"], result["personas"]
    separate = bool(persona_run and persona_run != run_name)
    sources = ([(store.get_run(persona_run)["id"], set(target_personas)),
                (run["id"], set(respondents) - set(target_personas))]
               if separate else [(run["id"], set(respondents))])
    _add_consistency(result, store, grid, sources, split, bank)
    wording = wording_consistency(store, run["id"], store.get_run(persona_run)["id"]
                                  if separate else None, set(slugs), split, bank)
    for r, figures in wording.items():
        # A respondent can have both wordings in the runs read and no answer in the bank
        # compared (a persona-run of the other bank): it is listed here alone.
        result["consistency"].setdefault(r, {"order": None, "framing": None})["wording"] = figures
    return result


def frame_metrics(frame, slugs: list[str], run_name: str, split: str = "all") -> dict:
    """``run_metrics`` of records already gathered (one run, or several joined by
    ``positioning.combined_frame``), without the consistency figures, which need each
    respondent's own run; ``run_name`` only labels the result."""
    return _frame_metrics(frame, slugs, run_name, split)[0]


def _frame_metrics(frame, slugs: list[str], run_name: str, split: str) -> tuple[dict, _AnswerGrid]:
    respondents = ordered_respondents(frame, slugs)
    target_personas = [s for s in slugs if s in respondents]
    grid = _AnswerGrid(frame, respondents)

    result: dict = {"run": run_name, "split": split, "personas": target_personas,
                    "respondents": respondents, "similarity": {}, "agreement": {},
                    "soft_similarity": {}, "soft_agreement": {}, "by_dimension": {},
                    "counts": {}, "questions": {}}
    for r in respondents:
        codes = grid.codes[:, grid.col[r]]
        answered = codes != _ABSENT
        c = np.bincount(codes[codes >= 0], minlength=3)
        result["counts"][r] = {"A": int(c[0]), "B": int(c[1]), "C": int(c[2]),
                               "unparsed": int(np.sum(codes == _UNPARSED))}
        result["questions"][r] = int(answered.sum())
        sims, agrees, soft_s, soft_a, by_dim = {}, {}, {}, {}, {}
        for p in target_personas:
            x, y = codes, grid.codes[:, grid.col[p]]
            both = (x >= 0) & (y >= 0)
            sims[p] = _similarity(x[both], y[both])
            agrees[p] = float(np.mean(x[both] == y[both])) if both.any() else None
            px, py = grid.probs[:, grid.col[r]], grid.probs[:, grid.col[p]]
            common = ~np.isnan(px).any(axis=1) & ~np.isnan(py).any(axis=1)
            if common.any():
                soft_s[p] = metrics.soft_similarity(px[common], py[common])
                soft_a[p] = metrics.soft_agreement(px[common], py[common])
            by_dim[p] = {str(d): _similarity(x[both & (grid.dims == d)], y[both & (grid.dims == d)])
                         for d in grid.dim_values}
        result["similarity"][r] = sims
        result["agreement"][r] = agrees
        if soft_s:
            result["soft_similarity"][r] = soft_s
            result["soft_agreement"][r] = soft_a
        result["by_dimension"][r] = by_dim
    return result, grid


def wording_consistency(store: Store, run_id: int, persona_run_id: int | None,
                        personas: set[str], split: str = "all",
                        bank: str = DEFAULT_BANK) -> dict[str, dict | None]:
    """Per respondent, how often it chose the same letter for a fairpp question and for its
    official twin (``consistency.pair_consistency``).

    A simulation run answers one bank, so the two wordings are read from the run and the
    persona-run together: a persona's answer from the persona-run where it has one, any
    other respondent's from the run where it has one. ``split`` selects the pairs by the
    split of their question in ``bank`` (the bank the other metrics compare)."""
    runs = [run_id] + ([persona_run_id] if persona_run_id is not None else [])
    answers: dict[tuple[str, str, str], dict[int, str | None]] = defaultdict(dict)
    for rid, resp, official_id, side, answer in store.wording_answers(runs, split, bank):
        answers[(resp, official_id, side)][rid] = answer
    letters = {"A": 0, "B": 1, "C": 2}
    codes: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for (resp, official_id, side), by_run in answers.items():
        order = runs[::-1] if resp in personas else runs
        letter = by_run[next(rid for rid in order if rid in by_run)]
        codes[resp][official_id][side] = letters.get(letter, _UNPARSED) if letter else _UNPARSED
    out: dict[str, dict | None] = {}
    for resp, by_question in codes.items():
        both = [(c["fairpp"], c["official"]) for c in by_question.values() if len(c) == 2]
        if both:
            first, second = zip(*both)
            out[resp] = consistency.pair_consistency(first, second)
    return out


def _add_consistency(result: dict, store: Store, grid: _AnswerGrid,
                     sources: list[tuple[int, set[str]]], split: str, bank: str) -> None:
    """Each respondent's distance from uniform and answer consistency (core/consistency),
    read from the run its answers come from."""
    result["uniform_distance"], result["consistency"] = {}, {}
    twins: list[tuple[int, int]] = []
    orders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run_id, members in sources:
        twins += [(grid.row[a], grid.row[b]) for a, b in store.framing_twins(run_id)
                  if a in grid.row and b in grid.row]
        frame = store.order_probabilities(run_id, split, sorted(members), bank)
        for resp, part in frame.groupby("respondent"):
            if resp in members:
                orders[resp] = (part[["p_a_fwd", "p_b_fwd", "p_c_fwd"]].to_numpy(dtype=float),
                                part[["p_a_swap", "p_b_swap", "p_c_swap"]].to_numpy(dtype=float))
    first = np.array([a for a, _ in twins], dtype=np.int64)
    second = np.array([b for _, b in twins], dtype=np.int64)
    for r in result["respondents"]:
        codes = grid.codes[:, grid.col[r]]
        probs = grid.probs[:, grid.col[r]]
        probs = probs[~np.isnan(probs).any(axis=1)]
        shares = np.bincount(codes[codes >= 0], minlength=3)
        result["uniform_distance"][r] = {
            "shares": _finite(metrics.distance_from_uniform(shares)[0]),
            "probabilities": _finite(np.mean(metrics.distance_from_uniform(probs)))
            if len(probs) else None}
        result["consistency"][r] = {
            "order": consistency.order_consistency(*orders[r]) if r in orders else None,
            "framing": consistency.pair_consistency(codes[first], codes[second]),
            "wording": None,  # filled in by wording_consistency, which reads both banks
        }


def respondent_consistency(store: Store, run_name: str, respondent: str,
                           split: str = "all") -> dict:
    """One respondent's ``consistency`` and ``uniform_distance``, as ``run_metrics`` reports
    them, without the rest of the run (the inspector shows the target persona's)."""
    run = store.get_run(run_name)
    bank = store.run_bank(run["id"])
    frame = store.record_frame(run["id"], split, respondents=[respondent], bank=bank)
    result: dict = {"respondents": [respondent]}
    _add_consistency(result, store, _AnswerGrid(frame, [respondent]), [(run["id"], {respondent})],
                     split, bank)
    wording = wording_consistency(store, run["id"], None, set(), split, bank)
    result["consistency"][respondent]["wording"] = wording.get(respondent)
    return {"consistency": result["consistency"][respondent],
            "uniform_distance": result["uniform_distance"][respondent]}


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


_ABSENT, _UNPARSED = -2, -1


def _similarity(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) == 0:
        return None
    return metrics.js_similarity(np.bincount(x, minlength=3), np.bincount(y, minlength=3))


class _AnswerGrid:
    """Answers as a (question x respondent) matrix of codes: 0-2 = A-C, -1 unparsed,
    -2 not answered; probabilities as (question x respondent x 3), NaN where unknown.
    Vectorised, because a full Fair-PP run holds a quarter of a million records."""

    def __init__(self, frame, respondents: list[str]) -> None:
        qids = list(dict.fromkeys(frame["question_id"]))
        row = {q: i for i, q in enumerate(qids)}
        self.row = row
        self.col = {r: j for j, r in enumerate(respondents)}
        self.codes = np.full((len(qids), len(respondents)), _ABSENT, dtype=np.int64)
        self.probs = np.full((len(qids), len(respondents), 3), np.nan)
        self.dims = np.zeros(len(qids), dtype=np.int64)
        rows = np.array([row[q] for q in frame["question_id"]], dtype=np.int64)
        cols = np.array([self.col[r] for r in frame["respondent"]], dtype=np.int64)
        letters = {"A": 0, "B": 1, "C": 2}
        self.codes[rows, cols] = [letters.get(a, _UNPARSED) if isinstance(a, str) else _UNPARSED
                                  for a in frame["answer"]]
        self.probs[rows, cols] = frame[["p_a", "p_b", "p_c"]].to_numpy(dtype=float, na_value=np.nan)
        self.dims[rows] = frame["dimension"].to_numpy(dtype=np.int64)
        self.dim_values = sorted(set(self.dims.tolist())) if len(qids) else []


def persona_answers(store: Store, run_name: str, slugs: list[str], split: str,
                    bank: str | None = None) -> dict[str, dict[str, str | None]]:
    """question id -> persona slug -> letter or None, for the personas of a run, on one bank's
    split (default: the run's own bank)."""
    run = store.get_run(run_name)
    frame = store.record_frame(run["id"], split, respondents=slugs, bank=bank)
    out: dict[str, dict[str, str | None]] = defaultdict(dict)
    for qid, resp, ans in zip(frame["question_id"], frame["respondent"], frame["answer"]):
        out[qid][resp] = ans if isinstance(ans, str) else None
    return dict(out)


def target_answers(store: Store, run_name: str, target: Target | Persona, slugs: list[str], split: str,
                   bank: str | None = None, distributions: bool = False):
    """``persona_answers`` with the target's own column: for a group, its answer (the mix's
    argmax) under the group's key, on the questions where it has one. With
    ``distributions``, returns ``(answers, dists)``: question id -> the target's (3,) A/B/C
    distribution (a persona's probabilities, a group's mix), None where the run holds no
    probabilities of a member."""
    target = as_target(target)
    wanted = list(dict.fromkeys([*slugs, *target.member_slugs]))
    frame = store.record_frame(store.get_run(run_name)["id"], split, respondents=wanted, bank=bank)
    answers = answer_maps(frame)
    probs = prob_maps(frame)
    out: dict[str, dict[str, str | None]] = defaultdict(dict)
    for resp, by_q in answers.items():
        for qid, letter in by_q.items():
            out[qid][resp] = letter
    dists: dict[str, np.ndarray | None] = {}
    for qid, letters in out.items():
        if not all(s in letters for s in target.member_slugs):
            continue
        member_probs = {s: probs.get(s, {}).get(qid) for s in target.member_slugs}
        if target.is_group:  # None where a member's is unparsed: skipped, and counted, as such
            letters[target.slug] = target.answer(letters, member_probs)
        if distributions:
            known = all(v is not None for v in member_probs.values())
            dists[qid] = target.mix(letters, member_probs) if known else None
    # Members read only to form the group answer are not respondents of the comparison.
    extra = set(wanted) - set(slugs)
    answers_out = {qid: {k: v for k, v in by.items() if k not in extra} for qid, by in out.items()}
    return (answers_out, dists) if distributions else answers_out


def run_weights(store: Store, run_name: str, target: Target | Persona, personas: list[Persona],
                alpha: float = 1.0, beta: float = 1.0, split: str = "train",
                bank: str | None = None):
    """Compute the paper's sample weights on a run's persona answers (on one bank's split,
    default the run's own bank) and store them; ``target`` may be a group (``targets``)."""
    from fairpp_app.core.errors import UsageError
    from fairpp_app.core.weighting import compute_weights

    target = as_target(target)
    run = store.get_run(run_name)
    bank = bank or store.run_bank(run["id"])
    slugs = [p.slug for p in personas]
    answers = target_answers(store, run_name, target, slugs, split, bank)
    present = sorted({s for by in answers.values() for s in by if s in slugs}, key=slugs.index)
    if not any(target.slug in by for by in answers.values()):
        raise UsageError(f"run '{run_name}' has no answers of {target.title} in split '{split}'")
    result = compute_weights(answers, target.slug, present, alpha, beta,
                             members=target.member_slugs)
    store.save_weights(run["id"], target.slug, alpha, beta, split, result.tiers, result.weights,
                       result.skipped, bank=bank)
    return result


def split_weights(store: Store, run_id: int, run_name: str, target: str, split: str,
                  slugs: list[str], alpha: float = 1.0, beta: float = 1.0,
                  bank: str | None = None) -> tuple[dict[str, tuple[int, float]], str]:
    """Weights of one bank's split for a target (default: the run's bank): stored ones when
    saved, else computed (not saved).

    Returns ``(question id -> (tier, weight), "stored" | "computed")``.
    """
    bank = bank or store.run_bank(run_id)
    stored = store.load_weights(run_id, target, alpha, beta, split, bank=bank)
    if stored is not None:
        return stored, "stored"
    answers = persona_answers(store, run_name, slugs, split, bank)
    present = sorted({s for by in answers.values() for s in by}, key=slugs.index)
    if target not in present:
        return {}, "computed"
    return compute_weights(answers, target, present, alpha, beta).weights, "computed"

"""The synthetic persona run of the training tests, importable under a name of its own.

(Test modules import these from here, not from ``conftest``: with several conftest files
in one session, ``import conftest`` finds whichever was loaded last.)
"""

from __future__ import annotations

import random

import numpy as np

PERSONA_RUN = "personas"
SCORED_RUN = "scored"  # the same answers with probabilities, for the soft methods
N_TRAIN, N_TEST = 40, 10
TARGET_SLUG = "disengaged-traditionalists"


def persona_records(store, run_id: int, questions, slugs, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i, q in enumerate(questions):
        target = rng.choice("ABC")
        n_differ = i % 7  # 0..6 others differ from the target: tiers 1..7
        others = [s for s in slugs if s != TARGET_SLUG]
        differ = set(rng.sample(others, n_differ))
        for slug in slugs:
            if slug == TARGET_SLUG:
                letter = None if i == 3 else target
            elif slug in differ:
                letter = rng.choice([x for x in "ABC" if x != target])
            else:
                letter = target
            rows.append({"run_id": run_id, "question_id": q.id, "respondent": slug,
                         "raw_text": letter or "no idea", "answer": letter,
                         "method": "text", "respondent_kind": "persona"})
    return rows


def scored_records(store, run_id: int, questions, slugs) -> list[dict]:
    """``persona_records`` with probabilities peaked on each letter (seeded), as a run scored
    in logprob mode holds them: what the soft methods (dsft, wdsft) learn from."""
    rng = np.random.default_rng(7)
    rows = persona_records(store, run_id, questions, slugs)
    for row in rows:
        if row["answer"] is None:
            continue
        p = np.sort(rng.dirichlet([1.0, 1.0, 1.0]))[::-1]
        order = [row["answer"]] + [x for x in "ABC" if x != row["answer"]]
        probs = {letter: float(v) for letter, v in zip(order, p)}
        row.update(p_a=probs["A"], p_b=probs["B"], p_c=probs["C"], method="logprob")
    return rows


def add_scored_run(store, slugs) -> None:
    """Run ``SCORED_RUN`` beside ``PERSONA_RUN``: the same questions and letters, scored."""
    questions = store.questions("train", limit=N_TRAIN) + store.questions("test", limit=N_TEST)
    run = store.create_run(SCORED_RUN, "simulation", status="finished")
    store.upsert_records(scored_records(store, run["id"], questions, slugs))

"""The synthetic persona run of the training tests, importable under a name of its own.

(Test modules import these from here, not from ``conftest``: with several conftest files
in one session, ``import conftest`` finds whichever was loaded last.)
"""

from __future__ import annotations

import random

PERSONA_RUN = "personas"
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

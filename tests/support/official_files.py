"""Files laid out as the official Fair-PP release, worded by the tests themselves.

The layout facts follow the authors' generation notebook (see tests/unit/test_official_import.py,
which checks the importer against them); the wording and the answers are generated here, so
no sentence or answer of the release is shipped. The import tests, the consistency tests and
the inspector's tests build their files with these.
"""

from __future__ import annotations

import random

import pandas as pd

from fairpp_app.core import questions as qb
from fairpp_app.core.personas import builtin_personas
from fairpp_app.store.database import Store

SOURCE = "gpt-4o-mini"
MODELS = ("Llama-3.1-8B-Instruct", "Qwen2.5-7B-Instruct")
SCENARIO_ASK = "Which story sounds fairest to you?"
SCENARIO_INSTRUCTION = "Reply with the letter of your choice only, no explanation."


def pairs(bank, n: int, seed: int = 0) -> list[qb.Question]:
    """Both template questions (framing 1 and 2) of ``n`` random (problem, group, dimension)
    cells: the rows the old importer could merge."""
    rng = random.Random(seed)
    firsts = [q for q in bank if q.framing == 1]
    chosen = sorted(rng.sample(range(len(firsts)), n))
    by_id = {q.id: q for q in bank}
    out = []
    for i in chosen:
        q = firsts[i]
        twin = qb.template_id(q.topic, q.category, q.problem, q.group_type, q.group_name,
                              q.dimension, 2)
        out += [q, by_id[twin]]
    return out


def wording(q: qb.Question, hinted: bool = True) -> tuple[str, list[str]]:
    """Our own wording of a row: its stem and its three options."""
    pole_a, pole_b = qb.dimension_poles(q.dimension)
    if q.framing == 2 and hinted:
        stem = f"Assuming {q.group_name} get a larger share of {q.problem}, why would that be fair?"
    elif hinted:
        stem = f"Which rule is fairer for how {q.group_name} come by {q.problem}?"
    else:  # the same neutral text for both questions of a cell: only Option tells them apart
        stem = f"Think about {q.group_name} and {q.problem}. Which view do you share?"
    return stem, [f"A view rooted in {pole_a} ({q.framing})", f"A view rooted in {pole_b} ({q.framing})",
                  "N/A"]


def official_frame(questions, *, seed: int = 0, hinted: bool = True, scenario: bool = False):
    """(frame, answers): answers[row][respondent] = letter."""
    rng = random.Random(seed)
    rows, answers = [], []
    for i, q in enumerate(questions):
        stem, options = wording(q, hinted)
        # One of the released templates indents its first option line: keep that quirk.
        sep = "\n " if i % 5 == 0 else "\n"
        row = {"Topic": q.topic, "Problem Category": q.category, "Specific Problem": q.problem,
               "Group Type": q.group_type, "Group": q.group_name,
               "Perspective": qb.topic_index(q.topic) + q.dimension / 10,
               "Option": qb.dimension_poles(q.dimension)[q.framing - 1],
               "Question": f"{stem}{sep}A. {options[0]}\nB. {options[1]}\nC. {options[2]}"}
        given = {}
        if scenario:
            stories = [f"Story {x}: a {20 + i} year old among {q.group_name} gets {q.problem}."
                       for x in "ABC"]
            row["Scenario Reconstruction"] = "\n".join(stories)
            row.update({f"Option_{x}": s for x, s in zip("ABC", stories)})
            row["simulation_question"] = (f"A. {stories[0]}\nB. {stories[1]}\nC. {stories[2]}\n"
                                          f"{SCENARIO_ASK} {SCENARIO_INSTRUCTION}")
        letters = [rng.randrange(3) for _ in range(7)]
        raw_suffix = "_simulation" if scenario else ""
        for n, k in enumerate(letters, start=1):
            row[f"{SOURCE}_role_{n}{raw_suffix}"] = f"{'ABC'[k]}. my reason {n}"
        for n, (k, persona) in enumerate(zip(letters, builtin_personas()), start=1):
            row[f"{SOURCE}_role_{n}_answer"] = k
            given[persona.slug] = "ABC"[k]
        for model in MODELS:
            k = rng.randrange(3)
            row[f"{model}_answer"] = k
            given[model] = "ABC"[k]
        rows.append(row)
        answers.append(given)
    frame = pd.DataFrame(rows)
    frame.insert(0, "", range(len(frame)))  # the unnamed index column of pandas' to_csv
    return frame, answers


def write(frame, path):
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def row_ids(store: Store, questions) -> list[str]:
    """The official question of each row, found through its fairpp twin."""
    by_twin = {q.twin_id: q.id for q in store.questions(bank="official")}
    return [by_twin[q.id] for q in questions]

"""A respondent's answers compared with every persona's: similarity, agreement, margin.

Framework-free on purpose: the report compares stored answers, the live evaluation
compares the answers of the model being trained, and neither should load torch for it.
The evaluation runs are named here too, so the report finds what ``fairpp evaluate``
wrote.

A group target (``core.targets``) is one more column of the personas' answers, under its
key; its margin is measured against the personas outside the group only, since its own
members are part of what it is.
"""

from __future__ import annotations

from fairpp_app.core import metrics
from fairpp_app.core.personas import Persona
from fairpp_app.core.targets import Target, as_target


def eval_run_name(adapter: str) -> str:
    return f"eval-{adapter}"


def base_run_name(display: str, debias: str = "none") -> str:
    return f"eval-base-{display}" + ("" if debias == "none" else f"-{debias}")


def compare_with_personas(mine: dict[str, str | None], answers: dict[str, dict[str, str | None]],
                          personas: list[Persona], target: Target | Persona) -> dict:
    """Similarity and agreement of one respondent's answers to each persona's (and to a group
    target's answers, under its key), and the margin: the target's similarity minus the
    mean of the personas outside it."""
    target = as_target(target)
    sims: dict[str, float] = {}
    agrees: dict[str, float] = {}
    keys = [p.slug for p in personas] + ([target.slug] if target.is_group else [])
    for slug in keys:
        theirs = {qid: by.get(slug) for qid, by in answers.items()}
        s = metrics.paired_similarity(mine, theirs)
        if s is None:
            continue
        sims[slug] = s
        a = metrics.agreement(mine, theirs)
        if a is not None:
            agrees[slug] = a
    others = [sims[p.slug] for p in target.outside(personas) if p.slug in sims]
    margin = (sims[target.slug] - sum(others) / len(others)
              if target.slug in sims and others else None)
    return {"similarity": sims, "agreement": agrees, "margin": margin}

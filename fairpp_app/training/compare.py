"""A respondent's answers compared with every persona's: similarity, agreement, margin.

Framework-free on purpose: the report compares stored answers, the live evaluation
compares the answers of the model being trained, and neither should load torch for it.
The evaluation runs are named here too, so the report finds what ``fairpp evaluate``
wrote.
"""

from __future__ import annotations

from fairpp_app.core import metrics
from fairpp_app.core.personas import Persona


def eval_run_name(adapter: str) -> str:
    return f"eval-{adapter}"


def base_run_name(display: str, debias: str = "none") -> str:
    return f"eval-base-{display}" + ("" if debias == "none" else f"-{debias}")


def compare_with_personas(mine: dict[str, str | None], answers: dict[str, dict[str, str | None]],
                          personas: list[Persona], target: Persona) -> dict:
    """Similarity and agreement of one respondent's answers to each persona's, and the margin."""
    sims: dict[str, float] = {}
    agrees: dict[str, float] = {}
    for p in personas:
        theirs = {qid: by.get(p.slug) for qid, by in answers.items()}
        s = metrics.paired_similarity(mine, theirs)
        if s is None:
            continue
        sims[p.slug] = s
        a = metrics.agreement(mine, theirs)
        if a is not None:
            agrees[p.slug] = a
    others = [v for k, v in sims.items() if k != target.slug]
    margin = (sims[target.slug] - sum(others) / len(others)
              if target.slug in sims and others else None)
    return {"similarity": sims, "agreement": agrees, "margin": margin}

"""The paper's Table 2 for one target persona: base, role-play, SFT, WSFT, DPO, WDPO.

Every row is a set of answers on one split compared with the personas' answers of the
reference run (``--from-run``): similarity to each persona (the paper's 1 - JS distance),
the target's similarity, the margin (target minus the mean of the others) and the
per-question agreement with the target, which the marginal-only similarity cannot see.

- base: the untrained model as the bare ``model`` respondent (``fairpp evaluate --base``,
  or any run where that model answered as ``model``);
- role-play: the base model told to be the target (its persona answers in a run of that
  model); without such a run, the target's own answers in the reference run, which is the
  ceiling the trained models aim at;
- SFT / WSFT / DPO / WDPO: the latest finished training of each method for the target,
  through its ``eval-NAME`` run (``fairpp evaluate --adapter NAME``). The method rows,
  their labels and their order come from the method registry.
"""

from __future__ import annotations

from collections import Counter

from fairpp_app.backends.hf_models import model_display_name
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.jobs.run_metrics import persona_answers
from fairpp_app.store.database import Store
from fairpp_app.training import methods
from fairpp_app.training.compare import base_run_name, compare_with_personas, eval_run_name
from fairpp_app.training.data import run_debias


def _row(label: str, source: str | None, result: dict | None, target: Persona, note: str = "",
         questions: int = 0) -> dict:
    sims = (result or {}).get("similarity", {})
    agrees = (result or {}).get("agreement", {})
    return {"row": label, "source": source, "questions": questions,
            "similarity": sims, "target_similarity": sims.get(target.slug),
            "margin": (result or {}).get("margin"), "agreement": agrees.get(target.slug),
            "answers": (result or {}).get("answers"), "note": note}


def _answer_counts(answers) -> dict[str, int]:
    """How often each option was chosen (the similarity sees nothing else)."""
    counts = Counter(answers)
    return {"A": counts["A"], "B": counts["B"], "C": counts["C"], "unparsed": counts[None]}


def _answers_row(store: Store, run: str, respondent: str, answers: dict, personas: list[Persona],
                 target: Persona, split: str, bank: str) -> tuple[dict | None, int]:
    """``respondent``'s answers in ``run`` on the questions the personas answered, compared."""
    theirs = persona_answers(store, run, [respondent], split, bank)
    mine = {qid: by.get(respondent) for qid, by in theirs.items() if qid in answers}
    if not mine:
        return None, 0
    result = {**compare_with_personas(mine, answers, personas, target),
              "answers": _answer_counts(mine.values())}
    return result, len(mine)


def _run_with(store: Store, respondent: str, split: str, *, kind: str | None = None,
              model: str | None = None, exclude: str | None = None, debias: str | None = None,
              prefer: str | None = None, bank: str = "fairpp") -> str | None:
    """The run with the most answers of ``respondent`` on ``split`` (``prefer`` first if it has any).

    With ``debias``, only runs answered with that debiasing count: a base model scored in
    one letter order is not comparable with personas scored in both.
    """
    names = store.runs_answering(respondent, split, kind=kind, model=model, exclude=exclude,
                                 bank=bank)
    if debias is not None:
        names = [n for n in names if run_debias(store, n) == debias]
    if prefer in names:
        return prefer
    return names[0] if names else None


def build_report(store: Store, personas: list[Persona], target: Persona,
                 from_run: str | None = None, split: str = "test",
                 use: list[str] | None = None, bank: str | None = None) -> dict:
    """The rows; ``use`` names trainings that fill their method's row instead of the latest.
    ``bank``: the question bank compared (default: that of the reference run's answers)."""
    used = [store.get_training(name) for name in use or []]
    trainings = store.list_trainings(target=target.slug, status="finished")
    if from_run is None:
        source = used or trainings
        if not source:
            raise UsageError(f"no finished training for persona {target.number} to take the "
                             "reference run from; pass --from-run")
        from_run = source[-1]["from_run"]
    trainings = [t for t in trainings if t["from_run"] == from_run]
    chosen: dict[str, str] = {}
    for row in used:
        name = row["name"]
        if row["status"] != "finished":
            raise UsageError(f"training '{name}' has not finished (status {row['status']})")
        if row["target"] != target.slug:
            raise UsageError(f"training '{name}' aims at {row['target']}, not at persona "
                             f"{target.number} ({target.slug})")
        if row["from_run"] != from_run:
            raise UsageError(f"training '{name}' learnt from run '{row['from_run']}', not "
                             f"'{from_run}'")
        if row["method"] in chosen:
            raise UsageError(f"--use names two {row['method']} trainings: {chosen[row['method']]} "
                             f"and {name}")
        chosen[row["method"]] = name
    bank = bank or store.run_bank(store.get_run(from_run)["id"])  # a clear error when absent
    answers = persona_answers(store, from_run, [p.slug for p in personas], split, bank)
    if not any(target.slug in by for by in answers.values()):
        raise UsageError(f"run '{from_run}' has no answers of persona {target.number} on split "
                         f"'{split}' to compare with")
    base = trainings[-1]["base_model"] if trainings else None
    display = model_display_name(base)
    debias = run_debias(store, from_run)
    rows = []

    run = _run_with(store, display, split, kind="model", debias=debias,
                    prefer=base_run_name(display, debias), bank=bank)
    if run is None:
        flag = "" if debias == "none" else f" --debias {debias}"
        rows.append(_row("base", None, None, target,
                         f"not evaluated: fairpp evaluate --base {base or ''}".strip() + flag))
    else:
        result, n = _answers_row(store, run, display, answers, personas, target, split, bank)
        rows.append(_row("base", run, result, target, questions=n))

    run = _run_with(store, target.slug, split, model=display, exclude=from_run, debias=debias,
                    bank=bank)
    if run is not None:
        result, n = _answers_row(store, run, target.slug, answers, personas, target, split, bank)
        rows.append(_row("role-play", run, result, target, questions=n))
    else:
        mine = {qid: by.get(target.slug) for qid, by in answers.items() if target.slug in by}
        result = {**compare_with_personas(mine, answers, personas, target),
                  "answers": _answer_counts(mine.values())}
        rows.append(_row("role-play", from_run, result, target,
                         f"the target's own answers in {from_run} (no role-play run of "
                         f"{display})", questions=len(mine)))

    for entry in methods.report_order():
        method, label = entry.name, entry.label
        latest = [t for t in trainings if t["method"] == method]
        if not latest and method not in chosen:
            rows.append(_row(label, None, None, target, "no finished training"))
            continue
        name = chosen.get(method) or latest[-1]["name"]
        run = eval_run_name(name)
        if store.find_run(run) is None:
            rows.append(_row(label, name, None, target,
                             f"not evaluated: fairpp evaluate --adapter {name} --split {split}"))
            continue
        result, n = _answers_row(store, run, name, answers, personas, target, split, bank)
        note = "" if result else f"{run} has no answers to the questions of {from_run} on split '{split}'"
        if result and run_debias(store, run) != debias:
            note = (f"{run} answered with --debias {run_debias(store, run)} but the personas in "
                    f"{from_run} with --debias {debias}: not comparable")
        rows.append(_row(label, name, result, target, note, questions=n))
    return {"target": {"number": target.number, "slug": target.slug, "name": target.name},
            "from_run": from_run, "bank": bank, "split": split, "base_model": display,
            "personas": [p.slug for p in personas], "rows": rows, "methods": list(methods.NAMES)}

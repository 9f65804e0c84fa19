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
  their labels and their order come from the method registry; a method the paper did not
  run (DSFT, WDSFT) has a row only once it has a finished training for the target.

A method row stands for a group: the trainings whose stored configuration differs only by
``--seed`` (and by what cannot change the result: name, device, checkpoint and live-eval
cadence; a start ``--init-from`` counts by what it started from, not by its name). Its
numbers are the means over the group's seeds (one training per seed, the latest), with a
t-interval over the seeds widened to cover a bootstrap of their mean over the questions; a
row of one set of answers gets the bootstrap interval alone (``intervals``). Every row says
whether it differs from the DPO row and from the base row beyond the intervals. ``variants``
gives every group its own row (a sweep's grid), labelled by the settings that tell the groups
apart; ``only`` limits the trainings looked at. Row fields are only ever added, so readers of
earlier reports keep working.
"""

from __future__ import annotations

import json
from collections import Counter

from fairpp_app.backends.hf_models import model_display_name
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.core.targets import Target, as_target
from fairpp_app.jobs.run_metrics import persona_answers, target_answers
from fairpp_app.store.database import Store
from fairpp_app.training import intervals, methods, recipes
from fairpp_app.training.compare import base_run_name, compare_with_personas, eval_run_name
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import run_debias

#: Settings that cannot change what a training learns: trainings differing only in these
#: (and the seed) are one group.
UNGROUPED = ("name", "seed", "device", "save_every", "eval_every", "eval_limit", "generic_path",
             "init_from")
#: Settings a variant's label may name, in this order.
LABELLED = ("recipe", "prompt_format", "completion", "pairs", "weighting", "alpha", "beta",
            "dpo_beta", "lr", "optim", "warmup_steps", "epochs", "max_steps", "batch_size",
            "grad_accum", "lora_r", "lora_alpha", "lora_dropout", "limit", "base")


def _row(label: str, source: str | None, result: dict | None, target: Persona, note: str = "",
         questions: int = 0) -> dict:
    sims = (result or {}).get("similarity", {})
    agrees = (result or {}).get("agreement", {})
    return {"row": label, "source": source, "questions": questions,
            "similarity": sims, "target_similarity": sims.get(target.slug),
            "margin": (result or {}).get("margin"), "agreement": agrees.get(target.slug),
            "answers": (result or {}).get("answers"), "note": note, "_result": result}


def _answer_counts(answers) -> dict[str, int]:
    """How often each option was chosen (the similarity sees nothing else)."""
    counts = Counter(answers)
    return {"A": counts["A"], "B": counts["B"], "C": counts["C"], "unparsed": counts[None]}


def _answers_row(store: Store, run: str, respondent: str, answers: dict, personas: list[Persona],
                 target: Persona, split: str, bank: str, bootstrap: bool = True
                 ) -> tuple[dict | None, int]:
    """``respondent``'s answers in ``run`` on the questions the personas answered, compared
    (with a bootstrap interval over those questions unless ``bootstrap`` is off)."""
    theirs = persona_answers(store, run, [respondent], split, bank)
    mine = {qid: by.get(respondent) for qid, by in theirs.items() if qid in answers}
    if not mine:
        return None, 0
    return _compared(mine, answers, personas, target, bootstrap), len(mine)


def _compared(mine: dict, answers: dict, personas: list[Persona], target: Persona,
              bootstrap: bool = True) -> dict:
    result = {**compare_with_personas(mine, answers, personas, target),
              "answers": _answer_counts(mine.values()), "mine": mine}
    if bootstrap:
        result["interval"] = _bootstrap(result["mine"], answers, personas, target)
    return result


def _bootstrap(mine: dict | list[dict], answers: dict, personas: list[Persona],
               target: Target) -> dict:
    """The bootstrap interval of one answer set, or of the mean of several (a row's seeds)."""
    return intervals.bootstrap_interval(mine, answers, target.compared(personas), target.slug)


# ---- groups of trainings that differ only by seed -------------------------------------------

def _config(row: dict) -> dict:
    return TrainingConfig.from_json(row["config"].get("config", {})).as_json()


def group_key(store: Store, row: dict, _depth: int = 0) -> str:
    """What a training's result depends on, as a string: equal keys differ only by seed."""
    config = _config(row)
    start = config.get("init_from")
    key = {k: v for k, v in config.items() if k not in UNGROUPED}
    key["method"] = row["method"]
    if not methods.method(row["method"]).weighted:  # settings the method ignores
        for k in ("alpha", "beta", "weighting"):
            key.pop(k, None)
    if start is not None and _depth < 16:
        started = store.find_training(start)  # a deleted start is known by its name only
        key["init"] = group_key(store, started, _depth + 1) if started else start
    return json.dumps(key, sort_keys=True)


def _groups(store: Store, trainings: list[dict]) -> dict[str, list[dict]]:
    """Trainings by group key (in their order), one per seed: the latest of that seed."""
    groups: dict[str, dict[int, dict]] = {}
    for row in sorted(trainings, key=lambda r: r["id"]):
        groups.setdefault(group_key(store, row), {})[_config(row)["seed"]] = row
    return {k: sorted(by_seed.values(), key=lambda r: r["id"]) for k, by_seed in groups.items()}


def _variant_labels(method_label: str, configs: list[dict]) -> list[str]:
    """Each config's label: the method's, plus the settings that tell the configs apart (the
    recipe and weighting always where they are not the defaults)."""
    defaults = TrainingConfig().as_json()
    varying = [k for k in LABELLED if len({json.dumps(c.get(k)) for c in configs}) > 1
               or k in ("recipe", "weighting") and any(c.get(k) != defaults[k] for c in configs)]
    labels = []
    for c in configs:
        base = recipes.RECIPES.get(c.get("recipe"))
        parts = [f"{k}={c.get(k)}" for k in varying
                 if not (k in ("recipe", "weighting") and c.get(k) == defaults[k]
                         and len({x.get(k) for x in configs}) == 1)
                 and not (base and getattr(base, k, object()) == c.get(k))]
        if c.get("init_from"):
            parts.append("from-sft")
        labels.append(" ".join([method_label, *parts]))
    return labels


def _group_row(store: Store, label: str, group: list[dict], answers: dict, personas: list[Persona],
               target: Persona, split: str, debias: str, bank: str) -> dict:
    """One row from a group's evaluated trainings: means over seeds, and their interval."""
    results, notes = [], []
    for row in group:
        name = row["name"]
        run = eval_run_name(name)
        found = store.find_run(run)
        if found is None:
            notes.append(f"not evaluated: fairpp evaluate --adapter {name} --split {split}")
            continue
        if found["status"] != "finished":  # half its answers would pass for a whole result
            notes.append(f"{run} is {found['status']}, not finished: left out until `fairpp "
                         f"evaluate --adapter {name} --split {split}` completes it")
            continue
        if run_debias(store, run) != debias:
            notes.append(f"{run} answered with --debias {run_debias(store, run)} but the personas "
                         f"with --debias {debias}: not comparable")
            continue
        # A seed's own bootstrap is needed only when it ends up alone in its row.
        result, n = _answers_row(store, run, name, answers, personas, target, split, bank,
                                 bootstrap=False)
        if result is None:
            notes.append(f"{run} has no answers to the personas' questions on split '{split}'")
            continue
        results.append((row, result, n))
    latest = group[-1]["name"]
    if not results:
        out = _row(label, latest, None, target, "; ".join(notes))
        return {**out, "trainings": [r["name"] for r in group], "seeds": [], "interval": None}
    if len(results) == 1:
        row, result, n = results[0]
        out = _row(label, row["name"], result, target, "; ".join(notes), questions=n)
        out["interval"] = _bootstrap(result["mine"], answers, personas, target)
    else:
        per_seed = [{"training": r["name"], "seed": _config(r)["seed"],
                     "target_similarity": res["similarity"].get(target.slug),
                     "margin": res["margin"], "agreement": res["agreement"].get(target.slug)}
                    for r, res, _ in results]
        slugs = dict.fromkeys(s for _, res, _ in results for s in res["similarity"])  # in order
        mean = {"similarity": {s: _mean([res["similarity"].get(s) for _, res, _ in results])
                               for s in slugs},
                "agreement": {target.slug: _mean([p["agreement"] for p in per_seed])},
                "margin": _mean([p["margin"] for p in per_seed]),
                "answers": dict(sum((Counter(res["answers"]) for _, res, _ in results), Counter()))}
        out = _row(label, results[-1][0]["name"], mean, target, "; ".join(notes),
                   questions=min(n for _, _, n in results))
        boot = _bootstrap([res["mine"] for _, res, _ in results], answers, personas, target)
        out["interval"] = intervals.seed_interval(per_seed, boot)
        out["per_seed"] = per_seed
    out["trainings"] = [r["name"] for r, _, _ in results]
    out["seeds"] = [_config(r)["seed"] for r, _, _ in results]
    return out


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _method_rows(store: Store, trainings: list[dict], chosen: dict[str, str], variants: bool,
                 context: tuple) -> list[dict]:
    rows: list[dict] = []
    groups = _groups(store, trainings)
    target = context[2]
    for entry in methods.report_order():
        mine = {k: g for k, g in groups.items() if g[0]["method"] == entry.name}
        if entry.name in chosen:  # --use: that training alone
            found = [_group_row(store, entry.label, [store.get_training(chosen[entry.name])],
                                *context)]
        elif not mine and not entry.paper:
            continue  # a method the paper did not run has a row once it has a training
        elif not mine:
            found = [{**_row(entry.label, None, None, target, "no finished training"),
                      "trainings": [], "seeds": [], "interval": None}]
        elif not variants:
            latest = max(trainings_of(mine.values()), key=lambda r: r["id"])
            key = next(k for k, g in mine.items() if latest in g)
            found = [_group_row(store, entry.label, mine[key], *context)]
        else:
            configs = [_config(g[-1]) for g in mine.values()]
            labels = _variant_labels(entry.label, configs)
            found = [_group_row(store, label, group, *context)
                     for label, group in zip(labels, mine.values())]
            for row, config in zip(found, configs):  # fairpp's own recipe from the base model
                row["plain"] = config.get("recipe") == "fairpp" and not config.get("init_from")
        for row in found:
            row["method"] = entry.name
        rows += found
    return rows


def trainings_of(groups) -> list[dict]:
    return [row for group in groups for row in group]


def _mark(rows: list[dict]) -> None:
    """Each row's comparison with the DPO row and the base row, beyond the intervals."""
    base = rows[0] if rows and rows[0]["row"] == "base" else None
    dpo_rows = [r for r in rows if r.get("method") == "dpo" and r.get("interval")]
    # The DPO row itself, else (variants) the DPO of fairpp's recipe trained from the base
    # model: a variant such as the paper's chain is compared with it, not the other way round.
    dpo = next((r for r in dpo_rows if r["row"] == "DPO"),
               next((r for r in dpo_rows if r.get("plain")), dpo_rows[0] if dpo_rows else None))
    for row in rows:
        row["vs_dpo"] = intervals.compare(row, dpo) if row.get("interval") else None
        row["vs_base"] = (intervals.compare(row, base) if row.get("interval") and base
                          and base.get("interval") else None)


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


def build_report(store: Store, personas: list[Persona], target: Target | Persona,
                 from_run: str | None = None, split: str = "test",
                 use: list[str] | None = None, bank: str | None = None, *, variants: bool = False,
                 only: list[str] | None = None) -> dict:
    """The rows; ``use`` names trainings that fill their method's row instead of the latest
    group's; ``variants`` gives every group a row; ``only`` limits the trainings considered.
    ``bank``: the question bank compared (default: that of the reference run's answers).
    ``target`` may be a group: its column is the mix's argmax, its margin against the
    personas outside it, and its role-play row its own answers (no model plays a group)."""
    target = as_target(target)
    used = [store.get_training(name) for name in use or []]
    trainings = store.list_trainings(target=target.slug, status="finished")
    if only is not None:
        trainings = [t for t in trainings if t["name"] in set(only)]
    if from_run is None:
        source = used or trainings
        if not source:
            raise UsageError(f"no finished training for {target.title} to take the "
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
    answers = target_answers(store, from_run, target, [p.slug for p in personas], split, bank)
    if not any(target.slug in by for by in answers.values()):
        raise UsageError(f"run '{from_run}' has no answers of {target.title} on split "
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

    run = None if target.is_group else _run_with(store, target.slug, split, model=display,
                                                 exclude=from_run, debias=debias, bank=bank)
    if run is not None:
        result, n = _answers_row(store, run, target.slug, answers, personas, target, split, bank)
        rows.append(_row("role-play", run, result, target, questions=n))
    else:
        mine = {qid: by.get(target.slug) for qid, by in answers.items() if target.slug in by}
        result = _compared(mine, answers, personas, target)
        rows.append(_row("role-play", from_run, result, target,
                         f"the target's own answers in {from_run} (no role-play run of "
                         f"{display})", questions=len(mine)))

    for row in rows:
        row.update(method=None, trainings=[], seeds=[],
                   interval=(row.get("_result") or {}).get("interval"))
    rows += _method_rows(store, trainings, chosen, variants, (answers, personas, target, split, debias, bank))
    for row in rows:
        row.pop("_result", None)
    _mark(rows)
    return {"target": {"number": target.number, "slug": target.slug, "name": target.name,
                       "members": target.member_slugs, "shares": list(target.shares)},
            "from_run": from_run, "bank": bank, "split": split, "base_model": display,
            "personas": [p.slug for p in personas], "rows": rows, "methods": list(methods.NAMES)}

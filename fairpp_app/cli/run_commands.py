"""``fairpp simulate``, ``scenarios``, ``runs``, ``metrics`` and ``weights``: runs and what they hold."""

from __future__ import annotations

import argparse

from rich.table import Table

from fairpp_app.cli.output import err, fmt, open_store, out, print_json
from fairpp_app.cli.parser import config_from_args
from fairpp_app.core.errors import UsageError


def cmd_simulate(args: argparse.Namespace) -> int:
    from fairpp_app.core.events import Progress, RetryScheduled, RunEnded, RunStarted
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import LONG_RUN_S, Estimate, estimate, run_simulation

    config = config_from_args(SimulationConfig, args, "simulate")
    store, personas = open_store(args)
    if store.question_count() == 0:
        from fairpp_app.core.questions import build_bank

        err.print("the question bank is empty; building it first")
        store.upsert_questions(build_bank())
    speed = estimate(store, config, personas)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
              TextColumn("{task.fields[rate]:.1f} rec/s"), TimeRemainingColumn(), console=err,
              transient=False, disable=args.quiet or not err.is_terminal)
    task_id = None

    def listen(event) -> None:
        nonlocal task_id
        if isinstance(event, RunStarted):
            planned = Estimate(event.planned, speed.seconds_per_record, speed.source)
            if planned.seconds is not None and planned.seconds > LONG_RUN_S:
                err.print(f"[bold yellow]this run plans {planned.describe()}[/]; Ctrl-C stops it "
                          "and the same command resumes it")
            err.print(f"run '{event.run}': {event.backend}/{event.model}, mode {event.mode}; "
                      f"{event.already_done} records already done, {event.planned} to go")
            task_id = bar.add_task(event.run, total=event.planned + event.already_done,
                                   completed=event.already_done, rate=0.0)
        elif isinstance(event, Progress) and task_id is not None:
            bar.update(task_id, completed=event.done, rate=event.rate)
            if not err.is_terminal and not args.quiet:
                eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
                err.print(f"{event.done}/{event.total} records, {event.rate:.1f} rec/s, ETA {eta}")
        elif isinstance(event, RetryScheduled):
            err.print(f"[yellow]backend error[/] ({event.error}); retry {event.attempt} in {event.delay_s:.1f}s")
        elif isinstance(event, RunEnded) and event.message:
            err.print(event.message)

    with store, bar:
        outcome = run_simulation(store, config, personas, listener=listen)
    summary = outcome.__dict__
    if args.json:
        print_json(summary)
    else:
        err.print(f"run '{outcome.run}' {outcome.status}: {outcome.done}/{outcome.total} records "
                  f"({outcome.written} new, {outcome.unparsed} unparsed)")
    return {"finished": 0, "cancelled": 130}.get(outcome.status, 1)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.registry import create
    from fairpp_app.core.events import Progress, RunEnded
    from fairpp_app.jobs.scenarios import generate_scenarios

    if args.attempts < 1 or (args.limit is not None and args.limit < 1):
        raise UsageError("--attempts and --limit must be at least 1")
    store, _ = open_store(args)
    if store.question_count() == 0:
        from fairpp_app.core.questions import build_bank

        store.upsert_questions(build_bank())

    def listen(event) -> None:
        if isinstance(event, Progress):
            err.print(f"{event.done}/{event.total} template questions handled, {event.errors} failed")
        elif isinstance(event, RunEnded) and event.message:
            err.print(event.message)

    options = BackendOptions(model=args.model, base_url=args.base_url, api_key_env=args.api_key_env)
    with store, create(args.backend, options) as backend:
        outcome = generate_scenarios(store, backend, run_name=args.run, source_split=args.from_split,
                                     limit=args.limit, attempts=args.attempts, listener=listen)
    if args.json:
        print_json(outcome.__dict__)
    else:
        err.print(f"scenarios: {outcome.generated} written, {outcome.failed} failed validation, "
                  f"{outcome.skipped} already had one ({outcome.status})")
    return 0 if outcome.status == "finished" else 1


def cmd_runs(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    with store:
        runs = store.list_runs()
    if args.json:
        print_json(runs)
        return 0
    table = Table("name", "kind", "backend", "model", "mode", "status", "records")
    for r in runs:
        table.add_row(r["name"], r["kind"], r["backend"] or "", r["model"] or "", r["mode"] or "",
                      r["status"], f"{r['records']:,}")
    out.print(table)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from fairpp_app.jobs.run_metrics import run_metrics

    store, personas = open_store(args)
    with store:
        result = run_metrics(store, args.run, personas, args.split, args.persona_run)
    if args.json:
        print_json(result)
        return 0
    slugs = result["personas"]
    numbers = {p.slug: str(p.number) for p in personas}
    for key, title in (("similarity", "similarity (1 - JS distance of A/B/C shares)"),
                       ("agreement", "per-question agreement")):
        table = Table("respondent", *[f"P{numbers[s]}" for s in slugs], title=title)
        for r in result["respondents"]:
            table.add_row(r, *[fmt(result[key][r].get(s)) for s in slugs])
        out.print(table)
    counts = Table("respondent", "A", "B", "C", "unparsed", title="answers")
    for r, c in result["counts"].items():
        counts.add_row(r, *(f"{c[k]:,}" for k in ("A", "B", "C", "unparsed")))
    out.print(counts)
    out.print("persona columns: " + ", ".join(f"P{numbers[s]}={s}" for s in slugs))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from fairpp_app.core.personas import resolve
    from fairpp_app.jobs.run_metrics import run_weights

    if args.alpha < 0 or args.beta < 0:  # before the database is opened (or created)
        raise UsageError("--alpha and --beta must be zero or positive")
    store, personas = open_store(args)
    target = resolve(args.target, personas)
    with store:
        result = run_weights(store, args.run, target, personas, args.alpha, args.beta, args.split)
    if args.json:
        print_json(result.as_json())
    else:
        table = Table("tier", "questions", "weight per question",
                      title=f"sample weights for persona {target.number} ({target.slug})")
        for t in result.tiers:
            table.add_row(str(t["tier"]), f"{t['count']:,}", f"{t['weight']:.6f}")
        out.print(table)
        err.print(f"{len(result.weights):,} questions weighted; stored in the database")
    if result.skipped:
        err.print(f"{len(result.skipped):,} questions skipped: the target's answer is unparsed")
    return 0

"""``fairpp simulate``, ``scenarios``, ``runs``, ``jobs`` and ``weights``: runs and what they hold."""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.table import Table

from fairpp_app.cli.output import err, open_store, out, print_json
from fairpp_app.cli.parser import config_from_args
from fairpp_app.core.errors import NotFoundError, UsageError


def cmd_simulate(args: argparse.Namespace) -> int:
    from fairpp_app.jobs.simulation import Stop

    # From the start: a pause or cancel that arrives while the model loads is honoured at the
    # first batch instead of killing the process by the signal's default action.
    stop = Stop()
    with stop_on_signals(stop):
        return _simulate(args, stop)


def _simulate(args: argparse.Namespace, stop) -> int:
    from fairpp_app.core.events import Progress, RetryScheduled, RunEnded, RunStarted
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.heartbeat import Heartbeat
    from fairpp_app.jobs.simulation import LONG_RUN_S, Estimate, estimate, run_simulation
    from fairpp_app.jobs.supervisor import adopt_log

    if args.config_json:
        config = SimulationConfig(**json.loads(args.config_json))
    else:
        config = config_from_args(SimulationConfig, args, "simulate")
    store, personas = open_store(args)
    warn_beside_jobs(store, config.run)
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
            adopt_log(event.run)
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

    with store, Heartbeat(store.path), bar:
        outcome = run_simulation(store, config, personas, listener=listen, cancel=stop)
    summary = outcome.__dict__
    if args.json:
        print_json(summary)
    else:
        err.print(f"run '{outcome.run}' {outcome.status}: {outcome.done}/{outcome.total} records "
                  f"({outcome.written} new, {outcome.unparsed} unparsed)")
    return {"finished": 0, "cancelled": 130, "paused": 130}.get(outcome.status, 1)


def warn_beside_jobs(store, name: str | None) -> None:
    """One line on stderr when other processes work on other runs or trainings now: this one
    still runs, but two engine jobs share the cores (the same run or training is refused
    later, by the store's claim)."""
    import os

    from fairpp_app.jobs.supervisor import live_jobs

    others = [job for job in live_jobs(store) if job.name != name and job.pid != os.getpid()]
    if others:
        jobs = ", ".join(job.describe() for job in others)
        err.print(f"warning: another job is running: {jobs}; two engine jobs on "
                  f"{os.cpu_count()} cores slow both down (`fairpp jobs` lists them)",
                  markup=False, highlight=False, soft_wrap=True)


@contextmanager
def stop_on_signals(stop) -> Iterator[None]:
    """While a run works: the supervisor's pause signal pauses it and SIGTERM cancels it, each
    after the records in flight are written (Ctrl-C keeps raising KeyboardInterrupt)."""
    from fairpp_app.jobs.supervisor import CANCEL_SIGNAL, PAUSE_SIGNAL

    handlers = {PAUSE_SIGNAL: lambda *_: stop.pause(), CANCEL_SIGNAL: lambda *_: stop.cancel()}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_jobs(args: argparse.Namespace) -> int:
    """The processes working on runs now: list them, stop one, or show one's log."""
    from fairpp_app.core import ownership
    from fairpp_app.jobs import supervisor

    if args.action == "log":
        path = supervisor.log_path(args.name)
        if not path.is_file():
            raise NotFoundError(f"no log for '{args.name}' (logs are kept for jobs the app "
                                f"started; they live in {path.parent})")
        lines = path.read_text("utf-8", "replace").splitlines()
        out.print("\n".join(lines[-args.lines:]) if args.lines else "\n".join(lines), markup=False,
                  highlight=False)
        return 0
    store, _ = open_store(args)
    with store:
        live = store.live_runs()
        training = store.live_trainings()
    if args.action == "stop":
        job = next((r for r in [*live, *training] if r["name"] == args.name), None)
        if job is None:
            raise NotFoundError(f"no job is working on '{args.name}' (see `fairpp jobs`)")
        if job["owner"].get("host") != ownership.me()["host"]:
            raise UsageError(f"'{args.name}' runs on {job['owner'].get('host')}; stop it there")
        how = "pause" if args.pause else "cancel"
        supervisor.request_stop(int(job["owner"]["pid"]), how)
        what = ("finishes the current step and saves a checkpoint (`fairpp train --resume "
                f"{args.name}` continues it)" if job in training
                else "writes the records in flight (`fairpp runs` shows the status)")
        err.print(f"asked pid {job['owner']['pid']} to {how} '{args.name}'; it {what}, then exits")
        return 0
    rows = [{"run": r["name"], "kind": r["kind"], "pid": r["owner"].get("pid"),
             "host": r["owner"].get("host"), "records": r["records"],
             "total": (r["progress"] or {}).get("total"), "rate": (r["progress"] or {}).get("rate"),
             "since": r["owner"].get("since")} for r in live]
    rows += [{"run": t["name"], "kind": "training", "pid": t["owner"].get("pid"),
              "host": t["owner"].get("host"), "step": t["step"], "total": t["total"],
              "rate": None, "since": t["owner"].get("since")} for t in training]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        err.print("no job is running")
        return 0
    table = Table("run", "kind", "pid", "progress", "rate", "started")
    for row in rows:
        if row["kind"] == "training":
            progress = f"step {row['step'] or 0}" + (f"/{row['total']}" if row["total"] else "")
        else:
            progress = f"{row['records']:,}" + (f"/{row['total']:,}" if row["total"] else "")
        rate = "-" if row["rate"] is None else f"{row['rate']:.1f}/s"
        since = "-" if row["since"] is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                time.localtime(row["since"]))
        table.add_row(row["run"], row["kind"], str(row["pid"]), progress, rate, since)
    out.print(table)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.registry import create
    from fairpp_app.core.events import Progress, RunEnded
    from fairpp_app.jobs.heartbeat import Heartbeat
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
    with store, Heartbeat(store.path), create(args.backend, options) as backend:
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


def cmd_weights(args: argparse.Namespace) -> int:
    from fairpp_app.core.targets import parse_target
    from fairpp_app.jobs.run_metrics import run_weights

    if args.alpha < 0 or args.beta < 0:  # before the database is opened (or created)
        raise UsageError("--alpha and --beta must be zero or positive")
    store, personas = open_store(args)
    target = parse_target(args.target, personas)
    with store:
        result = run_weights(store, args.run, target, personas, args.alpha, args.beta, args.split,
                             bank=args.bank)
    if args.json:
        print_json(result.as_json())
    else:
        table = Table("tier", "questions", "weight per question",
                      title=f"sample weights for {target.title}")
        for t in result.tiers:
            table.add_row(str(t["tier"]), f"{t['count']:,}", f"{t['weight']:.6f}")
        out.print(table)
        err.print(f"{len(result.weights):,} questions weighted; stored in the database")
    if result.skipped:
        err.print(f"{len(result.skipped):,} questions skipped: the target's answer is unparsed")
    return 0

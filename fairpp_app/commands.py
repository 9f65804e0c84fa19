"""Handlers of the headless sub-commands; each calls the same domain functions as the TUI."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.table import Table

from .cli import _db_path, _open, _print_json
from .errors import UsageError

# No file= here: rich then looks sys.stdout / sys.stderr up at each write, so output follows
# a redirected stream (tests, the TUI) instead of the one present at import time.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(description: str) -> Iterator:
    """A progress bar on stderr; yields ``update(done, total)``."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---- questions --------------------------------------------------------------------------

def cmd_questions(args: argparse.Namespace) -> int:
    from .questions import build_bank

    store, _ = _open(args)
    with store:
        if args.action == "build":
            before = store.question_count()
            bank = build_bank()
            store.upsert_questions(bank)
            total = store.question_count()
            summary = {"database": str(store.path), "template_questions": len(bank),
                       "added": total - before, "total": total,
                       "train": store.question_count("train"), "test": store.question_count("test")}
            if args.json:
                _print_json(summary)
            else:
                err.print(f"question bank: {len(bank):,} template questions "
                          f"({summary['added']:,} new) in {store.path}")
                err.print(f"splits: train {summary['train']:,}, test {summary['test']:,}")
        elif args.action == "stats":
            stats = store.question_stats()
            if args.json:
                _print_json(stats)
            elif not stats["total"]:
                out.print("questions: 0")
                err.print("the question bank is empty; build it with `fairpp questions build`")
            else:
                out.print(f"questions: {stats['total']:,}")
                for key in ("split", "kind", "topic", "dimension", "framing", "group_type"):
                    table = Table(title=key, show_header=False)
                    for k, n in stats[key].items():
                        table.add_row(k, f"{n:,}")
                    out.print(table)
                out.print(f"categories: {len(stats['category'])}, problems: "
                          f"{len(stats['problem'])}, groups: {len(stats['group'])} "
                          "(--json lists every count)")
        else:
            q = store.get_question(args.id)
            if args.json:
                _print_json(q.as_row())
            else:
                out.print(f"[bold]{q.id}[/] ({q.split}, {q.kind}) {q.topic} / {q.category} / "
                          f"{q.problem} / {q.group_name} / dimension {q.dimension}, framing {q.framing}")
                out.print(q.text)
                for letter, text in zip("ABC", q.options()):
                    out.print(f"  {letter}. {text}")
    return 0


# ---- personas ---------------------------------------------------------------------------

def cmd_personas(args: argparse.Namespace) -> int:
    from .paths import user_personas_path
    from .personas import load_personas, resolve

    if args.action == "path":
        out.print(str(user_personas_path()))
        return 0
    personas = load_personas()
    if args.action == "show":
        p = resolve(args.persona, personas)
        if args.json:
            _print_json(p.as_row())
        else:
            out.print(f"[bold]{p.number}. {p.name}[/] ({p.slug}{'' if p.builtin else ', yours'})")
            out.print(p.description)
        return 0
    if args.json:
        _print_json([p.as_row() for p in personas])
        return 0
    table = Table("#", "slug", "name", "source")
    for p in personas:
        table.add_row(str(p.number), p.slug, p.name, "built-in" if p.builtin else "yours")
    out.print(table)
    return 0


# ---- import / export --------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    from .importer import import_fairpp

    store, personas = _open(args)
    with store, progress_bar(f"importing {args.file.name}") as update:
        report = import_fairpp(store, args.file, personas, args.run, progress=update)
    if args.json:
        _print_json(report.as_json())
    else:
        err.print(f"run '{report.run}': {report.rows:,} rows, {report.records:,} records "
                  f"({report.unparsed:,} unparsed), {report.matched:,} questions matched, "
                  f"{report.added:,} added, {report.scenarios:,} scenario questions")
        err.print(f"respondents: {', '.join(report.respondents)}")
    for problem in report.problems[:50]:
        err.print(f"[yellow]skipped[/] {problem}")
    if len(report.problems) > 50:
        err.print(f"... and {len(report.problems) - 50} more problems")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .exporter import export_run

    store, personas = _open(args)
    with store:
        n = export_run(store, args.run, args.format, args.out, personas)
    err.print(f"wrote {n:,} questions of run '{args.run}' to {args.out} ({args.format})")
    return 0


# ---- metrics / weights ------------------------------------------------------------------

def cmd_metrics(args: argparse.Namespace) -> int:
    from .analysis import run_metrics

    store, personas = _open(args)
    with store:
        result = run_metrics(store, args.run, personas, args.split, args.persona_run)
    if args.json:
        _print_json(result)
        return 0
    slugs = result["personas"]
    numbers = {p.slug: str(p.number) for p in personas}
    for key, title in (("similarity", "similarity (1 - JS distance of A/B/C shares)"),
                       ("agreement", "per-question agreement")):
        table = Table("respondent", *[f"P{numbers[s]}" for s in slugs], title=title)
        for r in result["respondents"]:
            table.add_row(r, *[_fmt(result[key][r].get(s)) for s in slugs])
        out.print(table)
    counts = Table("respondent", "A", "B", "C", "unparsed", title="answers")
    for r, c in result["counts"].items():
        counts.add_row(r, *(f"{c[k]:,}" for k in ("A", "B", "C", "unparsed")))
    out.print(counts)
    out.print("persona columns: " + ", ".join(f"P{numbers[s]}={s}" for s in slugs))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from .analysis import run_weights
    from .personas import resolve

    if args.alpha < 0 or args.beta < 0:  # before the database is opened (or created)
        raise UsageError("--alpha and --beta must be zero or positive")
    store, personas = _open(args)
    target = resolve(args.target, personas)
    with store:
        result = run_weights(store, args.run, target, personas, args.alpha, args.beta, args.split)
    if args.json:
        _print_json(result.as_json())
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


# ---- simulate / backends ---------------------------------------------------------------

def cmd_simulate(args: argparse.Namespace) -> int:
    from .cli import config_from_args
    from .events import Progress, RetryScheduled, RunEnded, RunStarted
    from .simulate import LONG_RUN_S, Estimate, SimulationConfig, estimate, run_simulation

    config = config_from_args(SimulationConfig, args, "simulate")
    store, personas = _open(args)
    if store.question_count() == 0:
        from .questions import build_bank

        err.print("the question bank is empty; building it first")
        store.upsert_questions(build_bank())
    speed = estimate(store, config, personas)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                               TimeRemainingColumn)

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
        _print_json(summary)
    else:
        err.print(f"run '{outcome.run}' {outcome.status}: {outcome.done}/{outcome.total} records "
                  f"({outcome.written} new, {outcome.unparsed} unparsed)")
    return {"finished": 0, "cancelled": 130}.get(outcome.status, 1)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .backends.base import BackendOptions
    from .backends.registry import create
    from .events import Progress, RunEnded
    from .scenarios import generate_scenarios

    if args.attempts < 1 or (args.limit is not None and args.limit < 1):
        raise UsageError("--attempts and --limit must be at least 1")
    store, _ = _open(args)
    if store.question_count() == 0:
        from .questions import build_bank

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
        _print_json(outcome.__dict__)
    else:
        err.print(f"scenarios: {outcome.generated} written, {outcome.failed} failed validation, "
                  f"{outcome.skipped} already had one ({outcome.status})")
    return 0 if outcome.status == "finished" else 1


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends.registry import BACKENDS, available

    table = Table("backend", "installed", "what it runs")
    for name, info in BACKENDS.items():
        table.add_row(name, "yes" if available(name) else f"no ({info.needs})", info.summary)
    out.print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .doctor import check_all

    verdicts = check_all(args.engine)
    if args.json:
        _print_json([asdict(v) for v in verdicts])
    else:
        for verdict in verdicts:
            print(verdict.line())
    return 0 if all(v.ok for v in verdicts) else 1


# ---- train / evaluate / report ----------------------------------------------------------
# fairpp_app.training's torch side is imported inside the handlers: `fairpp --help` and the
# other commands never load torch.

#: Above this weighted share of one letter, the embedded model's WDPO answered only that
#: letter (80% C at alpha = beta = 1 in the README's proof; 67% at 0.5 did not collapse).
LOPSIDED_WEIGHT = 0.75


def _shares(amounts: dict[str, float]) -> str:
    """Percentages of A/B/C in ``amounts`` (shares or counts), as "54/0/46"."""
    total = sum(amounts.get(k, 0.0) for k in "ABC") or 1.0
    return "/".join(f"{100 * amounts.get(k, 0.0) / total:.0f}" for k in "ABC")


def _training_listener(quiet: bool, personas):
    from .events import TrainingEnded, TrainingEval, TrainingStarted, TrainingStep

    numbers = {p.slug: p.number for p in personas}

    def listen(event) -> None:
        if isinstance(event, TrainingStarted):
            err.print(f"training '{event.training}': {event.method} toward {event.target} on "
                      f"{event.base_model} ({event.device}); {event.questions:,} questions, "
                      f"{event.pairs:,} {'pairs' if event.method.endswith('dpo') else 'examples'}, "
                      f"{event.skipped:,} skipped (unparsed target answer); "
                      f"steps {event.start_step}/{event.total_steps}")
            if event.letters:
                line = f"target's answers A/B/C: {_shares(event.letters)}%"
                if event.weighted_letters:
                    line += f"; by weight {_shares(event.weighted_letters)}%"
                err.print(line)
                top, share = max((event.weighted_letters or {}).items(), key=lambda kv: kv[1],
                                 default=("", 0.0))
                if share >= LOPSIDED_WEIGHT:
                    err.print(f"note: {100 * share:.0f}% of the weight is on answer {top}; a model "
                              f"that cannot yet tell the questions apart may learn to answer {top} "
                              "everywhere (softer weights: --alpha 0.5 --beta 0.5)")
        elif isinstance(event, TrainingStep) and not quiet:
            line = f"step {event.step}: loss {event.loss:.4f}"
            if event.learning_rate is not None:
                line += f", lr {event.learning_rate:.2e}"
            if event.reward_margin is not None:
                line += f", reward margin {event.reward_margin:+.4f}"
            if event.reward_accuracy is not None:
                line += f", accuracy {event.reward_accuracy:.2f}"
            err.print(line)
        elif isinstance(event, TrainingEval):
            sims = " ".join(f"P{numbers.get(slug, '?')}={v:.3f}" for slug, v in event.similarity.items())
            margin = "-" if event.margin is None else f"{event.margin:+.3f}"
            target = event.agreement.get(event.target)
            agree = "" if target is None else f", agreement {target:.3f}"
            err.print(f"eval at step {event.step}: similarity {sims}; target "
                      f"P{numbers.get(event.target, '?')} margin {margin}{agree}")
        elif isinstance(event, TrainingEnded) and event.message:
            err.print(event.message)

    return listen


def cmd_train(args: argparse.Namespace) -> int:
    from .cli import config_from_args
    from .training.config import TrainingConfig
    from .training.runner import run_training

    config = None if args.resume else config_from_args(TrainingConfig, args)
    store, personas = _open(args)
    with store:
        outcome = run_training(store, personas, config, resume=args.resume,
                               listener=_training_listener(args.quiet, personas))
    if args.json:
        _print_json(outcome.__dict__)
    else:
        err.print(f"training '{outcome.name}' {outcome.status} at step {outcome.step}"
                  + (f"; adapter in {outcome.adapter_path}" if outcome.adapter_path else ""))
    return {"finished": 0, "cancelled": 130}.get(outcome.status, 1)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .events import Progress, RunEnded

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    store, personas = _open(args)

    def listen(event) -> None:
        if isinstance(event, Progress):
            eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
            err.print(f"{event.done}/{event.total} answers, {event.rate:.1f}/s, ETA {eta}")
        elif isinstance(event, RunEnded) and event.message:
            err.print(event.message)

    options = dict(split=args.split, limit=args.limit, device=args.device,
                   batch_size=args.batch_size, listener=listen)
    with store:
        try:
            from .training.evaluate import evaluate_adapter, evaluate_base
        except ImportError as exc:
            raise UsageError(f"evaluating needs torch, transformers and peft ({exc})") from None
        if args.adapter:
            outcome = evaluate_adapter(store, personas, args.adapter, debias=args.debias, **options)
        else:
            base = None if args.base == "embedded" else args.base
            outcome = evaluate_base(store, personas, base, debias=args.debias or "none", **options)
    if args.json:
        _print_json(outcome.__dict__)
    else:
        err.print(f"run '{outcome.run}' {outcome.status}: {outcome.done}/{outcome.total} answers "
                  f"({outcome.written} new, {outcome.unparsed} unparsed)")
    return {"finished": 0, "cancelled": 130}.get(outcome.status, 1)


def cmd_report(args: argparse.Namespace) -> int:
    from .personas import resolve
    from .training.report import build_report

    store, personas = _open(args)
    target = resolve(args.target, personas)
    with store:
        report = build_report(store, personas, target, args.from_run, args.split, use=args.use)
    if args.json:
        _print_json(report)
        return 0
    numbers = {p.slug: p.number for p in personas}
    slugs = report["personas"]
    from rich import box

    # Twelve numeric columns: a light box keeps the table inside 80 columns.
    table = Table("", *[f"P{numbers[s]}" for s in slugs], "target", "margin", "agree", "n",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0), show_edge=False,
                  title=f"persona {target.number} ({target.slug}), {report['split']} split, "
                        f"personas from '{report['from_run']}'")
    for row in report["rows"]:
        margin = "-" if row["margin"] is None else f"{row['margin'] * 100:+.2f}%"
        table.add_row(row["row"], *[_fmt(row["similarity"].get(s)) for s in slugs],
                      _fmt(row["target_similarity"]), margin, _fmt(row["agreement"]),
                      f"{row['questions']:,}" if row["questions"] else "-")
    out.print(table)
    shares = [f"{row['row']} {_shares(row['answers'])}" for row in report["rows"]
              if row.get("answers") and sum(row["answers"].values())]
    if shares:
        err.print("answers A/B/C %: " + ", ".join(shares))
    sources = [f"{row['row']} {row['source']}" for row in report["rows"][2:] if row["source"]]
    if sources:
        err.print("trainings: " + ", ".join(sources))
    for row in report["rows"]:
        if row["note"]:
            err.print(f"{row['row']}: {row['note']}")
    err.print("similarity = 1 - JS distance of A/B/C shares; margin = target minus the mean of "
              "the others; agree = per-question agreement with the target; n = questions")
    return 0


# ---- runs / info ------------------------------------------------------------------------

def cmd_runs(args: argparse.Namespace) -> int:
    store, _ = _open(args)
    with store:
        runs = store.list_runs()
    if args.json:
        _print_json(runs)
        return 0
    table = Table("name", "kind", "backend", "model", "mode", "status", "records")
    for r in runs:
        table.add_row(r["name"], r["kind"], r["backend"] or "", r["model"] or "", r["mode"] or "",
                      r["status"], f"{r['records']:,}")
    out.print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .paths import data_dir

    store, _ = _open(args)
    with store:
        from .paths import config_path

        info = {"data_dir": str(data_dir()), "database": str(store.path),
                "config_file": str(config_path()),
                "size_bytes": store.path.stat().st_size, "schema_version": store.version,
                **store.counts()}
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            out.print(f"{k}: {v}")
    return 0


def open_tui(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from .app import run_app
    except ImportError:
        parser.print_help()
        return 0
    return run_app(_db_path(args))

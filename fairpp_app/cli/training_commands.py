"""``fairpp train``, ``evaluate`` and ``report``: alignment toward one persona.

The torch side of :mod:`fairpp_app.training` is imported inside the handlers: ``fairpp --help``
and the other commands never load torch.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from fairpp_app.cli.output import err, fmt, open_store, out, print_json, shares
from fairpp_app.cli.parser import config_from_args
from fairpp_app.core.errors import UsageError

#: Above this weighted share of one letter, the embedded model's WDPO answered only that
#: letter (80% C at alpha = beta = 1 in the README's proof; 67% at 0.5 did not collapse).
LOPSIDED_WEIGHT = 0.75


def _training_listener(quiet: bool, personas):
    from fairpp_app.core.events import TrainingEnded, TrainingEval, TrainingStarted, TrainingStep
    from fairpp_app.training.methods import method

    numbers = {p.slug: p.number for p in personas}

    def label(slug: str) -> str:
        """P6 for a persona; a group target by its spec, in brackets."""
        return f"P{numbers[slug]}" if slug in numbers else f"[{slug}]"

    def listen(event) -> None:
        if isinstance(event, TrainingStarted):
            err.print(f"training '{event.training}': {event.method} toward {event.target} on "
                      f"{event.base_model} ({event.device}); {event.questions:,} questions, "
                      f"{event.pairs:,} {'pairs' if method(event.method).preference else 'examples'}, "
                      f"{event.skipped:,} skipped (unparsed target answer); "
                      f"steps {event.start_step}/{event.total_steps}")
            if event.letters:
                line = f"target's answers A/B/C: {shares(event.letters)}%"
                if event.weighted_letters:
                    line += f"; by weight {shares(event.weighted_letters)}%"
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
            sims = " ".join(f"{label(slug)}={v:.3f}" for slug, v in event.similarity.items())
            margin = "-" if event.margin is None else f"{event.margin:+.3f}"
            target = event.agreement.get(event.target)
            agree = "" if target is None else f", agreement {target:.3f}"
            err.print(f"eval at step {event.step}: similarity {sims}; target "
                      f"{label(event.target)} margin {margin}{agree}")
        elif isinstance(event, TrainingEnded) and event.message:
            err.print(event.message)

    return listen


def cmd_train(args: argparse.Namespace) -> int:
    """Train or resume; as a supervised child SIGUSR1 pauses and SIGTERM cancels it after the
    current step (a checkpoint is saved either way), and its output moves to the training's log."""
    import json

    from fairpp_app.cli.run_commands import stop_on_signals, warn_beside_jobs
    from fairpp_app.core.events import TrainingStarted
    from fairpp_app.jobs.heartbeat import Heartbeat
    from fairpp_app.jobs.simulation import Stop
    from fairpp_app.jobs.supervisor import adopt_log
    from fairpp_app.training.config import TrainingConfig
    from fairpp_app.training.distributed import world
    from fairpp_app.training.runner import run_training

    if args.resume:
        config = None
    elif args.config_json:
        config = TrainingConfig.from_json(json.loads(args.config_json))
    else:
        config = config_from_args(TrainingConfig, args)
    main = world().main  # under accelerate launch only rank 0 writes, prints and warns
    if config is not None and main:
        _recipe_note(config)
    stop = Stop()
    with stop_on_signals(stop):
        store, personas = open_store(args, writer=main)
        if main:
            warn_beside_jobs(store, args.resume or (config.name if config else None))
        printer = _training_listener(args.quiet, personas)

        def listen(event) -> None:
            if isinstance(event, TrainingStarted):
                adopt_log(event.training)
            printer(event)

        with store, Heartbeat(store.path):
            outcome = run_training(store, personas, config, resume=args.resume, listener=listen,
                                   cancel=stop)
    if not main:
        pass
    elif args.json:
        print_json(outcome.__dict__)
    else:
        err.print(f"training '{outcome.name}' {outcome.status} at step {outcome.step}"
                  + (f"; adapter in {outcome.adapter_path}" if outcome.adapter_path else ""))
    return {"finished": 0, "cancelled": 130, "paused": 130}.get(outcome.status, 1)


def _recipe_note(config) -> None:
    """Say what a non-default recipe or weighting changes, and what the paper did besides."""
    from fairpp_app.training.methods import method

    parts = [f"{k.replace('_', ' ')} {v}" for k, v in config.recipe_parts().items()]
    if parts or config.weighting != "batch":
        err.print(f"recipe {config.recipe}: " + ", ".join(parts + [f"weighting {config.weighting}"]))
    if config.recipe == "paper" and method(config.method).preference and not config.init_from:
        start = "wsft" if method(config.method).weighted else "sft"
        err.print(f"note: the paper starts {config.method} from its {start} model; train that "
                  f"first with --recipe paper and pass --init-from NAME (fairpp sweep does both)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fairpp_app.core.events import Progress, RunEnded
    from fairpp_app.jobs.heartbeat import Heartbeat

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    store, personas = open_store(args)

    def listen(event) -> None:
        if isinstance(event, Progress):
            eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
            err.print(f"{event.done}/{event.total} answers, {event.rate:.1f}/s, ETA {eta}")
        elif isinstance(event, RunEnded) and event.message:
            err.print(event.message)

    options = dict(split=args.split, limit=args.limit, device=args.device,
                   batch_size=args.batch_size, listener=listen, bank=args.bank)
    with store, Heartbeat(store.path):
        try:
            from fairpp_app.training.evaluate import evaluate_adapter, evaluate_base
        except ImportError as exc:
            raise UsageError(f"evaluating needs torch, transformers and peft ({exc})") from None
        if args.adapter:
            outcome = evaluate_adapter(store, personas, args.adapter, debias=args.debias, **options)
        else:
            base = None if args.base == "embedded" else args.base
            outcome = evaluate_base(store, personas, base, debias=args.debias or "none", **options)
    if args.json:
        print_json(outcome.__dict__)
    else:
        err.print(f"run '{outcome.run}' {outcome.status}: {outcome.done}/{outcome.total} answers "
                  f"({outcome.written} new, {outcome.unparsed} unparsed)")
    return {"finished": 0, "cancelled": 130}.get(outcome.status, 1)


def cmd_report(args: argparse.Namespace) -> int:
    from fairpp_app.core.targets import parse_target
    from fairpp_app.training.report import build_report

    store, personas = open_store(args)
    target = parse_target(args.target, personas)
    with store:
        only = None
        if args.sweep:
            only = [t["name"] for t in store.list_trainings(target=target.slug)
                    if t["name"].startswith(f"{args.sweep}-")]
            if not only:
                raise UsageError(f"no training of sweep '{args.sweep}' aims at persona "
                                 f"{target.number}")
        report = build_report(store, personas, target, args.from_run, args.split, use=args.use,
                              variants=args.variants or bool(args.sweep), only=only, bank=args.bank)
    if args.json:
        print_json(report)
        return 0
    print_report(report, personas, target)
    return 0


def print_report(report: dict, personas, target) -> None:
    """The report as two tables on stdout (results, then intervals) and its notes on stderr."""
    numbers = {p.slug: p.number for p in personas}
    slugs = report["personas"]
    from rich import box

    # Twelve numeric columns: a light box keeps the table inside 80 columns.
    table = Table("", *[f"P{numbers[s]}" for s in slugs], "target", "margin", "agree", "n",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0), show_edge=False,
                  title=f"{target.title}, {report['split']} split, "
                        f"personas from '{report['from_run']}'")
    table.columns[0].overflow = "fold"  # a variant's label names its settings: keep all of it
    for row in report["rows"]:
        margin = "-" if row["margin"] is None else f"{row['margin'] * 100:+.2f}%"
        table.add_row(row["row"], *[fmt(row["similarity"].get(s)) for s in slugs],
                      fmt(row["target_similarity"]), margin, fmt(row["agreement"]),
                      f"{row['questions']:,}" if row["questions"] else "-")
    out.print(table)
    row_shares = [f"{row['row']} {shares(row['answers'])}" for row in report["rows"]
                  if row.get("answers") and sum(row["answers"].values())]
    if row_shares:
        err.print("answers A/B/C %: " + ", ".join(row_shares))
    sources = [f"{row['row']} {row['source']}" for row in report["rows"][2:] if row["source"]]
    if sources:
        err.print("trainings: " + ", ".join(sources))
    for row in report["rows"]:
        if row["note"]:
            err.print(f"{row['row']}: {row['note']}")
    err.print("similarity = 1 - JS distance of A/B/C shares; margin = target minus the mean of "
              "the others; agree = per-question agreement with the target; n = questions")
    out.print(_interval_table(report))
    err.print("95% intervals: t over the seeds where a row has several (seeds = their number), "
              "widened to cover a bootstrap of their mean over the questions; else that "
              "bootstrap alone (boot); vs DPO / vs base: s(imilarity to the "
              "target) and m(argin) +/- when the intervals do not overlap, = when they do")


def _interval_table(report: dict):
    """Means with their 95% intervals, and the marks against DPO and base."""
    from rich import box

    def span(row, key, fmt):
        bounds = (row.get("interval") or {}).get(key)
        return f"{fmt(bounds[0])}..{fmt(bounds[1])}" if bounds else ""

    def marks(compared):
        if not compared:
            return ""
        names = {"target_similarity": "s", "margin": "m"}
        return " ".join(f"{names[k]}{'+' if v > 0 else '-' if v < 0 else '='}"
                        for k, v in compared.items() if k in names and v is not None)

    similarity, margin = (lambda v: f"{v:.3f}"), (lambda v: f"{v * 100:+.1f}")
    table = Table("", "seeds", "target", "95%", "margin%", "95%", "vs DPO", "vs base",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 0),
                  title="intervals")
    table.columns[0].overflow, table.columns[0].min_width = "fold", 18
    for column in table.columns[1:]:
        column.no_wrap = True
    for row in report["rows"]:
        interval = row.get("interval") or {}
        seeds = (str(len(row.get("seeds") or [])) if interval.get("kind") == "t" else
                 "boot" if interval else "-")
        have = {k: row.get(k) is not None for k in ("target_similarity", "margin")}
        table.add_row(row["row"], seeds,
                      similarity(row["target_similarity"]) if have["target_similarity"] else "-",
                      span(row, "target_similarity", similarity),
                      margin(row["margin"]) if have["margin"] else "-", span(row, "margin", margin),
                      marks(row.get("vs_dpo")), marks(row.get("vs_base")))
    return table

"""``fairpp sweep``: a grid of trainings and evaluations, then the report (see training.sweep)."""

from __future__ import annotations

import argparse
import dataclasses

from fairpp_app.cli.output import err, open_store, print_json
from fairpp_app.core.errors import UsageError

#: The grid flags and how each list item is read.
GRID_TYPES = {"methods": str, "recipes": str, "weighting": str, "alpha": float, "beta": float,
              "seeds": int}


def _list(flag: str, text: str, kind) -> list:
    try:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--{flag} takes a comma-separated list of "
                         f"{'numbers' if kind is not str else 'names'}, not '{text}'") from None
    if not items:
        raise UsageError(f"--{flag} is empty")
    return items


def sweep_from_args(args: argparse.Namespace):
    """The sweep file's contents (if any) overlaid by the flags."""
    from fairpp_app.training.config import TrainingConfig
    from fairpp_app.training.sweep import AXES, from_mapping, load_file

    data = load_file(args.file) if args.file else {}
    data = {**data, "train": dict(data.get("train", {})), "evaluate": dict(data.get("evaluate", {}))}
    if args.name:
        data["name"] = args.name
    flags = {k: _list(k, getattr(args, k), kind) for k, kind in GRID_TYPES.items()
             if getattr(args, k, None)}
    if flags:
        grids = data.get("grid", {})
        grids = grids if isinstance(grids, list) else [grids]
        data["grid"] = [{**g, **flags} for g in grids] or [flags]
    grid_fields = set(AXES.values()) | {"name", "init_from"}  # set per cell, never shared
    data["train"].update({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingConfig)
                          if f.name not in grid_fields and hasattr(args, f.name)})
    for key, flag in (("split", "evaluate_split"), ("limit", "evaluate_limit"),
                      ("device", "evaluate_device")):
        if getattr(args, flag) is not None:
            data["evaluate"][key] = getattr(args, flag)
    if args.no_base:
        data["evaluate"]["base"] = False
    return from_mapping(data)


def cmd_sweep(args: argparse.Namespace) -> int:
    from fairpp_app.cli.run_commands import stop_on_signals
    from fairpp_app.cli.training_commands import _training_listener, print_report
    from fairpp_app.core.targets import parse_target
    from fairpp_app.jobs.simulation import Stop
    from fairpp_app.training.sweep import cells, run_sweep

    if args.json and not args.quiet:
        args.quiet = True
    sweep = sweep_from_args(args)
    plan = cells(sweep)
    err.print(f"sweep '{sweep.name}': {len(plan)} cells: " + ", ".join(c.name for c in plan))
    stop = Stop()
    with stop_on_signals(stop):
        store, personas = open_store(args)
        listen = _training_listener(args.quiet, personas)
        with store:
            outcome = run_sweep(store, personas, sweep, listener=listen, say=err.print, cancel=stop)
    if args.json:
        print_json({"cells": outcome.cells, "report": outcome.report})
    elif outcome.report is not None:
        print_report(outcome.report, personas, parse_target(plan[0].config.target, personas))
    for cell in outcome.failed:
        err.print(f"{cell['name']}: {cell['status']} {cell['message']}".rstrip())
    if stop.is_set():
        err.print("sweep stopped; run the same command again to continue")
        return 130
    return 1 if outcome.failed else 0

"""``fairpp backends``, ``doctor`` and ``info``, and opening the terminal app."""

from __future__ import annotations

import argparse

from rich.table import Table

from fairpp_app.cli.output import db_path, open_store, out, print_json


def cmd_backends(args: argparse.Namespace) -> int:
    from fairpp_app.backends.registry import BACKENDS, available

    table = Table("backend", "installed", "what it runs")
    for name, info in BACKENDS.items():
        table.add_row(name, "yes" if available(name) else f"no ({info.needs})", info.summary)
    out.print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from fairpp_app.jobs.doctor import check_all

    verdicts = check_all(args.engine)
    if args.json:
        print_json([asdict(v) for v in verdicts])
    else:
        for verdict in verdicts:
            print(verdict.line())
    return 0 if all(v.ok for v in verdicts) else 1


def cmd_info(args: argparse.Namespace) -> int:
    from fairpp_app.core.paths import data_dir

    store, _ = open_store(args)
    with store:
        from fairpp_app.core.paths import config_path

        info = {"data_dir": str(data_dir()), "database": str(store.path),
                "config_file": str(config_path()),
                "size_bytes": store.path.stat().st_size, "schema_version": store.version,
                **store.counts()}
    if args.json:
        print_json(info)
    else:
        for k, v in info.items():
            out.print(f"{k}: {v}")
    return 0


def open_tui(args: argparse.Namespace) -> int:
    from fairpp_app.tui.app import run_app

    return run_app(db_path(args))

"""``fairpp import`` and ``fairpp export``: answers in and out of files."""

from __future__ import annotations

import argparse

from fairpp_app.cli.output import err, open_store, print_json, progress_bar


def cmd_import(args: argparse.Namespace) -> int:
    if args.format == "survey":
        return cmd_import_survey(args)
    from fairpp_app.jobs.importing import import_fairpp

    store, personas = open_store(args)
    with store, progress_bar(f"importing {args.file.name}") as update:
        report = import_fairpp(store, args.file, personas, args.run, progress=update)
    if args.json:
        print_json(report.as_json())
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
    from fairpp_app.jobs.exporting import export_run

    store, personas = open_store(args)
    with store:
        n = export_run(store, args.run, args.format, args.out, personas)
    err.print(f"wrote {n:,} questions of run '{args.run}' to {args.out} ({args.format})")
    return 0


def cmd_import_survey(args: argparse.Namespace) -> int:
    from fairpp_app.jobs.survey import import_survey, parse_map

    store, personas = open_store(args)
    with store:
        mapping = parse_map(args.map, personas)
        report = import_survey(store, args.file, args.name, personas, mapping)
    if args.json:
        print_json(report.as_json())
        return 0
    err.print(f"survey '{report.name}': {report.rows:,} rows, {report.questions:,} question "
              f"items and {report.cells:,} (topic, dimension) items")
    for segment, persona in report.segments.items():
        err.print(f"  {segment} -> {persona}")
    return 0

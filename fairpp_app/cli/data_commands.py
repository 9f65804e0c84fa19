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
        report = import_fairpp(store, args.file, personas, args.run, progress=update,
                               split=args.split, replace=args.replace)
    if args.json:
        print_json(report.as_json())
    else:
        err.print(f"run '{report.run}': {report.rows:,} rows, {report.records:,} records written "
                  f"({report.unparsed:,} unparsed, {report.unchanged:,} already stored as they "
                  f"are), {report.matched:,} questions matched, {report.added:,} added, "
                  f"{report.scenarios:,} scenario questions")
        places = ", ".join(f"{n:,} {where}" for where, n in sorted(report.splits.items()))
        err.print(f"rows by bank/split: {places or 'none'}")
        err.print(f"respondents: {', '.join(report.respondents)}")
    _listed(report.problems, "skipped", len(report.problems))
    _listed(report.conflicts, "differs", report.conflicting)
    if report.conflicting:
        err.print(f"{report.conflicting:,} answers or questions differ from the stored ones; the "
                  "stored ones were kept (--replace takes the file's)")
    if report.replaced:
        err.print(f"{report.replaced:,} stored answers replaced by the file's")
    if report.rows and not report.splits:  # no row got as far as a question: none imported
        err.print(f"[bold red]nothing was imported[/]: none of the {report.rows:,} rows could be "
                  "imported (see the problems above)")
        return 1
    return 0


def _listed(lines: list[str], tag: str, total: int, shown: int = 50) -> None:
    from rich.markup import escape

    for line in lines[:shown]:
        err.print(f"[yellow]{tag}[/] {escape(line)}", highlight=False)
    if total > shown:
        err.print(f"... and {total - shown:,} more")


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

"""``fairpp metrics``, ``position`` and ``report --html``: respondents of several runs compared.

``metrics`` and ``position`` print tables; the HTML report and its figures are drawn by
``jobs.html_report`` and ``jobs.figures``, fed here with the rows of ``training.report``
(Table 2), because the jobs layer may not import the training one.
"""

from __future__ import annotations

import argparse

from rich import box
from rich.table import Table
from rich.text import Text

from fairpp_app.cli.output import err, fmt, open_store, out, print_json
from fairpp_app.core.errors import UsageError


def resolve_picks(store, args: argparse.Namespace, run: str | None, split: str | None):
    """``(persona run, split, picks, set name)`` from --run/--from-run, --with and --set."""
    from fairpp_app.jobs.position_sets import set_picks
    from fairpp_app.jobs.positioning import Pick

    picks, set_name = [], None
    if args.position_set:
        chosen = store.get_position_set(args.position_set)
        set_name = chosen["name"]
        if run is not None and run != chosen["persona_run"]:
            raise UsageError(f"position set '{set_name}' compares with run "
                             f"'{chosen['persona_run']}', not '{run}'; leave the run out")
        run = chosen["persona_run"]
        split = split or chosen["split"]
        picks = set_picks(chosen)
    picks += [Pick(name) for name in args.with_runs]
    for pick in picks:
        store.get_run(pick.run)  # a clear error for a run that does not exist
    return run, split, picks, set_name


def cmd_metrics(args: argparse.Namespace) -> int:
    from fairpp_app.jobs.positioning import Pick, combined_frame
    from fairpp_app.jobs.run_metrics import frame_metrics, run_metrics

    store, personas = open_store(args)
    with store:
        run, split, picks, _ = resolve_picks(store, args, args.run, args.split)
        if run is None:
            raise UsageError("name the run to analyse with --run (or a stored set with --set)")
        split = split or "all"
        if not picks:
            result = run_metrics(store, run, personas, split, args.persona_run, bank=args.bank)
        else:
            if args.persona_run and args.persona_run != run:
                # The run's model respondents join the others; the personas come from persona_run.
                picks.insert(0, Pick(run))
                run = args.persona_run
            slugs = [p.slug for p in personas]
            frame, sources, _ = combined_frame(store, run, picks, split, slugs, bank=args.bank)
            result = {**frame_metrics(frame, slugs, run, split), "sources": sources}
        if args.reference:
            from fairpp_app.jobs.survey import compare

            result["reference"] = compare(store, run, args.reference, personas, split,
                                          args.persona_run, bank=args.bank)
    if args.json:
        print_json(result)
        return 0
    if not result["respondents"]:
        err.print(f"no answers in split '{split}' of the {result.get('bank', 'chosen')} bank in "
                  "this run" + (" and the persona-run" if args.persona_run else "") + "; --bank "
                  "chooses the other bank" + ("; only wording consistency (both banks) is "
                                              "reported" if result.get("consistency") else ""))
    slugs = result["personas"]
    numbers = {p.slug: str(p.number) for p in personas}
    for key, title in (("similarity", "similarity (1 - JS distance of A/B/C shares)"),
                       ("agreement", "per-question agreement")):
        extra = ("unif",) if key == "similarity" and "uniform_distance" in result else ()
        table = Table("respondent", *[f"P{numbers[s]}" for s in slugs], *extra, title=title)
        for r in result["respondents"]:
            beside = (fmt(result["uniform_distance"][r]["shares"]),) if extra else ()
            table.add_row(r, *[fmt(result[key][r].get(s)) for s in slugs], *beside)
        out.print(table)
    counts = Table("respondent", "A", "B", "C", "unparsed", title="answers")
    for r, c in result["counts"].items():
        counts.add_row(r, *(f"{c[k]:,}" for k in ("A", "B", "C", "unparsed")))
    out.print(counts)
    out.print("persona columns: " + ", ".join(f"P{numbers[s]}={s}" for s in slugs))
    if result.get("sources"):
        err.print("runs: " + ", ".join(f"{r} from {src}" for r, src in result["sources"].items()
                                       if r not in slugs))
    if "consistency" in result:
        _print_consistency(result)
    else:
        err.print("answer consistency: computed for one run's respondents (leave out --with/--set)")
    if "reference" in result:
        _print_reference(result["reference"], numbers)
    return 0


def _print_consistency(result: dict) -> None:
    rows = result["consistency"]  # every respondent with a figure (wording can add some)
    # Only the checks some respondent has a figure for, so the table fits 80 columns.
    checks = [(name, size) for name, size in (("order", "questions"), ("framing", "pairs"),
                                              ("wording", "pairs"))
              if any(c.get(name) for c in rows.values())] or [("framing", "pairs")]
    table = Table(title="answer consistency")
    # The figures keep their width and the names give way (as in the other tables): a
    # figure cut to "0.…" says nothing.
    table.add_column("respondent", no_wrap=True, overflow="ellipsis", min_width=8)
    for name, size in checks:
        for head in (name, "flips", "n" if size == "questions" else "pairs"):
            table.add_column(head, no_wrap=True, min_width=max(len(head), 5))
    table.add_column("unif", no_wrap=True, min_width=5)
    table.add_column("unif p", no_wrap=True, min_width=6)
    for r, c in rows.items():
        u = result["uniform_distance"].get(r, {})
        cells = []
        for name, size in checks:
            figures = c.get(name) or {}
            cells += [fmt(figures.get("share")), fmt(figures.get("flips")),
                      str(figures.get(size, "-"))]
        table.add_row(r, *cells, fmt(u.get("shares")), fmt(u.get("probabilities")))
    out.print(table)
    out.print("order: share of questions answered the same with options A and B swapped (n "
              "questions); framing: share of framing 1/2 pairs answered the same; wording: "
              "share of fairpp questions answered the same in their official wording (read "
              "from the run and the --persona-run, both banks); flips: A in one, B in the "
              "other; unif: JS distance of the answer shares from uniform (unif p: mean over "
              "questions, from the option probabilities)")
    if not any(c["order"] for c in rows.values()):
        err.print("option order: no record scored in both orders (simulate with --debias "
                  "permute; runs from before schema 6 kept only the average)")


def _print_reference(ref: dict, numbers: dict[str, str]) -> None:
    segments = ref["segments"]
    heads = [f"{g['segment']} (P{numbers.get(g['persona'], '?')})" for g in segments]
    for key, title in (("similarity", "similarity to human segments (1 - JS distance)"),
                       ("agreement", "agreement with the segment's most common answer"),
                       ("match", "chance a random member of the segment answers the same")):
        table = Table("respondent", *heads,
                      title=f"{title}, [95% interval] from the sample sizes; * the segment's persona")
        for r in ref["respondents"]:
            cells = []
            for g in segments:
                c = ref["comparison"][r][g["segment"]]
                mark = "*" if g["persona"] == r else ""
                cells.append("-" if c[key] is None else
                             f"{mark}{c[key]:.3f} [{c[key + '_ci'][0]:.3f}, {c[key + '_ci'][1]:.3f}]")
            table.add_row(r, *cells)
        out.print(table)
    table = Table("segment", "persona", "items", "people (median)", "uniform",
                  "closest persona", title=f"survey '{ref['survey']}'")
    for g in segments:
        closest = ref["closest_persona"][g["segment"]]
        table.add_row(g["segment"], g["persona"], str(g["items"]), f"{g['people']['median']:g}",
                      fmt(g["uniform_distance"]), closest or "-")
    out.print(table)


def cmd_position(args: argparse.Namespace) -> int:
    from fairpp_app.core.events import Progress, RunStarted
    from fairpp_app.jobs.model_specs import parse_specs
    from fairpp_app.jobs.position_sets import ask_models, config_for, plan_estimates, save_set, table_one
    from fairpp_app.jobs.simulation import Estimate

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.max_retries < 0:
        raise UsageError("--max-retries must not be negative")
    specs = parse_specs(args.models)
    configs = [config_for(s, args.split, args.limit, args.mode, args.debias,
                          api_key_env=args.api_key_env, max_retries=args.max_retries)
               for s in specs]
    store, personas = open_store(args)
    with store:
        store.get_run(args.from_run)
        if store.question_count() == 0:
            raise UsageError("the question bank is empty; build it with `fairpp questions build`")
        from fairpp_app.jobs.run_metrics import persona_answers

        # Before any model works: the comparison needs the personas on this split.
        if not persona_answers(store, args.from_run, [p.slug for p in personas], args.split):
            raise UsageError(f"run '{args.from_run}' has no persona answers on split "
                             f"'{args.split}' to compare the models with")
        estimates = plan_estimates(store, configs, personas)
        for spec, e in zip(specs, estimates):
            err.print(f"{spec.label}: {e.describe()}", markup=False, highlight=False)
        total = Estimate(sum(e.records for e in estimates), None)
        known = [e.seconds for e in estimates if e.seconds is not None]
        line = f"planned: {total.records:,} records for {len(specs)} models"
        if known:
            from fairpp_app.jobs.simulation import format_duration

            line += f", about {format_duration(sum(known))}"
            if len(known) < len(estimates):
                line += " for the models with a measured speed"
        err.print(line + "; answers already stored in a run of the same model are reused",
                  markup=False, highlight=False)
        if args.plan:
            return 0

        def listen(spec, event) -> None:
            if args.quiet:
                return
            if isinstance(event, RunStarted):
                err.print(f"{spec.label}: run '{event.run}', {event.already_done} already answered, "
                          f"{event.planned} to ask", markup=False, highlight=False)
            elif isinstance(event, Progress) and event.done == event.total:
                err.print(f"{spec.label}: {event.done}/{event.total} answered ({event.rate:.1f}/s)",
                          markup=False, highlight=False)

        rows = ask_models(store, specs, configs, personas, listener=listen)
        pos = table_one(store, args.from_run, rows, personas, args.split)
        stored = None
        if args.name:
            params = {"mode": args.mode, "debias": args.debias, "limit": args.limit}
            stored = save_set(store, args.name, args.from_run, args.split, specs, rows, params)["name"]
    if args.json:
        print_json({"from_run": args.from_run, "split": args.split, "personas": pos.personas,
                    "set": stored,
                    "models": [{**r.__dict__, "agreement_closest": r.agreement_closest}
                               for r in rows]})
    else:
        print_table_one(rows, pos.personas, personas, args.from_run, args.split)
        if stored:
            err.print(f"stored as position set '{stored}' (fairpp report --html OUT.html --set {stored})",
                      markup=False, highlight=False)
    return 0 if all(r.status == "finished" and not r.error for r in rows) else 1


def print_table_one(rows, slugs: list[str], personas, from_run: str, split: str) -> None:
    numbers = {p.slug: p.number for p in personas}
    # Thirteen columns: a light box without padding keeps the table inside 80 columns.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0), show_edge=False,
                  title=f"similarity to each persona of '{from_run}', {split} split")
    # "ok" when finished cleanly; a run that finished with a fault elsewhere is "partial".
    statuses = ["ok" if r.status == "finished" and not r.error else
                "partial" if r.status == "finished" else r.status for r in rows]
    table.add_column("model", no_wrap=True)
    for name in [*(f"P{numbers[s]}" for s in slugs), "closest", "margin", "agree", "n", "status"]:
        table.add_column(name, no_wrap=True, justify="left" if name == "status" else "right",
                         min_width=max(map(len, statuses)) if name == "status" else None)
    for r, status in zip(rows, statuses):
        best = r.similarity.get(r.closest)
        cells = [f"[bold]{fmt(v)}[/]" if v is not None and v == best else fmt(v)
                 for v in (r.similarity.get(s) for s in slugs)]
        closest = f"P{numbers[r.closest]}" if r.closest else "-"
        table.add_row(Text(r.label), *cells, closest, fmt(r.margin), fmt(r.agreement_closest),
                      f"{r.questions:,}" if r.questions else "-", status)
    out.print(table)
    for r in rows:
        if r.error:  # the whole message: too long for a cell, and it says what to do
            err.print(f"{r.label}: {r.status}: {r.error}", markup=False, highlight=False)
    err.print("similarity = 1 - JS distance of A/B/C shares; margin = closest minus second; "
              "agree = per-question agreement with the closest persona; n = questions compared",
              markup=False, highlight=False)


def cmd_report(args: argparse.Namespace) -> int:
    """Table 2 in the terminal (``training_commands``), or the HTML page and figure files."""
    if not (args.html or args.figures):
        if args.with_runs or args.position_set:
            raise UsageError("--with and --set go with --html or --figures (the terminal report "
                             "is Table 2; `fairpp metrics --with` compares runs)")
        from fairpp_app.cli.training_commands import cmd_report as table_two

        return table_two(args)
    return report_html(args)


def report_html(args: argparse.Namespace) -> int:
    from fairpp_app import __version__
    from fairpp_app.core.targets import parse_target
    from fairpp_app.jobs import figures, html_report
    from fairpp_app.jobs.position_sets import ModelRow, table_one
    from fairpp_app.training.report import build_report

    if args.html is not None and args.html.is_dir():
        raise UsageError(f"--html {args.html} is a folder; name the file to write")
    if args.figures is not None and args.figures.exists() and not args.figures.is_dir():
        raise UsageError(f"--figures {args.figures} is a file; name a folder")
    store, personas = open_store(args)
    target = parse_target(args.target, personas)
    with store:
        run, _, picks, set_name = resolve_picks(store, args, args.from_run, args.split)
        rows = [ModelRow(p.label or "", "", p.run, "finished") for p in picks]
        if set_name:
            chosen = store.get_position_set(set_name)
            specs = {m["run"]: m["spec"] for m in chosen["models"]}
            for row in rows:
                row.spec = specs.get(row.run, "")
            rows += [ModelRow(m["label"], m["spec"], None, "failed", "no run: it failed when the "
                              "set was made") for m in chosen["models"] if not m.get("run")]
        table = None
        if args.use or store.list_trainings(target=target.slug, status="finished"):
            table = build_report(store, personas, target, run, args.split, use=args.use, bank=args.bank,
                                 variants=args.variants)
            run = run or table["from_run"]
        if run is None:
            raise UsageError("name the run holding the personas' answers with --from-run (or a "
                             "stored position set with --set)")
        pos = table_one(store, run, rows, personas, args.split)
        trainings = [*args.use, *(r["source"] for r in (table or {"rows": []})["rows"][2:]
                                  if r["source"] and store.find_training(r["source"]))]
        curves = html_report.training_curves(store, trainings)
        info = html_report.report_info(store, run, rows, args.split, list(dict.fromkeys(trainings)),
                                       __version__)
    models = [names[0] for names in pos.picked if names]
    drawn = html_report.draw_figures(pos, personas, models, curves)
    written: dict = {"html": None, "figures": []}
    if args.html:
        page = html_report.render(info, rows, pos, personas, table, drawn)
        written["html"] = str(html_report.write_report(args.html, page))
        err.print(f"wrote {written['html']}: {len(rows)} models, {len(drawn)} figures"
                  + (", Table 2" if table else ""), markup=False, highlight=False)
    if args.figures:
        for d in drawn:
            written["figures"] += [str(p) for p in figures.write_files(d, args.figures)]
        err.print(f"wrote {len(drawn)} figures as SVG and PNG into {args.figures}",
                  markup=False, highlight=False)
    if args.json:
        print_json(written)
    else:
        for path in [written["html"], *written["figures"]]:
            if path:
                out.print(path, markup=False, highlight=False)
    return 0

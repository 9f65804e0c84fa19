"""``fairpp questions`` and ``fairpp personas``: the question bank and the survey personas."""

from __future__ import annotations

import argparse

from rich.table import Table

from fairpp_app.cli.output import err, open_store, out, print_json


def cmd_questions(args: argparse.Namespace) -> int:
    from fairpp_app.core.questions import build_bank

    store, _ = open_store(args)
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
                print_json(summary)
            else:
                err.print(f"question bank: {len(bank):,} template questions "
                          f"({summary['added']:,} new) in {store.path}")
                err.print(f"splits: train {summary['train']:,}, test {summary['test']:,}")
        elif args.action == "stats":
            stats = store.question_stats(args.bank or "fairpp")
            if args.json:
                print_json(stats)
            elif not stats["total"]:
                out.print("questions: 0")
                err.print("the question bank is empty; build it with `fairpp questions build`")
            else:
                out.print(f"questions: {stats['total']:,} ({stats['bank']} bank)")
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
                print_json(q.as_row())
            else:
                out.print(f"[bold]{q.id}[/] ({q.bank} {q.split}, {q.kind}) {q.topic} / "
                          f"{q.category} / {q.problem} / {q.group_name} / dimension "
                          f"{q.dimension}, framing {q.framing}")
                if q.twin_id:
                    out.print(f"fairpp's wording of the same question: {q.twin_id}")
                out.print(q.text)
                for letter, text in zip("ABC", q.options()):
                    out.print(f"  {letter}. {text}")
    return 0


def cmd_personas(args: argparse.Namespace) -> int:
    from fairpp_app.core.paths import user_personas_path
    from fairpp_app.core.personas import load_personas, resolve

    if args.action == "path":
        out.print(str(user_personas_path()))
        return 0
    personas = load_personas()
    if args.action == "show":
        p = resolve(args.persona, personas)
        if args.json:
            print_json(p.as_row())
        else:
            out.print(f"[bold]{p.number}. {p.name}[/] ({p.slug}{'' if p.builtin else ', yours'})")
            out.print(p.description)
        return 0
    if args.json:
        print_json([p.as_row() for p in personas])
        return 0
    table = Table("#", "slug", "name", "source")
    for p in personas:
        table.add_row(str(p.number), p.slug, p.name, "built-in" if p.builtin else "yours")
    out.print(table)
    return 0

"""Benchmark: importing a whole release-sized file in the official Fair-PP layout.

A release-sized file is 34,089 questions (28,420 template rows and 5,669 scenario rows)
with 7 persona answer columns (and their raw text) and 6 model answer columns: 443,157
records. This script writes such a file (worded by this script, random answers) into a
temporary folder, never into the repository, then measures in one process:

  baseline: a plain ``pandas.read_csv`` of the same file (what any import must pay)
  import:   ``import_fairpp`` into a fresh database (the fairpp bank built first, as the
            first import does), then the same file again (must add and change nothing)

The last line, ``ratio: X``, is import seconds / baseline seconds. The goal is an import
under 60 s at full size on the reference machine.

    .venv/bin/python bench/import_official.py [--fraction 1.0] [--seed 0]

``--fraction 0.2`` writes a fifth of the rows (a quick check that the script works). Run the
full size on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

TEMPLATE_ROWS = 28_420
SCENARIO_ROWS = 5_669
MODELS = ("Llama-3.1-8B-Instruct", "Qwen2.5-7B-Instruct", "Mistral-7B-Instruct-v0.3",
          "Falcon3-7B-Instruct", "gemma-2-9b-it", "Phi-3.5-mini-instruct")


def write_release(path: Path, fraction: float, seed: int) -> int:
    """The file in the official layout; returns its number of rows."""
    import pandas as pd

    from fairpp_app.core import questions as qb

    rng = random.Random(seed)
    bank = list(qb.iter_template_questions())
    n_templates = max(2, int(TEMPLATE_ROWS * fraction))
    n_scenarios = max(1, int(SCENARIO_ROWS * fraction))
    rows = []
    for i, q in enumerate(bank[:n_templates] + bank[:n_scenarios]):
        scenario = i >= n_templates
        poles = qb.dimension_poles(q.dimension)
        stem = (f"Assuming {q.group_name} get more {q.problem}, which reason is fairer?"
                if q.framing == 2 else f"Which rule is fairer for {q.group_name} and {q.problem}?")
        row = {"": i, "Topic": q.topic, "Problem Category": q.category,
               "Specific Problem": q.problem, "Group Type": q.group_type, "Group": q.group_name,
               "Perspective": qb.topic_index(q.topic) + q.dimension / 10,
               "Option": poles[q.framing - 1],
               "Question": f"{stem}\nA. By {poles[0]}\nB. By {poles[1]}\nC. N/A"}
        if scenario:
            stories = [f"Story {x} about {q.group_name} receiving {q.problem}." for x in "ABC"]
            row.update({f"Option_{x}": s for x, s in zip("ABC", stories)})
            row["simulation_question"] = ("\n".join(f"{x}. {s}" for x, s in zip("ABC", stories))
                                          + "\nWhich story is fairest? Reply with one letter.")
        letters = [rng.randrange(3) for _ in range(7 + len(MODELS))]
        for n in range(1, 8):
            row[f"gpt-4o-mini_role_{n}"] = f"{'ABC'[letters[n - 1]]}. reason {n}"
        for n in range(1, 8):
            row[f"gpt-4o-mini_role_{n}_answer"] = letters[n - 1]
        for model, k in zip(MODELS, letters[7:]):
            row[f"{model}_answer"] = k
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of the release's rows to write (default 1: full size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pandas as pd

    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.jobs.importing import import_fairpp
    from fairpp_app.store.database import Store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Fair-PP-release.csv"
        n = write_release(path, args.fraction, args.seed)
        print(f"file: {n:,} rows x 13 answer columns, {path.stat().st_size / 1e6:.1f} MB")

        started = time.perf_counter()
        pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
        baseline = time.perf_counter() - started
        print(f"baseline (pandas.read_csv): {baseline:.2f} s")

        personas = builtin_personas()
        with Store(Path(tmp) / "bench.db") as store:
            store.sync_personas(personas)
            started = time.perf_counter()
            report = import_fairpp(store, path, personas)
            seconds = time.perf_counter() - started
            assert not report.problems, report.problems[:5]
            print(f"import: {seconds:.2f} s, {report.records:,} records, {report.added:,} "
                  f"questions, {report.scenarios:,} scenario questions "
                  f"({report.records / seconds:,.0f} records/s)")
            started = time.perf_counter()
            again = import_fairpp(store, path, personas)
            repeat = time.perf_counter() - started
            assert again.records == again.added == again.scenarios == again.conflicting == 0
            print(f"re-import: {repeat:.2f} s, {again.unchanged:,} records unchanged, nothing added")
    print(f"ratio: {seconds / baseline:.2f}")


if __name__ == "__main__":
    main()

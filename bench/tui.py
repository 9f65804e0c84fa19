"""Benchmark: the TUI on a full-size database (34,089 questions, 238,623 records).

Builds the database the paper's numbers imply: the 28,420 template questions, 5,669
synthetic scenario questions (one per test template, with made-up vignettes) and one run in
which the seven personas answer every question (random letters and probabilities, about 2%
unparsed), written with executemany. Then, with Textual's Pilot at 120x40, it times what a
user waits for:

  open      switching to the Questions screen until its first page is on screen (< 1 s)
  filter    choosing a value in a filter until the table shows the result (< 200 ms)
  step      inspector next / previous question (< 50 ms)

Pilot's ``press``/``pause`` return only after the app has been idle for a while (they poll
in 20 ms slices), so the wall time around them has a floor of ~40 ms even for a key that
does nothing. The number that counts is therefore measured inside the app: from the
moment the key (or the filter value) is sent to the end of the last screen update it
caused (the last ``App._display`` before the app went idle). Both are printed, with the
floor measured on an unbound key. Each is repeated and the median printed. The last line
is `ratio: X`, target / measured (to the last screen update) for whichever of the three is
slowest relative to its target (above 1 means all are in time).

    .venv/bin/python bench/tui.py [--repeats 5] [--steps 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"open": 1.0, "filter": 0.2, "step": 0.05}
SIZE = (120, 40)
PAINTS: list[float] = []


def record_paints() -> None:
    """Note the time every screen update reaches the (headless) terminal."""
    from textual.app import App

    display = App._display

    def timed(self, *args, **kwargs):
        result = display(self, *args, **kwargs)
        PAINTS.append(time.perf_counter())
        return result

    App._display = timed


class Timing:
    """Wall time around a Pilot call, and time to the last screen update inside it."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.paint: list[float] = []

    def start(self) -> None:
        PAINTS.clear()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        end = time.perf_counter()
        self.wall.append(end - self._t0)
        self.paint.append((PAINTS[-1] if PAINTS else end) - self._t0)


def build_database(path: Path, seed: int = 0) -> tuple[int, int]:
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.questions import build_bank
    from fairpp_app.jobs.scenarios import build_scenario
    from fairpp_app.store.database import _UPSERT_RECORD, RECORD_COLUMNS, Store

    rng = random.Random(seed)
    personas = builtin_personas()
    with Store(path) as store:
        bank = build_bank()
        store.upsert_questions(bank)
        scenarios = [build_scenario(q, [
            f"Ana, a {30 + i % 40}-year-old nurse from Leeds, receives {q.problem} because of "
            f"what she achieved at work. She feels proud and relieved.",
            f"Ben, who lives in a small town, receives {q.problem} because he was held back "
            f"for years. He feels that things are finally even."])
            for i, q in enumerate(x for x in bank if x.split == "test")]
        store.upsert_questions(scenarios)
        store.sync_personas(personas)
        run = store.create_run("bench", "simulation", backend="embedded", model="gemma-3-270m",
                               mode="logprob", status="finished")
        qids = [q.id for q in bank] + [q.id for q in scenarios]
        now = time.time()
        rows = []
        for p in personas:
            for qid in qids:
                probs = [rng.random() for _ in range(3)]
                total = sum(probs)
                pa, pb, pc = (x / total for x in probs)
                best = max(range(3), key=lambda i: probs[i])
                letter = None if rng.random() < 0.02 else "ABC"[best]
                row = {"run_id": run["id"], "question_id": qid, "respondent": p.slug,
                       "respondent_kind": "persona", "raw_text": None, "answer": letter,
                       "p_a": pa, "p_b": pb, "p_c": pc, "other_mass": 0.01, "method": "logprob",
                       "latency_ms": 8.0, "created_at": now}
                rows.append(tuple(row.get(c) for c in RECORD_COLUMNS))
        with store.transaction():
            store.db.conn.executemany(_UPSERT_RECORD, rows)
        return store.question_count(), store.record_count()


async def time_open(db: Path, repeats: int) -> Timing:
    from fairpp_app.tui.app import FairppApp
    from fairpp_app.tui.screens.questions_screen import QuestionsScreen

    timing = Timing()
    for _ in range(repeats):
        app = FairppApp(db)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            timing.start()
            await pilot.press("2")
            await pilot.pause()
            timing.stop()
            assert isinstance(app.screen, QuestionsScreen) and app.screen.rows
    return timing


async def time_filter_and_steps(db: Path, repeats: int, steps: int) -> tuple[Timing, ...]:
    from textual.widgets import Select

    from fairpp_app.tui.app import FairppApp
    from fairpp_app.tui.screens.inspector_screen import InspectorScreen

    app = FairppApp(db)
    filters, stepping, floor = Timing(), Timing(), Timing()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        choices = [("f-split", "scenario"), ("f-topic", None), ("f-dimension", 3),
                   ("f-group", "women"), ("f-framing", 2)]
        for i in range(repeats):
            for widget_id, value in choices:
                select = screen.query_one(f"#{widget_id}", Select)
                if value is None:
                    value = [v for _, v in select._options if v is not Select.NULL][i % 3]
                filters.start()
                select.value = value
                await pilot.pause()
                filters.stop()
                assert screen.filter.as_dict()[widget_id.removeprefix("f-")] == value
            await pilot.press("x")  # clear them all for the next round
            await pilot.pause()
        screen.query_one("#f-split", Select).value = "test"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InspectorScreen)
        await app.workers.wait_for_complete()  # the split's weights, computed once
        await pilot.pause()
        for i in range(steps):
            key = "n" if (i // 5) % 2 == 0 else "p"
            before = app.screen.qid
            stepping.start()
            await pilot.press(key)
            stepping.stop()
            assert app.screen.qid != before
            floor.start()
            await pilot.press("z")  # bound to nothing: Pilot's own cost
            floor.stop()
    return filters, stepping, floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the database in this folder")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="fairpp-bench-tui-"))
    os.environ.setdefault("FAIRPP_HOME", str(folder))
    os.environ.setdefault("FAIRPP_PERSONAS", str(folder / "no-personas.toml"))
    db = folder / "bench.db"
    if not db.exists():
        start = time.perf_counter()
        questions, records = build_database(db)
        print(f"built {db}: {questions:,} questions, {records:,} records in "
              f"{time.perf_counter() - start:.1f}s", file=sys.stderr)

    record_paints()
    try:
        opens = asyncio.run(time_open(db, args.repeats))
        filters, steps, floor = asyncio.run(time_filter_and_steps(db, args.repeats, args.steps))
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    timings = {"open": opens, "filter": filters, "step": steps}
    medians = {}
    print(f"pilot floor (a key bound to nothing): {statistics.median(floor.wall) * 1000:.1f} ms")
    for name, t in timings.items():
        medians[name] = statistics.median(t.paint)
        wall = statistics.median(t.wall) * 1000
        print(f"{name:7s} to last screen update: median {medians[name] * 1000:7.1f} ms, max "
              f"{max(t.paint) * 1000:7.1f} ms | pilot wall median {wall:7.1f} ms | "
              f"target {TARGETS[name] * 1000:.0f} ms")
    worst = min(TARGETS[k] / v for k, v in medians.items())
    print(f"ratio: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data for the TUI tests: a seeded synthetic run in a real database file.

The synthetic run is seeded, so the numbers a screen shows (and the snapshots) are the
same on every machine. The first questions of the test split get hand-made answers that
the inspector tests step through; the rest get random letters and probabilities.
"""

from __future__ import annotations

import asyncio
import io
import random

from rich.console import Console

from fairpp_app.core.personas import builtin_personas

RUN = "synthetic"
MODEL = "tiny-model"
SIZE = (120, 40)

# Per question of the scripted head: seven persona answers (None = unparsed).
SCRIPT = [
    ["A"] * 7,                                    # 0: all agree
    ["A"] * 7,                                    # 1: all agree
    ["A", "A", "B", "A", "A", "A", "A"],          # 2: disagreement
    ["B"] * 7,                                    # 3: all agree
    ["C", "C", "C", "C", "C", None, "C"],         # 4: agree, one unparsed
    ["A", "B", "C", "A", "B", "C", "A"],          # 5: disagreement
]


def _probs(rng: random.Random, letter: str | None) -> tuple[float, float, float]:
    raw = [rng.random() for _ in range(3)]
    if letter is not None:
        raw["ABC".index(letter)] += 2.0
    total = sum(raw)
    return raw[0] / total, raw[1] / total, raw[2] / total


def insert_synthetic_run(store, n: int = 240, seed: int = 7, split: str = "test",
                         name: str = RUN) -> tuple[dict, list]:
    """A finished run over the first ``n`` questions of ``split``: seven personas and a model."""
    rng = random.Random(seed)
    personas = builtin_personas()
    store.sync_personas(personas)
    run = store.create_run(name, "simulation", backend="embedded", model="gemma-3-270m",
                           mode="logprob", status="finished")
    questions = store.questions(split, limit=n)
    rows = []
    for i, q in enumerate(questions):
        script = SCRIPT[i] if i < len(SCRIPT) else None
        for j, p in enumerate(personas):
            if script is not None:
                letter = script[j]
            else:
                letter = None if rng.random() < 0.03 else "ABC"[rng.randrange(3)]
            pa, pb, pc = _probs(rng, letter)
            rows.append({"run_id": run["id"], "question_id": q.id, "respondent": p.slug,
                         "respondent_kind": "persona", "answer": letter,
                         "raw_text": None if letter else "I would rather not say",
                         "p_a": pa if letter else None, "p_b": pb if letter else None,
                         "p_c": pc if letter else None, "method": "logprob",
                         "latency_ms": 10.0 + j, "created_at": 0.0})
        letter = "ABC"[rng.randrange(3)]
        pa, pb, pc = _probs(rng, letter)
        rows.append({"run_id": run["id"], "question_id": q.id, "respondent": MODEL,
                     "respondent_kind": "model", "answer": letter, "raw_text": None,
                     "p_a": pa, "p_b": pb, "p_c": pc, "method": "logprob", "latency_ms": 5.0,
                     "created_at": 0.0})
    store.upsert_records(rows)
    return run, questions


def plain(widget) -> str:
    """The text a Static shows, whatever renderable it holds (Rich table, Text, markup)."""
    console = Console(width=200, file=io.StringIO(), color_system=None, record=True)
    content = widget.content
    console.print(content if not isinstance(content, str) else widget.visual)
    return console.export_text()


async def wait_for_workers(app) -> None:
    """Wait until every worker of ``app`` has ended, a failed one included.

    Workers run with ``exit_on_error=False``: a failure is the app's to show (the tests
    check what it shows), while ``app.workers.wait_for_complete()`` would re-raise it here.
    """
    await asyncio.gather(*(worker.wait() for worker in list(app.workers)),
                         return_exceptions=True)


async def until(pilot, condition, what: str, timeout: float = 120.0) -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds. A key's
    action may run after ``pilot.press`` returns on a loaded machine: wait for its effect."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await pilot.pause(0.05)

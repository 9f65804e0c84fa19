"""Benchmark: embedded simulation speed on a quiet CPU and beside one CPU-bound process.

llama.cpp's threads spin at the barriers of every graph: when another process takes a core,
two threads on two cores wait for each other through whole scheduler time slices. This
bench measures records/s of the real simulation engine (``run_simulation`` on the embedded
model, persona-major, a fresh database each time) in four settings, each in its own
process so that thread and OpenMP settings start clean:

  old default: as many threads as cores, fixed (``FAIRPP_THREADS`` = cores)
  new default: the thread governor (``FAIRPP_THREADS`` unset)
  each quiet, and with one competing busy-loop process started before and stopped after.

Each setting is repeated and the median reported. The last line, ``ratio: X``, is loaded /
quiet records/s of the new default (target: at least 0.5). The line above it compares the
new default's quiet speed with the old one's (it should stay within 10%).

    .venv/bin/python bench/contention.py [--questions 4] [--repeats 3]

Run it on an otherwise idle machine: any other heavy work is a second competitor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "while True:\n    pass\n"


def worker(questions: int) -> None:
    """One measurement in this process: records/s of a fresh simulation of all personas."""
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.llamacpp import EmbeddedBackend
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.questions import build_bank
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation
    from fairpp_app.store.database import Store

    bank = build_bank()
    personas = builtin_personas()
    backend = EmbeddedBackend(BackendOptions())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        store.upsert_questions(bank)
        config = SimulationConfig(split="test", limit=questions, run="contention")
        started = time.perf_counter()
        outcome = run_simulation(store, config, personas, backend=backend)
        elapsed = time.perf_counter() - started
        store.close()
    backend.close()
    assert outcome.status == "finished", outcome.message
    print(json.dumps({"records": outcome.written, "seconds": elapsed}))


def measure(env: dict[str, str], loaded: bool, questions: int) -> float:
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
    try:
        if competitor is not None:
            time.sleep(0.5)  # let the competitor take its core before the engine starts
        proc = subprocess.run([sys.executable, __file__, "--worker", "--questions", str(questions)],
                              env={**os.environ, **env}, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["records"] / result["seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=4, help="test questions per persona (x 7 personas)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.questions)
        return 0

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    base_env = {k: v for k, v in os.environ.items() if k != "FAIRPP_THREADS"}
    os.environ.clear()
    os.environ.update(base_env)
    settings = {"old": {"FAIRPP_THREADS": str(cores)}, "new": {}}
    print(f"embedded model, {args.questions} test questions x 7 personas per measurement, "
          f"{cores} cores, median of {args.repeats}", file=sys.stderr)
    rates: dict[tuple[str, bool], list[float]] = {}
    for i in range(args.repeats):
        for name, env in settings.items():
            for loaded in (False, True):
                rate = measure(env, loaded, args.questions)
                rates.setdefault((name, loaded), []).append(rate)
                print(f"repeat {i + 1}: {name} default, {'one competitor' if loaded else 'quiet'}: "
                      f"{rate:.2f} records/s", file=sys.stderr)
    med = {key: statistics.median(values) for key, values in rates.items()}
    for name in settings:
        print(f"{name} default: quiet {med[(name, False)]:.2f} records/s, beside one busy process "
              f"{med[(name, True)]:.2f} records/s (loaded/quiet {med[(name, True)] / med[(name, False)]:.2f})")
    print(f"new quiet / old quiet: {med[('new', False)] / med[('old', False)]:.2f}")
    print(f"ratio: {med[('new', True)] / med[('new', False)]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

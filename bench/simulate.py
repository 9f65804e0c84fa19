"""Benchmark: fairpp's logprob engine against the paper's generate-then-parse, on the embedded model.

Same questions, same personas, one process, one database per method:
  (a) the paper's way: one greedy generation per record from a fresh context (each record an
      independent request, as the authors' API calls were), then parse the letter;
  (a') fairpp's own text mode: the same, but llama.cpp keeps the persona prefix in its cache;
  (b) logprob mode: one forward pass per record reading the A/B/C logits, persona prefix kept
      in llama.cpp's KV cache.
It also compares the engine's prompt throughput (prompt tokens handled per second, counting
every prompt in full) with llama.cpp's raw prefill speed on the same prompts evaluated from
an empty cache. Each measurement is repeated and the median reported. The last line is the
headline ratio, `ratio: X` = logprob records/s / the paper's way records/s; the ratio to
(a') is printed above it.

    .venv/bin/python bench/simulate.py [--questions 12] [--personas all] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.llamacpp import EmbeddedBackend
from fairpp_app.core.personas import builtin_personas, resolve_many
from fairpp_app.core.questions import build_bank
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from fairpp_app.store.database import Store


class FreshContext:
    """Wraps a backend so every generation starts from an empty KV cache."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def generate(self, prompts, max_tokens=None):
        out = []
        for prompt in prompts:
            self._backend.llm.reset()
            out.extend(self._backend.generate([prompt], max_tokens))
        return out


def timed_run(backend, bank, personas, mode: str, questions: int, personas_spec: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        store.upsert_questions(bank)
        config = SimulationConfig(mode=mode, split="test", limit=questions, personas=personas_spec,
                                  run=f"bench-{mode}", max_tokens=8)
        backend.llm.reset()
        start = time.perf_counter()
        outcome = run_simulation(store, config, personas, backend=backend)
        elapsed = time.perf_counter() - start
        store.close()
    assert outcome.status == "finished", outcome.message
    return elapsed, outcome.written


def prompt_token_counts(backend, bank, personas, questions: int) -> list[list[int]]:
    from fairpp_app.core.prompts import build_prompt

    test = [q for q in bank if q.split == "test"][:questions]
    return [backend._tokens(build_prompt(q, p)) for p in personas for q in test]


def raw_prefill(backend, token_lists: list[list[int]]) -> float:
    """Seconds for llama.cpp to evaluate every prompt from an empty KV cache."""
    start = time.perf_counter()
    for tokens in token_lists:
        backend.llm.reset()
        backend.llm.eval(tokens)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--personas", default="all")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    bank = build_bank()
    all_personas = builtin_personas()
    chosen = resolve_many(args.personas, all_personas)
    backend = EmbeddedBackend(BackendOptions())
    tokens = prompt_token_counts(backend, bank, chosen, args.questions)
    n_tokens = sum(len(t) for t in tokens)
    print(f"embedded model, {args.questions} test questions x {len(chosen)} personas = "
          f"{len(tokens)} records, {n_tokens} prompt tokens, median of {args.repeats}", file=sys.stderr)

    text_rates, paper_rates, logprob_rates, engine_tps, prefill_tps = [], [], [], [], []
    for i in range(args.repeats):
        t_paper, n = timed_run(FreshContext(backend), bank, all_personas, "text", args.questions,
                               args.personas)
        paper_rates.append(n / t_paper)
        t_text, n = timed_run(backend, bank, all_personas, "text", args.questions, args.personas)
        text_rates.append(n / t_text)
        t_lp, n = timed_run(backend, bank, all_personas, "logprob", args.questions, args.personas)
        logprob_rates.append(n / t_lp)
        engine_tps.append(n_tokens / t_lp)
        prefill_tps.append(n_tokens / raw_prefill(backend, tokens))
        print(f"repeat {i + 1}: paper's way {paper_rates[-1]:.2f} rec/s, text {text_rates[-1]:.2f} rec/s, "
              f"logprob {logprob_rates[-1]:.2f} rec/s, "
              f"engine {engine_tps[-1]:.0f} prompt tok/s, raw prefill {prefill_tps[-1]:.0f} tok/s",
              file=sys.stderr)
    backend.close()

    paper = statistics.median(paper_rates)
    text = statistics.median(text_rates)
    logprob = statistics.median(logprob_rates)
    engine = statistics.median(engine_tps)
    prefill = statistics.median(prefill_tps)
    print(f"paper's way (fresh generation per record, then parse): {paper:.2f} records/s")
    print(f"fairpp text mode (generation with prefix cache):     {text:.2f} records/s")
    print(f"logprob engine:             {logprob:.2f} records/s")
    print(f"engine prompt tokens/s:     {engine:.0f} (raw llama.cpp prefill {prefill:.0f}; "
          f"engine/prefill {engine / prefill:.2f})")
    print(f"logprob / fairpp text mode: {logprob / text:.2f}")
    print(f"ratio: {logprob / paper:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How much do the seven personas differ, with and without --debias permute?

Runs the embedded model on the same test questions for all seven personas twice (plain
logprob scoring, then with options A/B swapped and averaged) and prints, for each: the share
of answers that are A/B/C, the mean pairwise agreement between personas (1.0 = the persona
prompts change nothing), and the range of the paper's similarity between persona pairs.
Last line: `ratio: X` = persona disagreement (1 - mean agreement) with permute / without.

    .venv/bin/python bench/persona_spread.py [--questions 40]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.llamacpp import EmbeddedBackend
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.questions import build_bank
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.run_metrics import run_metrics
from fairpp_app.jobs.simulation import run_simulation
from fairpp_app.store.database import Store


def spread(store: Store, run: str, personas) -> dict:
    m = run_metrics(store, run, personas, "test")
    slugs = m["personas"]
    pairs = list(itertools.combinations(slugs, 2))
    agree = [m["agreement"][a][b] for a, b in pairs]
    sims = [m["similarity"][a][b] for a, b in pairs]
    counts = [m["counts"][s] for s in slugs]
    total = sum(c["A"] + c["B"] + c["C"] for c in counts)
    shares = {k: sum(c[k] for c in counts) / total for k in "ABC"}
    return {"mean_agreement": statistics.mean(agree), "min_agreement": min(agree),
            "max_agreement": max(agree), "min_similarity": min(sims), "shares": shares,
            "a_share_per_persona": [c["A"] / (c["A"] + c["B"] + c["C"]) for c in counts]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=40)
    args = ap.parse_args()
    personas = builtin_personas()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBackend(BackendOptions()) as backend:
        store = Store(Path(tmp) / "spread.db")
        store.upsert_questions(build_bank())
        for debias in ("none", "permute"):
            cfg = SimulationConfig(split="test", limit=args.questions, debias=debias, run=debias)
            run_simulation(store, cfg, personas, backend=backend)
            results[debias] = spread(store, debias, personas)
        store.close()
    for debias, r in results.items():
        a_min, a_max = min(r["a_share_per_persona"]), max(r["a_share_per_persona"])
        print(f"debias={debias}: answers A {r['shares']['A']:.0%} B {r['shares']['B']:.0%} "
              f"C {r['shares']['C']:.0%} (A share per persona {a_min:.0%}-{a_max:.0%}); "
              f"pairwise persona agreement mean {r['mean_agreement']:.2f} "
              f"(range {r['min_agreement']:.2f}-{r['max_agreement']:.2f}); "
              f"lowest pairwise similarity {r['min_similarity']:.3f}")
    plain, perm = results["none"], results["permute"]
    print(f"ratio: {(1 - perm['mean_agreement']) / max(1 - plain['mean_agreement'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

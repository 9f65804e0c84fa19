"""Batched against one-at-a-time option scoring with the transformers backend.

The same prompts (7 personas x 7 test questions, persona-major as the engine orders
them) are scored in batches of --batch-size and one by one; each way is timed --repeats
times, the two interleaved so that a busy machine slows both alike, and the medians are
compared. The model defaults to the embedded Gemma 3 270M, converted once into the data
dir ($FAIRPP_HOME), on the CPU.

    .venv/bin/python bench/transformers_batch.py [--model DIR_OR_GGUF] [--batch-size 8]

The last line is ``ratio: X``, batched records/s over one-at-a-time records/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from fairpp_app.backends.base import BackendOptions
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import build_prompt
from fairpp_app.core.questions import build_bank


def prompts(n_personas: int, n_questions: int):
    questions = [q for q in build_bank() if q.split == "test"][:n_questions]
    return [build_prompt(q, p) for p in builtin_personas()[:n_personas] for q in questions]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or GGUF (default: embedded)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--personas", type=int, default=7)
    parser.add_argument("--questions", type=int, default=7)
    args = parser.parse_args()

    from fairpp_app.backends.transformers_backend import TransformersBackend

    work = prompts(args.personas, args.questions)
    backend = TransformersBackend(BackendOptions(model=args.model, device=args.device,
                                                 batch_size=args.batch_size))
    print(f"{backend.model_name} on {backend.device} ({backend.describe()['dtype']}), "
          f"{len(work)} prompts, batch {args.batch_size}, {args.repeats} repeats",
          file=sys.stderr)
    backend.score_options(work[: args.batch_size])  # warm-up: allocator, kernels, caches

    def rate(score) -> float:
        started = time.perf_counter()
        score()
        return len(work) / (time.perf_counter() - started)

    batched, single = [], []
    for i in range(args.repeats):
        batched.append(rate(lambda: backend.score_options(work)))
        single.append(rate(lambda: [backend.score_options([p]) for p in work]))
        print(f"  repeat {i + 1}: batched {batched[-1]:.2f}/s, single {single[-1]:.2f}/s",
              file=sys.stderr)
    backend.close()
    b, s = statistics.median(batched), statistics.median(single)
    print(f"batched ({args.batch_size}): {b:.2f} records/s")
    print(f"one at a time: {s:.2f} records/s")
    print(f"ratio: {b / s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

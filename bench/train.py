"""Preference-training throughput: stock TRL ``DPOTrainer`` against fairpp's fast path.

Both train a LoRA adapter (r=16, alpha=32, same projections) on the same preference pairs
of the same base model, the embedded Gemma 3 270M by default, on this machine's CPU in
float32. A pair is (prompt, the target's letter, one other letter); each question gives
two. Stock TRL gets the pairs as text (``prompt``/``chosen``/``rejected``), the way its
documentation feeds it, with its ``DPOConfig`` defaults except bf16 (off, as fairpp on a
CPU); it runs four whole sequences per pair: policy and reference, chosen and rejected.
fairpp runs one last-position pass per question for the policy and one for the reference,
covering both of the question's pairs.

``--recipe paper`` times the paper's recipe instead (REFERENCE section 7): the
"Human:/Assistant:" prompt, the letter followed by EOS, three pairs per question. Stock TRL
gets the same prompt text and the bare letters (its DPO tokenisation appends EOS, as the
authors' trainer did) and runs its four sequences per pair; fairpp runs one prompt pass per
question and one extra position per letter, for the policy and once for the reference.

Each optimizer step is timed (the first of each trainer is a warm-up and is dropped) and
the medians of pairs per second are compared. Stock TRL is slow here (well under one pair
per second), so it gets only a handful of steps.

    .venv/bin/python bench/train.py [--model DIR_OR_GGUF] [--stock-steps 3] [--ours-steps 6]
    .venv/bin/python bench/train.py --recipe paper --pairs-per-step 6

The last line is ``ratio: X``, fairpp pairs/s over stock TRL pairs/s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

from fairpp_app.core.prompts import build_prompt
from fairpp_app.core.questions import LETTERS, build_bank
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import Example, data_hash
from fairpp_app.training.recipes import RECIPES, paper_prompt

# Before transformers is first imported (inside the functions below): no progress bars, no
# deprecation chatter between the timings.
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")


def examples(n: int, seed: int = 0) -> list[Example]:
    """Train questions with seeded target letters and varied weights (as the tiers give)."""
    rng = random.Random(seed)
    questions = [q for q in build_bank() if q.split == "train"]
    out = []
    for q in rng.sample(questions, n):
        chosen = rng.choice(LETTERS)
        rejected = tuple(x for x in LETTERS if x != chosen)
        out.append(Example(q, chosen, rejected, weight=rng.choice([0.05, 0.1, 0.2, 0.3]),
                           tier=None))
    return out


class StepTimer:
    """Seconds per optimizer step, from the Trainer's own hooks."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self
        self.times: list[float] = []

        class Hook(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.times.append(time.perf_counter() - timer._t)
                print(f"  step {state.global_step}: {timer.times[-1]:.1f} s", file=sys.stderr,
                      flush=True)

        self.callback = Hook()


def lora_config(model):
    from peft import LoraConfig

    from fairpp_app.training.torch_trainer import lora_targets

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=lora_targets(model),
                      bias="none", task_type="CAUSAL_LM")


def stock_rows(work: list[Example], recipe: str) -> list[dict]:
    """The pairs as text, the way TRL's documentation feeds them."""
    if recipe == "paper":
        return [{"prompt": paper_prompt(e.question), "chosen": c, "rejected": r}
                for e in work for c, r in e.pairs(3)]
    return [{"prompt": build_prompt(e.question, None).as_text(), "chosen": " " + c,
             "rejected": " " + r} for e in work for c, r in e.pairs()]


def stock_trl(path: Path, work: list[Example], pairs_per_step: int, steps: int, out: Path,
              recipe: str = "fairpp") -> list[float]:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from fairpp_app.backends.hf_models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path, "cpu")
    rows = stock_rows(work, recipe)
    timer = StepTimer()
    args = DPOConfig(output_dir=str(out / "stock"), per_device_train_batch_size=pairs_per_step,
                     max_steps=steps, bf16=False, use_cpu=True, report_to=[], save_strategy="no",
                     logging_steps=1, disable_tqdm=True, learning_rate=1e-4, beta=0.1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora_config(model),
                         callbacks=[timer.callback])
    trainer.remove_callback(PrinterCallback)  # its log dicts would bury the result
    trainer.train()
    return [pairs_per_step / t for t in timer.times[1:]]


def ours(path: Path, work: list[Example], pairs_per_step: int, steps: int, out: Path,
         recipe: str = "fairpp") -> list[float]:
    from fairpp_app.training.torch_trainer import build_trainer, prepare_model

    per_question = RECIPES[recipe].pairs
    config = TrainingConfig(method="wdpo", from_run="bench", base=str(path), name="bench",
                            batch_size=pairs_per_step // per_question, grad_accum=1,
                            max_steps=steps, lr=1e-4, save_every=10_000, eval_every=0,
                            recipe=recipe)
    data = SimpleNamespace(examples=work, schedule=lambda weighting, seed: work,
                           data_hash=data_hash(config.method, work))
    session = SimpleNamespace(config=config, name="bench", data=lambda: data)
    model, tokenizer, _ = prepare_model(config, "cpu", str(path))
    timer = StepTimer()
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=out / "ours",
                            callbacks=[timer.callback])
    trainer.train()
    return [pairs_per_step / t for t in timer.times[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or GGUF (default: embedded)")
    parser.add_argument("--recipe", default="fairpp", choices=tuple(RECIPES),
                        help="fairpp (the letter path, two pairs per question) or paper (letter + "
                             "EOS after the Human/Assistant prompt, three pairs); default fairpp")
    parser.add_argument("--pairs-per-step", type=int, default=None,
                        help="pairs per optimizer step for both trainers, a multiple of the "
                             "recipe's pairs per question (default: 2 questions' worth)")
    parser.add_argument("--stock-steps", type=int, default=3, help="timed stock TRL steps (default 3)")
    parser.add_argument("--ours-steps", type=int, default=6, help="timed fairpp steps (default 6)")
    parser.add_argument("--which", default="both", choices=("both", "stock", "ours"),
                        help="time one side only (no ratio); default both")
    args = parser.parse_args()
    per_question = RECIPES[args.recipe].pairs
    args.pairs_per_step = args.pairs_per_step or 2 * per_question
    if args.pairs_per_step < per_question or args.pairs_per_step % per_question:
        parser.error(f"--pairs-per-step must be a multiple of {per_question} (a question gives "
                     f"{per_question} pairs under --recipe {args.recipe})")

    from transformers.utils import logging as hf_logging

    from fairpp_app.backends.hf_models import resolve_model

    hf_logging.set_verbosity_error()
    path = resolve_model(args.model)
    n_questions = (args.ours_steps + 1) * args.pairs_per_step // per_question
    work = examples(max(n_questions, (args.stock_steps + 1) * args.pairs_per_step // per_question))
    print(f"{path.name} on cpu (float32), LoRA r=16, {args.pairs_per_step} pairs per step, "
          f"recipe {args.recipe}", file=sys.stderr)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.which in ("both", "stock"):
            print("stock TRL DPOTrainer:", file=sys.stderr)
            rates["stock TRL DPOTrainer"] = stock_trl(path, work, args.pairs_per_step,
                                                      args.stock_steps + 1, Path(tmp), args.recipe)
        if args.which in ("both", "ours"):
            print("fairpp fast path:", file=sys.stderr)
            rates["fairpp fast path"] = ours(path, work, args.pairs_per_step,
                                             args.ours_steps + 1, Path(tmp), args.recipe)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in medians.items():
        print(f"{k}: {v:.3f} pairs/s (median of {len(rates[k])} steps)")
    if len(medians) == 2:
        print(f"ratio: {medians['fairpp fast path'] / medians['stock TRL DPOTrainer']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

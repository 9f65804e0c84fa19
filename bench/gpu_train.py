"""GPU benchmark: WDPO with LoRA on a randomly initialised Llama-3.2-3B-shaped model.

The same comparison as bench/train.py (whose example builder and LoRA settings it reuses),
at the size the paper trained: stock TRL ``DPOTrainer`` against fairpp's fast path, both
training a LoRA adapter (r=16, alpha=32, the same projections) on the same preference
pairs, in bf16 on one CUDA GPU. No weights can be downloaded on the GPU machine, so the
model is built from a config with Llama 3.2 3B's shape (28 layers, hidden 3072, GQA 24/8
heads, MLP 8192, vocabulary 128,256, tied embeddings) and the tokenizer is a BPE trained
here on the question bank (as in bench/gpu_simulate.py), so prompt lengths are close to a
real tokenizer's; compute per token is the real model's, the answers are meaningless.

Stock TRL gets the pairs as text with its ``DPOConfig`` defaults (bf16 on) and runs four
whole sequences per pair (policy and reference, chosen and rejected, full logits over the
vocabulary); fairpp runs one last-position pass per question for the policy and one for
the reference, shared by the question's two pairs. Each side gets a freshly built model
(peft injects its layers in place). Every optimizer step is timed after a CUDA sync; the
first is a warm-up and is dropped; the medians of pairs per second are compared, and each
side's peak GPU memory (``torch.cuda.max_memory_allocated``) is printed.

    bash bench/gpu_train.sh [--pairs-per-step 32] [--stock-steps 5] [--ours-steps 10]
    .venv/bin/python bench/gpu_train.py --tiny      # CPU smoke test: a 2-layer model, float32

The last line is ``ratio: X``, fairpp pairs/s over stock TRL pairs/s.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent


def _bench_train():
    """bench/train.py as a module (it is a script, not a package member)."""
    spec = importlib.util.spec_from_file_location("bench_train", HERE / "train.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {HERE / 'train.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpu_bench = _bench_train()

LLAMA_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                num_attention_heads=24, num_key_value_heads=8, head_dim=128)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16)


def train_tokenizer(vocab_size: int = 8000):
    """A byte-level BPE trained on the bank's prompts, as bench/gpu_simulate.py trains it,
    plus answer lines so that " A", " B" and " C" are single tokens (the completions)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.core.questions import build_bank

    bank = build_bank()[:3000]
    texts = [build_prompt(q, p).as_text() for q in bank[:500] for p in builtin_personas()[:2]]
    texts += [build_prompt(q, None).as_text() for q in bank[:500]]
    texts += [q.text for q in bank] + [f"Answer: {x}" for x in "ABC" for _ in range(200)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>", padding_side="left")
    for spelling in (" A", " B", " C"):
        assert len(tokenizer.encode(spelling, add_special_tokens=False)) == 1, spelling
    return tokenizer


def build_model(device: str, tiny: bool, seed: int = 0):
    """Random Llama-3.2-3B-shaped weights (bf16 on CUDA, float32 on a CPU), built on the device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128_256, **(TINY if tiny else LLAMA_3B),
                         max_position_embeddings=8192, rope_theta=500_000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    return model


class StepTimer:
    """Seconds per optimizer step (after a CUDA sync, so queued kernels count)."""

    def __init__(self, device: str) -> None:
        from transformers import TrainerCallback

        timer = self
        self.times: list[float] = []
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        class Hook(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                sync()
                timer._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                sync()
                timer.times.append(time.perf_counter() - timer._t)
                print(f"  step {state.global_step}: {timer.times[-1]:.2f} s", file=sys.stderr,
                      flush=True)

        self.callback = Hook()


def stock_trl(model, tokenizer, work, pairs_per_step: int, steps: int, device: str, out: Path):
    from datasets import Dataset, disable_progress_bars
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from fairpp_app.core.prompts import build_prompt

    rows = [{"prompt": build_prompt(e.question, None).as_text(), "chosen": " " + c,
             "rejected": " " + r} for e in work for c, r in e.pairs()]
    disable_progress_bars()  # stderr is for the step times
    timer = StepTimer(device)
    args = DPOConfig(output_dir=str(out / "stock"), per_device_train_batch_size=pairs_per_step,
                     max_steps=steps, bf16=device == "cuda", use_cpu=device == "cpu", report_to=[],
                     save_strategy="no", logging_steps=1, disable_tqdm=True, learning_rate=1e-4,
                     beta=0.1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=cpu_bench.lora_config(model),
                         callbacks=[timer.callback])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return [pairs_per_step / t for t in timer.times[1:]]


def ours(model, tokenizer, work, pairs_per_step: int, steps: int, device: str, out: Path):
    from transformers import set_seed
    from trl.trainer.utils import disable_dropout_in_model

    from fairpp_app.training.config import TrainingConfig
    from fairpp_app.training.torch_trainer import add_lora, build_trainer

    config = TrainingConfig(method="wdpo", from_run="bench", name="bench",
                            batch_size=pairs_per_step // 2, grad_accum=1, max_steps=steps,
                            lr=1e-4, save_every=10_000, eval_every=0)
    session = SimpleNamespace(config=config, name="bench",
                              data=lambda: SimpleNamespace(examples=work))
    set_seed(config.seed)
    model = add_lora(model, config)  # the same targets and r/alpha as lora_config()
    disable_dropout_in_model(model)
    timer = StepTimer(device)
    trainer = build_trainer(session, model, tokenizer, device, output_dir=out / "ours",
                            callbacks=[timer.callback])
    trainer.train()
    return [pairs_per_step / t for t in timer.times[1:]]


def measure(label: str, run, args, tokenizer, work, steps: int, out: Path) -> tuple[list[float], float]:
    print(f"{label}:", file=sys.stderr, flush=True)
    model = build_model(args.device, args.tiny)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rates = run(model, tokenizer, work, args.pairs_per_step, steps + 1, args.device, out)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    del model
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return rates, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs-per-step", type=int, default=32,
                    help="pairs per optimizer step for both trainers (even; the paper's batch is 32)")
    ap.add_argument("--stock-steps", type=int, default=5, help="timed stock TRL steps (default 5)")
    ap.add_argument("--ours-steps", type=int, default=10, help="timed fairpp steps (default 10)")
    ap.add_argument("--which", default="both", choices=("both", "stock", "ours"),
                    help="time one side only (no ratio); default both")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true",
                    help="a 2-layer model of the same vocabulary, float32 on a CPU (smoke test)")
    args = ap.parse_args()
    if args.pairs_per_step < 2 or args.pairs_per_step % 2:
        ap.error("--pairs-per-step must be even (a question gives two pairs)")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU visible to torch; use --tiny --device cpu for a smoke test")

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    shape = "tiny 2-layer" if args.tiny else "Llama-3.2-3B-shaped"
    dtype = "bf16" if args.device == "cuda" else "float32"
    print(f"device {args.device}: {name}; random {shape} model ({dtype}), LoRA r=16, "
          f"{args.pairs_per_step} pairs per step", file=sys.stderr)
    tokenizer = train_tokenizer()
    steps = max(args.stock_steps, args.ours_steps) + 1
    work = cpu_bench.examples(steps * args.pairs_per_step // 2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.which in ("both", "stock"):
            results["stock TRL DPOTrainer"] = measure("stock TRL DPOTrainer", stock_trl, args,
                                                      tokenizer, work, args.stock_steps, Path(tmp))
        if args.which in ("both", "ours"):
            results["fairpp fast path"] = measure("fairpp fast path (WDPO)", ours, args, tokenizer,
                                                  work, args.ours_steps, Path(tmp))
    medians = {}
    for label, (rates, peak) in results.items():
        medians[label] = statistics.median(rates)
        memory = f"peak GPU memory {peak:.1f} GiB" if args.device == "cuda" else "no GPU"
        print(f"{label}: {medians[label]:.2f} pairs/s (median of {len(rates)} steps), {memory}")
    if len(medians) == 2:
        print(f"ratio: {medians['fairpp fast path'] / medians['stock TRL DPOTrainer']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

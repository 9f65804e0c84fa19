"""GPU benchmark: the transformers backend on a randomly initialised Llama-3.1-8B-shaped model.

No weights can be downloaded on the GPU machine, so the model is built from a config with
Llama 3.1 8B's shape (32 layers, hidden 4096, GQA 32/8 heads, MLP 14336, vocabulary 128,256)
in bf16, and the tokenizer is a BPE trained here on the question bank (prompt lengths come
out close to a real tokenizer's). Compute per token is the real model's; answers are
meaningless. The persona prompts go through the real engine (run_simulation, SQLite
included) in logprob mode, persona-major, batched, once with the shared persona prefix
reused from the KV cache and once without (the baseline). Prints records/s of both, peak
GPU memory, and the projected time for all 238,623 Fair-PP records; the last line is
`ratio: X` = records/s with prefix reuse / without.

    bash bench/gpu_simulate.sh [--prompts 3500] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

FULL_RECORDS = 238_623
GOAL_MINUTES = 15


def train_tokenizer(vocab_size: int = 8000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.core.questions import build_bank

    bank = build_bank()[:3000]
    texts = [build_prompt(q, p).as_text() for q in bank[:500] for p in builtin_personas()[:2]]
    texts += [q.text for q in bank] + ["A", "B", "C", " A", " B", " C"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def build_model(device: str, tiny: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2) if tiny else
             dict(hidden_size=4096, intermediate_size=14_336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8))
    config = LlamaConfig(vocab_size=128_256, **shape,
                         max_position_embeddings=8192, rope_theta=500_000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    return model.eval()


def run(backend, store, personas, n_questions: int, batch_size: int, name: str) -> tuple[float, int]:
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation

    backend.options.batch_size = batch_size
    config = SimulationConfig(backend="transformers", split="test", limit=n_questions,
                              run=name, batch_size=batch_size)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    outcome = run_simulation(store, config, personas, backend=backend)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    assert outcome.status == "finished", outcome.message
    return elapsed, outcome.written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=3500, help="persona prompts per measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model of the same vocabulary (smoke test)")
    args = ap.parse_args()

    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.transformers_backend import TransformersBackend
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.questions import build_bank
    from fairpp_app.store.database import Store

    print(f"device {args.device}: {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}",
          file=sys.stderr)
    tokenizer = train_tokenizer()
    t0 = time.perf_counter()
    model = build_model(args.device, args.tiny)
    print(f"random {'tiny' if args.tiny else 'Llama-3.1-8B-shaped'} model built in {time.perf_counter() - t0:.0f}s "
          f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, bf16)", file=sys.stderr)
    personas = builtin_personas()
    n_questions = max(1, args.prompts // len(personas))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gpu.db")
        store.upsert_questions(build_bank())
        for label, reuse in (("warm-up", True), ("no prefix reuse", False), ("prefix reuse", True)):
            backend = TransformersBackend.from_loaded(
                model, tokenizer, BackendOptions(batch_size=args.batch_size, n_ctx=4096,
                                                 extra={"prefix_cache": reuse}), "random-llama-3.1-8b")
            questions = 2 if label == "warm-up" else n_questions
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            elapsed, written = run(backend, store, personas, questions, args.batch_size, label)
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
            rate = written / elapsed
            results[label] = rate
            print(f"{label}: {written} records in {elapsed:.1f}s = {rate:.1f} records/s, "
                  f"peak GPU memory {peak:.1f} GiB; all {FULL_RECORDS:,} records would take "
                  f"{FULL_RECORDS / rate / 60:.1f} min (goal {GOAL_MINUTES})")
        store.close()
    print(f"ratio: {results['prefix reuse'] / results['no prefix reuse']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

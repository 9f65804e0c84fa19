"""Hugging Face transformers in-process, on CPU, CUDA or Apple's MPS.

``--model`` is a local model folder or a GGUF file (see :mod:`fairpp_app.backends.hf_models`); with
no model the embedded Gemma 3 270M is converted once and used, so this backend and the
llama.cpp one can be compared on the same weights.

Scoring runs a batch of prompts in one forward pass. Prompts are padded on the LEFT, so
the last position of every row is that prompt's real last token, and the position ids
count only real tokens, so a padded row sees exactly the positions it would see alone.
The forward pass is asked for the logits of the last position only
(``logits_to_keep=1``): one vocabulary-wide row per prompt, which is what the full-vocab
log-normaliser behind ``other_mass`` needs anyway, and about 1% of the cost of the pass
for Gemma 3 270M. Going through the model's own head keeps whatever it does after the
projection (Gemma 2's ``final_logit_softcapping``, Granite's logit scaling...) without
copying it here; projecting only the option rows would save that 1% but could not give
``other_mass``. A model whose forward lacks ``logits_to_keep`` gets the full logits and
the last row is taken.

Models whose tokenizer has a chat template are prompted through it and the first assistant
token is scored; base models get ``Prompt.as_text()`` with the BOS token where the
tokenizer adds one.

Shared-prefix reuse: the engine sends prompts persona-major, so a batch usually shares a
long system prompt. When the rows of a batch share at least ``MIN_SHARED_PREFIX`` tokens,
that prefix is run once (batch size 1, its KV cache kept for the next batch of the same
persona), the cache is repeated along the batch and only the suffixes go through the
model. Suffixes are left-padded against the prefix, so padding sits between prefix and
suffix, masked out, and position ids count real tokens only: each row sees exactly what it
would see alone (tested against plain scoring). This roughly halves the work per record
on a GPU, where scoring is compute-bound. Models whose sliding attention window is shorter
than the prompts score without it (the padding would shift what the window sees).
Batching is for GPUs; on a CPU the ~180-token prompts already keep the matrix units
busy, and batches of 8 gained only 0.9-1.3x over single prompts
(bench/transformers_batch.py).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fairpp_app.backends import hf_models
from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.backends.hf_prompts import HFPromptMethods, HFPrompts
from fairpp_app.core.answers import LETTERS, OptionScores
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.prompts import Prompt

if TYPE_CHECKING:
    import torch

MIN_SHARED_PREFIX = 16
DTYPES = ("float32", "bfloat16", "bf16", "float16", "fp16")


def _import_torch() -> None:
    """torch is imported when a backend is made, not with this module: the UI reads the
    class's details without paying for (or needing) torch."""
    global torch, _OOM
    import torch

    _OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class TransformersBackend(HFPromptMethods, Backend):
    name = "transformers"
    SUMMARY = "Hugging Face transformers on CPU, CUDA or MPS (--model DIR or GGUF)"
    PACKAGES = ("transformers", "torch")
    READY_TEXT = "installed; give a model path"
    ADVICE = ("Give a local model folder (or a GGUF file) in the model field; install "
              "the train extra for torch and transformers.")
    SUPPORTS_LOGPROBS = True
    SUPPORTS_BATCH = True

    def __new__(cls, *args, **kwargs):
        _import_torch()
        return super().__new__(cls)

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        # The device first: asking for a missing GPU should fail before a minute of conversion.
        self.device = hf_models.pick_device(options.device)
        self.dtype = self._dtype()
        self.path: Path = hf_models.resolve_model(options.model)
        threads = int(os.environ.get("FAIRPP_THREADS", "0"))
        if threads > 0 and self.device == "cpu":
            torch.set_num_threads(threads)
        self._setup(hf_models.load_tokenizer(self.path),
                    hf_models.load_causal_lm(self.path, self.device, self.dtype),
                    hf_models.model_display_name(options.model))

    @classmethod
    def from_loaded(cls, model, tokenizer, options: BackendOptions, name: str) -> TransformersBackend:
        """Wrap a model already in memory (the model being trained, an adapter loaded for
        evaluation, benchmarks on random models): everything but the loading is the same."""
        self = cls.__new__(cls)
        self._wrap(model, tokenizer, options, name)
        return self

    def _wrap(self, model, tokenizer, options: BackendOptions, name: str) -> None:
        Backend.__init__(self, options)
        weights = next(model.parameters())
        self.device = options.device if options.device not in (None, "auto") else str(weights.device)
        self.dtype = weights.dtype
        self.path = Path(name)
        self._setup(tokenizer, model, name)

    def _setup(self, tokenizer, model, name: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self._name = name
        self.prompts = HFPrompts(tokenizer, chat=self.options.extra.get("chat", "auto"),
                                 n_ctx=self.options.n_ctx, model_name=self.model_name)
        self._pad_id = self._pad_token_id()
        self._letter_ids = self.prompts.option_ids()
        # A peft wrapper's forward takes **kwargs and hands them on; ask the real model.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(inner.forward).parameters
        self._keeps_logits = "logits_to_keep" in params
        self._takes_positions = "position_ids" in params
        # transformers 5 renamed past_key_values to cache.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.prompt_tokens = 0  # scored prompt tokens run through the model (not cached), for tests

    # ---- set-up ------------------------------------------------------------------------

    def _dtype(self) -> torch.dtype:
        wanted = self.options.extra.get("dtype")
        if wanted is None:
            return hf_models.default_dtype(self.device)
        if str(wanted) not in DTYPES:
            raise PermanentBackendError(f"unknown dtype '{wanted}'; use one of {', '.join(DTYPES)}")
        aliases = {"bf16": "bfloat16", "fp16": "float16"}
        return getattr(torch, aliases.get(str(wanted), str(wanted)))

    def _pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    # ---- prompts -----------------------------------------------------------------------

    @property
    def logit_softcap(self) -> float | None:
        """The final-logit softcap the model's own head applies (already in its logits)."""
        return getattr(getattr(self.model, "config", None), "final_logit_softcapping", None)

    def _batch(self, prompts: Sequence[Prompt]) -> dict[str, torch.Tensor]:
        """Left-padded input ids, attention mask and (where taken) real-token positions."""
        rows = [self.prompt_ids(p) for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self._takes_positions:
            batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
        return batch

    def _chunks(self, prompts: Sequence[Prompt]):
        step = max(1, self.options.batch_size)
        for i in range(0, len(prompts), step):
            yield prompts[i:i + step]

    # ---- scoring and generation --------------------------------------------------------

    def _shared_prefix(self, rows: list[list[int]]) -> int:
        if len(rows) < 2 or not self._keeps_logits or not self._takes_positions:
            return 0
        if not self.options.extra.get("prefix_cache", True):
            return 0
        window = getattr(self.model.config, "sliding_window", None)
        if window and max(len(r) for r in rows) >= window:
            return 0  # padding between prefix and suffix would eat into the window
        first, n = rows[0], min(len(r) for r in rows) - 1  # keep >= 1 suffix token per row
        cached = getattr(self, "_last_prefix", None)
        if cached is not None and len(cached[0]) <= n and all(
                tuple(r[:len(cached[0])]) == cached[0] for r in rows):
            return len(cached[0])  # the persona's prefix, already in the cache
        length = 0
        while length < n and all(r[length] == first[length] for r in rows):
            length += 1
        return length if length >= MIN_SHARED_PREFIX else 0

    def _prefix_cache(self, prefix: tuple[int, ...]):
        cached = getattr(self, "_last_prefix", None)
        if cached is not None and cached[0] == prefix:
            return cached[1]
        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or out.past_key_values
        self._last_prefix = (prefix, cache)
        self.prompt_tokens += len(prefix)
        return cache

    def _logits_with_prefix(self, rows: list[list[int]], shared: int) -> torch.Tensor:
        cache = copy.deepcopy(self._prefix_cache(tuple(rows[0][:shared])))
        cache.batch_repeat_interleave(len(rows))
        suffixes = [r[shared:] for r in rows]
        self.prompt_tokens += sum(len(x) for x in suffixes)
        width = max(len(x) for x in suffixes)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, suffix in enumerate(suffixes):
            ids[i, width - len(suffix):] = torch.tensor(suffix, dtype=torch.long)
            mask[i, shared + width - len(suffix):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=True,
                         logits_to_keep=1, **{self._cache_arg: cache})
        return out.logits[:, -1, :].float()

    def last_logits(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Float32 logits of the next token after each prompt, shape (len(prompts), vocab)."""
        rows = [self.prompt_ids(p) for p in prompts]
        shared = self._shared_prefix(rows)
        systems = {p.system for p in prompts}
        if shared and len(systems) == 1 and None not in systems:
            # Cut at the persona's own prefix, so every batch of that persona reuses one cache.
            persona_only = self.prompt_ids(Prompt(system=prompts[0].system, user=""))
            limit = next((i for i, (a, b) in enumerate(zip(persona_only, rows[0])) if a != b),
                         min(len(persona_only), len(rows[0])))
            shared = min(shared, limit) if limit >= MIN_SHARED_PREFIX else shared
        if shared:
            with torch.inference_mode(), _oom_as_error(self.device):
                return self._logits_with_prefix(rows, shared)
        batch = self._batch(prompts)
        self.prompt_tokens += sum(len(r) for r in rows)
        with torch.inference_mode(), _oom_as_error(self.device):
            if self._keeps_logits:
                logits = self.model(**batch, use_cache=False, logits_to_keep=1).logits
            else:
                logits = self.model(**batch, use_cache=False).logits
        return logits[:, -1, :].float()

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        out = []
        for chunk in self._chunks(prompts):
            logits = self.last_logits(chunk).double()
            logprobs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            per_letter = [torch.logsumexp(logprobs[:, ids], dim=-1).tolist()
                          for ids in self._letter_ids]
            for row in zip(*per_letter):
                out.append(OptionScores.from_logprobs(dict(zip(LETTERS, row))))
        return out

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        out = []
        new_tokens = max_tokens or self.options.max_tokens
        for chunk in self._chunks(prompts):
            batch = self._batch(chunk)
            batch.pop("position_ids", None)  # generate() derives them from the mask itself
            with torch.inference_mode(), _oom_as_error(self.device):
                ids = self.model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,
                                          temperature=None, top_p=None, top_k=None,
                                          pad_token_id=self._pad_id)
            fresh = ids[:, batch["input_ids"].shape[1]:]
            out.extend(self.tokenizer.batch_decode(fresh, skip_special_tokens=True))
        return out

    # ---- the rest of the contract ------------------------------------------------------

    @property
    def model_name(self) -> str:
        return getattr(self, "_name", None) or hf_models.model_display_name(self.options.model)

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "device": self.device,
                "dtype": str(self.dtype).removeprefix("torch."), "chat_template": self.uses_chat_template}

    @property
    def takes_positions(self) -> bool:
        """Whether the model's forward accepts ``position_ids`` (left padding needs them)."""
        return self._takes_positions

    def forget_cache(self) -> None:
        self._last_prefix = None

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        self._last_prefix = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


@contextmanager
def _oom_as_error(device: str):
    """Out of device memory is the user's to fix (a smaller --batch-size), not a crash."""
    try:
        yield
    except _OOM:
        raise PermanentBackendError(f"out of memory on {device}; try a smaller --batch-size") from None

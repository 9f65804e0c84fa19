"""mlx-lm in-process: a local Hugging Face model directory, or the embedded Gemma converted.

mlx-lm loads the directory itself (safetensors weights of the architectures it knows,
llama and gemma3_text among them); nothing is fetched from a hub, so ``--model`` must be
a folder on disk. Without ``--model`` (or with ``embedded``) the Gemma 3 270M GGUF that
ships with fairpp is converted once into the cache by :mod:`fairpp_app.hfmodels`.

Option scoring runs the model over the prompt and reads the last position's logits; the
log-probabilities of each letter's single-token spellings ("A", " A") are summed. One
prompt cache lives as long as the backend: before each prompt it is trimmed back to the
longest token prefix shared with the previous prompt, so a persona's system prompt is
evaluated once per persona. Caches that cannot be trimmed (a sliding-window layer that
has already wrapped around, recurrent state) are rebuilt instead, which is slower but
never wrong. Prompts go through the tokenizer's chat template when it has one, else
through ``Prompt.as_text()``, as with llama.cpp.

mlx picks its device itself: Metal on Apple silicon, the CPU backend on Linux. ``device``
``cpu`` or ``gpu`` overrides that for the whole process (mlx's default device is global).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..answers import LETTERS, OptionScores
from ..errors import PermanentBackendError
from ..prompts import Prompt
from .base import Backend, BackendOptions

EMBEDDED_NAMES = (None, "", "embedded", "gemma-3-270m")
#: Tokens per forward pass while filling the cache; bounds memory on long prompts.
PREFILL_STEP = 512


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class MLXBackend(Backend):
    name = "mlx"
    description = "mlx-lm in-process; --model is a local Hugging Face model directory"
    SUPPORTS_LOGPROBS = True
    REUSES_PREFIX = True

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._embedded = options.model in EMBEDDED_NAMES
        path = self._model_dir()
        import mlx.core as mx
        import mlx_lm
        from mlx_lm.models import cache as cache_lib

        self._mx = mx
        self._mlx_lm = mlx_lm
        self._cache_lib = cache_lib
        self._select_device()
        try:
            self.model, self.tokenizer = mlx_lm.load(str(path))
        except (ValueError, OSError, KeyError) as exc:
            raise PermanentBackendError(f"mlx-lm could not load {path}: {exc}") from None
        self.path = path
        self._letter_ids = self._option_token_ids()
        self._chat = self._use_chat_template()
        # Prefix reuse needs a cache that can be cut back; recurrent state cannot.
        self._reuse = cache_lib.can_trim_prompt_cache(cache_lib.make_prompt_cache(self.model))
        self._cache = None
        self._cached: list[int] = []  # the tokens whose keys and values are in self._cache
        self.prompt_tokens = 0  # evaluated (not cached) tokens, for benchmarks

    # ---- set-up ----------------------------------------------------------------------------

    def _model_dir(self) -> Path:
        if self._embedded:
            from ..hfmodels import resolve_model

            return Path(resolve_model(None))
        path = Path(self.options.model).expanduser()
        if not path.is_dir():
            raise PermanentBackendError(
                f"the mlx backend needs --model DIR, a local Hugging Face model folder; "
                f"'{self.options.model}' is not one (models are never downloaded)")
        return path

    def _select_device(self) -> None:
        mx = self._mx
        wanted = (self.options.device or "auto").lower()
        if wanted == "auto":
            return
        if wanted == "cpu":
            mx.set_default_device(mx.cpu)
        elif wanted in ("gpu", "mps", "metal", "cuda"):
            if not mx.is_available(mx.gpu):
                raise PermanentBackendError("mlx has no GPU on this machine; use --device cpu or auto")
            mx.set_default_device(mx.gpu)
        else:
            raise PermanentBackendError(f"the mlx backend runs on auto, cpu or gpu, not '{wanted}'")

    def _option_token_ids(self) -> list[list[int]]:
        """Single-token spellings of each letter ("A", " A"), to be summed."""
        ids = []
        for letter in LETTERS:
            variants = set()
            for spelling in (letter, " " + letter):
                toks = self.tokenizer.encode(spelling, add_special_tokens=False)
                if len(toks) == 1:
                    variants.add(int(toks[0]))
            if not variants:
                raise PermanentBackendError(f"the model has no single token for option {letter}")
            ids.append(sorted(variants))
        return ids

    def _use_chat_template(self) -> bool:
        mode = str(self.options.extra.get("chat", "auto"))
        has = bool(getattr(self.tokenizer, "has_chat_template", False))
        if mode == "on" and not has:
            raise PermanentBackendError(f"{self.path.name} has no chat template")
        return has and mode != "off"

    @property
    def model_name(self) -> str:
        return "gemma-3-270m" if self._embedded else self.path.name

    # ---- prompts and the cache -------------------------------------------------------------

    def _tokens(self, prompt: Prompt) -> list[int]:
        if self._chat:
            # The template writes BOS itself; the wrapper tokenizes without adding another.
            ids = self.tokenizer.apply_chat_template(prompt.messages(), tokenize=True,
                                                     add_generation_prompt=True)
        else:
            ids = self.tokenizer.encode(prompt.as_text())
        tokens = [int(t) for t in ids]
        if not tokens:
            raise PermanentBackendError("the prompt rendered to no tokens")
        return tokens

    def _reset_cache(self) -> None:
        self._cache = self._cache_lib.make_prompt_cache(self.model)
        self._cached = []

    def _prepare_cache(self, tokens: list[int]) -> int:
        """Cut the cache back to the prefix it shares with ``tokens``; return its length.

        At least one token is always left to evaluate, so there are fresh logits.
        """
        if self._cache is None or not self._reuse:
            self._reset_cache()
            return 0
        keep = min(_common_prefix(self._cached, tokens), len(tokens) - 1)
        drop = self._cache_length() - keep
        if drop > 0:
            lib = self._cache_lib
            if not lib.can_trim_prompt_cache(self._cache) or lib.trim_prompt_cache(self._cache, drop) != drop:
                self._reset_cache()
                return 0
        self._cached = self._cached[:keep]
        return keep

    def _cache_length(self) -> int:
        """Tokens held by the cache (generation may hold more than ``self._cached``)."""
        offset = getattr(self._cache[0], "offset", None) if self._cache else None
        return int(offset) if offset is not None else len(self._cached)

    def _forward(self, tokens: list[int]):
        """Evaluate ``tokens`` on top of the cache; the logits of the last position."""
        mx = self._mx
        keep = self._prepare_cache(tokens)
        logits = None
        for start in range(keep, len(tokens), PREFILL_STEP):
            chunk = mx.array(tokens[start:start + PREFILL_STEP])[None]
            logits = self.model(chunk, cache=self._cache)
            mx.eval([c.state for c in self._cache])
            self._cached.extend(tokens[start:start + PREFILL_STEP])
        self.prompt_tokens += len(tokens) - keep
        return logits[0, -1]

    # ---- the contract ----------------------------------------------------------------------

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        mx = self._mx
        out = []
        for prompt in prompts:
            try:
                last = self._forward(self._tokens(prompt)).astype(mx.float32)
                logprobs = last - mx.logsumexp(last)
                rows = np.array(logprobs, dtype=np.float64)
            except (RuntimeError, ValueError) as exc:
                self._reset_cache()
                raise PermanentBackendError(f"mlx failed on a prompt: {exc}") from None
            values = {letter: float(np.logaddexp.reduce(rows[ids]))
                      for letter, ids in zip(LETTERS, self._letter_ids)}
            out.append(OptionScores.from_logprobs(values))
        return out

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        from mlx_lm.sample_utils import make_sampler

        greedy = make_sampler(temp=0.0)
        out = []
        for prompt in prompts:
            tokens = self._tokens(prompt)
            keep = self._prepare_cache(tokens)
            try:
                text = self._mlx_lm.generate(
                    self.model, self.tokenizer, tokens[keep:], prompt_cache=self._cache,
                    max_tokens=max_tokens or self.options.max_tokens, sampler=greedy)
            except (RuntimeError, ValueError) as exc:
                self._reset_cache()
                raise PermanentBackendError(f"mlx failed on a prompt: {exc}") from None
            self.prompt_tokens += len(tokens) - keep
            # The cache now holds the prompt and (some of) the reply; keep only the prompt.
            self._cached = tokens
            extra = self._cache_length() - len(tokens)
            if extra > 0 and (not self._cache_lib.can_trim_prompt_cache(self._cache)
                              or self._cache_lib.trim_prompt_cache(self._cache, extra) != extra):
                self._reset_cache()
            out.append(text)
        return out

    def list_models(self) -> list[str]:
        return [self.model_name]

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "path": str(self.path),
                "chat_template": self._chat, "device": str(self._mx.default_device()),
                "prefix_reuse": self._reuse}

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model = None
            self._cache = None
            self._cached = []
            self._mx.clear_cache()

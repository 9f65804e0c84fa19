"""mlx-lm in-process: a local Hugging Face model folder, or the embedded Gemma converted.

``--model`` is resolved by :mod:`fairpp_app.backends.hf_models` exactly as for the transformers
backend: a model folder is used as it is, a GGUF file (and the embedded Gemma 3 270M) is
converted once into the cache; nothing is downloaded. mlx-lm then loads the folder's
safetensors itself (llama, gemma3_text and the other architectures it knows).

Folders written by transformers 5 name a few settings in ways mlx-lm does not read yet:
rope bases sit in ``rope_parameters`` (nested per layer type for Gemma 3), Gemma 3's
sliding/full layer pattern is ``layer_types``, and mlx-lm's gemma3_text drops
``final_logit_softcapping``. They are translated when the model is loaded, and the
softcap is applied to the scored logits (it is monotonic, so greedy text is unchanged).
A layer pattern mlx-lm cannot express is refused rather than run wrongly.

Option scoring runs the model over the prompt and reads the last position's logits; the
log-probabilities of each letter's single-token spellings ("A", " A") are summed. One
prompt cache lives as long as the backend: before each prompt it is cut back to the
longest token prefix shared with what it holds, so a persona's system prompt is evaluated
once per persona. A cache that cannot be cut back (a sliding-window layer that has
wrapped around, recurrent state) is rebuilt instead: slower, never wrong. Only the last
prompt token goes through the output projection; mlx is lazy, so the prefill chunks never
compute their (discarded) vocabulary-wide logits. Text is generated greedily by mlx-lm's
``stream_generate`` on the same cache and decoded in one piece, as the other backends do.
Prompts go through the tokenizer's chat template when it has one, else through
``Prompt.as_text()``. Scoring is one prompt at a time (``SUPPORTS_BATCH`` is False):
with the persona prefix cached a prompt costs only its question's tokens, and a padded
batch would give that cache up.

mlx and mlx-lm are imported when a backend is made, not with this module, so the UI can
read the class's details on any machine; the registry turns a missing mlx-lm into a clear
error before that.

mlx picks its device itself: Metal on Apple silicon, the CPU backend on Linux (which is
correct but slow: the Linux wheel's matrix products run at a few GFLOP/s). ``--device
cpu`` or ``gpu`` overrides that for the whole process, as mlx's default device is global;
generation then gets a stream on that device (mlx-lm's own was made at import time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fairpp_app.backends import hf_models
from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.backends.hf_prompts import HFPromptMethods, HFPrompts
from fairpp_app.core.answers import LETTERS, OptionScores
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.prompts import Prompt

if TYPE_CHECKING:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.models import cache as cache_lib
    from mlx_lm.sample_utils import make_sampler


def _import_mlx() -> None:
    global mx, mlx_lm, cache_lib, make_sampler
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.models import cache as cache_lib
    from mlx_lm.sample_utils import make_sampler


#: Tokens per forward pass while filling the cache; bounds memory on long prompts.
PREFILL_STEP = 512


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def config_overrides(config: dict) -> dict:
    """Settings of a transformers 5 ``config.json`` renamed to what mlx-lm's model args read."""
    out: dict = {}
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" not in config:
        per_layer = {k: v for k, v in rope.items() if isinstance(v, dict)}
        full = per_layer.get("full_attention", rope)
        if "rope_theta" in full:
            out["rope_theta"] = full["rope_theta"]
        if full.get("rope_type", "default") != "default":
            out["rope_scaling"] = full
        local = per_layer.get("sliding_attention")
        if local and "rope_theta" in local:
            out["rope_local_base_freq"] = local["rope_theta"]
    layer_types = config.get("layer_types")
    if config.get("model_type") in ("gemma3_text", "gemma3") and layer_types:
        # mlx-lm marks layer i as full attention when (i + 1) % pattern == 0.
        fulls = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
        pattern = fulls[0] + 1 if fulls else len(layer_types) + 1
        expected = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                    for i in range(len(layer_types))]
        if list(layer_types) != expected:
            raise PermanentBackendError(
                "mlx-lm runs Gemma 3 with full attention every n-th layer; this model's "
                f"layer_types are irregular ({layer_types}); use the transformers backend")
        out["sliding_window_pattern"] = pattern
    return out


class MLXBackend(HFPromptMethods, Backend):
    name = "mlx"
    SUMMARY = ("mlx-lm (Apple silicon; CPU on Linux) on a model folder or GGUF; default: the embedded "
               "Gemma converted")
    PACKAGES = ("mlx_lm",)
    READY_TEXT = "installed; give a model path"
    ADVICE = "mlx runs on Apple silicon (or mlx[cpu] on Linux); give a local model folder."
    SUPPORTS_LOGPROBS = True

    def __new__(cls, *args, **kwargs):
        _import_mlx()
        return super().__new__(cls)

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        # The device first: asking for a missing GPU should fail before a minute of conversion.
        self._select_device()
        self.path: Path = hf_models.resolve_model(options.model)
        self._name = hf_models.model_display_name(options.model)
        self._softcap = self._load()
        self.prompts = HFPrompts(self.tokenizer, chat=options.extra.get("chat", "auto"),
                                 n_ctx=options.n_ctx, model_name=self.path.name)
        self._letter_ids = self.prompts.option_ids()
        # Prefix reuse needs a cache that can be cut back; recurrent state cannot.
        self._reuse = cache_lib.can_trim_prompt_cache(cache_lib.make_prompt_cache(self.model))
        self._cache = None
        self._cached: list[int] = []  # the tokens whose keys and values are in self._cache
        self.prompt_tokens = 0  # evaluated (not cached) tokens, for benchmarks

    # ---- set-up ----------------------------------------------------------------------------

    def _select_device(self) -> None:
        wanted = (self.options.device or "auto").lower()
        self._stream = None
        if wanted == "auto":
            return
        if wanted == "cpu":
            mx.set_default_device(mx.cpu)
        elif wanted in ("gpu", "mps", "metal", "cuda"):
            if not mx.is_available(mx.gpu):
                raise PermanentBackendError("mlx sees no GPU on this machine; use --device cpu or auto")
            mx.set_default_device(mx.gpu)
        else:
            raise PermanentBackendError(f"the mlx backend runs on auto, cpu or gpu, not '{wanted}'")
        self._stream = mx.new_thread_local_stream(mx.default_device())

    def _load(self) -> float | None:
        """Load model and tokenizer; the final-logit softcap mlx-lm leaves to us, if any."""
        try:
            config = json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise PermanentBackendError(f"cannot read {self.path / 'config.json'}: {exc}") from None
        overrides = config_overrides(config)
        try:
            self.model, self.tokenizer = mlx_lm.load(str(self.path), model_config=overrides)
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise PermanentBackendError(f"mlx-lm could not load {self.path}: {exc}") from None
        cap = config.get("final_logit_softcapping")
        handled = hasattr(getattr(self.model, "args", None), "final_logit_softcapping")
        return float(cap) if cap and not handled else None

    @property
    def model_name(self) -> str:
        return getattr(self, "_name", None) or hf_models.model_display_name(self.options.model)

    # ---- prompts ---------------------------------------------------------------------------

    @property
    def logit_softcap(self) -> float | None:
        """The final-logit softcap mlx-lm leaves out and scoring applies, if any."""
        return self._softcap

    # ---- the prompt cache ------------------------------------------------------------------

    def forget_cache(self) -> None:
        self._cache = None
        self._cached = []

    def _reset_cache(self) -> None:
        self._cache = cache_lib.make_prompt_cache(self.model)
        self._cached = []

    def _cache_length(self) -> int:
        """Tokens held by the cache (after generation it holds more than ``_cached``)."""
        offset = getattr(self._cache[0], "offset", None) if self._cache else None
        return int(offset) if offset is not None else len(self._cached)

    def _trim_to(self, keep: int) -> bool:
        """Cut the cache back to its first ``keep`` tokens; False when it cannot be."""
        drop = self._cache_length() - keep
        if drop > 0:
            if (not cache_lib.can_trim_prompt_cache(self._cache)
                    or cache_lib.trim_prompt_cache(self._cache, drop) != drop):
                return False
        self._cached = self._cached[:keep]
        return True

    def _prepare_cache(self, tokens: list[int]) -> int:
        """Keep the cached prefix shared with ``tokens``; return how many tokens that is.

        At least one token is always left to evaluate, so there are fresh logits.
        """
        if self._cache is not None and self._reuse:
            keep = min(_common_prefix(self._cached, tokens), len(tokens) - 1)
            if self._trim_to(keep):
                return keep
        self._reset_cache()
        return 0

    def last_logits(self, tokens: list[int]):
        """Evaluate ``tokens`` on top of the cache; the logits of the last position."""
        keep = self._prepare_cache(tokens)
        last = len(tokens) - 1
        for start in range(keep, last, PREFILL_STEP):
            chunk = tokens[start:min(start + PREFILL_STEP, last)]
            self.model(mx.array(chunk)[None], cache=self._cache)
            mx.eval([c.state for c in self._cache])
            self._cached.extend(chunk)
        logits = self.model(mx.array(tokens[last:])[None], cache=self._cache)[0, -1]
        self._cached.append(tokens[last])
        self.prompt_tokens += len(tokens) - keep
        logits = logits.astype(mx.float32)
        if self._softcap:
            logits = mx.tanh(logits / self._softcap) * self._softcap
        return logits

    # ---- the contract ----------------------------------------------------------------------

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        out = []
        for prompt in prompts:
            tokens = self.prompt_ids(prompt)
            try:
                logits = self.last_logits(tokens)
                logprobs = np.array(logits - mx.logsumexp(logits), dtype=np.float64)
            except (RuntimeError, ValueError) as exc:
                self._reset_cache()
                raise PermanentBackendError(f"mlx failed on a prompt: {exc}") from None
            values = {letter: float(np.logaddexp.reduce(logprobs[ids]))
                      for letter, ids in zip(LETTERS, self._letter_ids)}
            out.append(OptionScores.from_logprobs(values))
        return out

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        greedy = make_sampler(temp=0.0)
        stream = {"stream": self._stream} if self._stream is not None else {}
        out = []
        for prompt in prompts:
            tokens = self.prompt_ids(prompt)
            keep = self._prepare_cache(tokens)
            try:
                steps = mlx_lm.stream_generate(
                    self.model, self.tokenizer, tokens[keep:], prompt_cache=self._cache,
                    max_tokens=max_tokens or self.options.max_tokens, sampler=greedy, **stream)
                # The last step repeats the EOS that stopped it; ``length`` ends on a real token.
                reply = [s.token for s in steps if s.finish_reason != "stop"]
            except (RuntimeError, ValueError) as exc:
                self._reset_cache()
                raise PermanentBackendError(f"mlx failed on a prompt: {exc}") from None
            self.prompt_tokens += len(tokens) - keep
            # The cache holds the prompt and part of the reply; keep the prompt for the next one.
            self._cached = list(tokens)
            if not self._trim_to(len(tokens)):
                self._reset_cache()
            # Decoded in one piece, as the other backends do: mlx-lm's streaming
            # detokenizer drops the leading space of a reply.
            out.append(self.tokenizer.decode(reply, skip_special_tokens=True))
        return out

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name,
                "device": str(mx.default_device().type).split(".")[-1],
                "chat_template": self.uses_chat_template, "prefix_reuse": self._reuse}

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model = None
            self._cache = None
            self._cached = []
            mx.clear_cache()

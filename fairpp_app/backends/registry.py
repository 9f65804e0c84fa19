"""Backends by name. A backend's module (and so its SDK) is imported only when it is used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.core.errors import PermanentBackendError, UsageError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class", relative to fairpp_app.backends
    summary: str
    needs: str  # the Python package that must be importable


BACKENDS: dict[str, BackendInfo] = {b.name: b for b in [
    BackendInfo("embedded", "llamacpp:EmbeddedBackend",
                "Gemma 3 270M base model shipped with fairpp, run by llama.cpp (default)", "llama_cpp"),
    BackendInfo("llamacpp", "llamacpp:LlamaCppBackend", "llama.cpp on any GGUF file (--model PATH)", "llama_cpp"),
    BackendInfo("ollama", "ollama_backend:OllamaBackend",
                "an Ollama server ($OLLAMA_HOST or --base-url; --model TAG)", "ollama"),
    BackendInfo("openai", "openai_backend:OpenAIBackend",
                "any OpenAI-compatible server: OpenAI, vLLM, SGLang, llama.cpp server", "openai"),
    BackendInfo("transformers", "transformers_backend:TransformersBackend",
                "Hugging Face transformers on CPU, CUDA or MPS (--model DIR or GGUF)", "transformers"),
    BackendInfo("mlx", "mlx_backend:MLXBackend",
                "mlx-lm (Apple silicon; CPU on Linux) on a model folder or GGUF; default: the embedded "
                "Gemma converted", "mlx_lm"),
]}


def names() -> list[str]:
    return list(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    info = BACKENDS.get(name)
    if info is None:
        raise UsageError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    module_name, cls_name = info.target.split(":")
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ImportError as exc:
        raise PermanentBackendError(
            f"the {name} backend needs the Python package '{info.needs}', which is not "
            f"installed here ({exc.name or exc})") from None
    return getattr(module, cls_name)


def create(name: str, options: BackendOptions | None = None) -> Backend:
    return backend_class(name)(options or BackendOptions())


def available(name: str) -> bool:
    """Whether the backend's package can be imported (cheap; does not import it)."""
    import importlib.util

    info = BACKENDS[name]
    return importlib.util.find_spec(info.needs) is not None

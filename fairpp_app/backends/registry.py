"""Backends by name.

The registry holds only where each backend class lives. Backend modules import their
engine's SDK when a backend is made, not when the module is imported, so the UI reads a
class's declared details (``SUMMARY``, ``PACKAGES``, ``ADVICE``, ``readiness()``...) on
any machine, and a missing SDK becomes a clear error when the backend is created.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.core.errors import PermanentBackendError, UsageError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class", relative to fairpp_app.backends

    @property
    def cls(self) -> type[Backend]:
        module_name, cls_name = self.target.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module_name}"), cls_name)

    @property
    def summary(self) -> str:
        return self.cls.SUMMARY

    @property
    def needs(self) -> str:
        """The package to name: the first one missing, else the first one needed."""
        cls = self.cls
        return (cls.missing_packages() or list(cls.PACKAGES) or [""])[0]


BACKENDS: dict[str, BackendInfo] = {b.name: b for b in [
    BackendInfo("embedded", "llamacpp:EmbeddedBackend"),
    BackendInfo("llamacpp", "llamacpp:LlamaCppBackend"),
    BackendInfo("ollama", "ollama_backend:OllamaBackend"),
    BackendInfo("openai", "openai_backend:OpenAIBackend"),
    BackendInfo("transformers", "transformers_backend:TransformersBackend"),
    BackendInfo("mlx", "mlx_backend:MLXBackend"),
]}


def backend_class(name: str) -> type[Backend]:
    """The class of a backend (its SDK is not imported)."""
    info = BACKENDS.get(name)
    if info is None:
        raise UsageError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    return info.cls


def create(name: str, options: BackendOptions | None = None) -> Backend:
    cls = backend_class(name)
    missing = cls.missing_packages()
    if missing:
        raise PermanentBackendError(
            f"the {name} backend needs the Python package '{missing[0]}', which is not "
            f"installed here ({missing[0]})")
    return cls(options or BackendOptions())


def available(name: str) -> bool:
    """Whether the backend's packages can be imported (cheap; does not import them)."""
    return backend_class(name).installed()

"""Model specs: one short string names a backend, its model and where it is served.

``fairpp position`` takes several models in one command line, so each must fit in one
argument. The grammar is ``[LABEL=]BACKEND[:MODEL][@URL]``:

- ``embedded`` - the Gemma 3 270M model shipped with fairpp;
- ``gguf:/path/model.gguf`` (or ``llamacpp:/path``) - any GGUF file, run by llama.cpp;
- ``ollama:TAG[@http://host:11434]`` - a model an Ollama server holds;
- ``openai:MODEL@http://host:port/v1`` - an OpenAI-compatible server (a URL is needed:
  api.openai.com has no log-probabilities of options for current models);
- ``transformers:/path/folder`` and ``mlx:/path/or/repo`` - local weights.

``LABEL=`` names the row (default: the model's file or folder name, the tag, or the backend).
The URL is split off at ``@http://`` / ``@https://`` only, so model names and paths may
hold ``@`` or ``:`` themselves (``ollama:llama3.2:1b``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import PurePath

from fairpp_app.core.errors import UsageError

#: Spec prefixes that differ from the backend names of the registry.
ALIASES = {"gguf": "llamacpp"}
_LABEL = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$")
_URL = re.compile(r"@(https?://\S+)$")


@dataclass(frozen=True)
class ModelSpec:
    label: str
    backend: str
    model: str | None = None
    base_url: str | None = None
    text: str = ""  # the spec as written, for the report and the stored set

    def as_json(self) -> dict:
        return asdict(self)


def parse_spec(text: str) -> ModelSpec:
    """One spec string as a ModelSpec; a UsageError says what is wrong with it."""
    from fairpp_app.backends.registry import BACKENDS

    spec = text.strip()
    label = None
    m = _LABEL.match(spec)
    if m:
        label, spec = m.group(1), m.group(2)
    url = None
    m = _URL.search(spec)
    if m:
        url, spec = m.group(1), spec[:m.start()]
    backend, _, model = spec.partition(":")
    backend = ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        known = ", ".join(["gguf", *BACKENDS])
        raise UsageError(f"model spec '{text}': unknown backend '{backend}'; write BACKEND[:MODEL]"
                         f"[@URL] with BACKEND one of {known}")
    model = model or None
    if backend in ("llamacpp", "transformers", "mlx") and not model:
        raise UsageError(f"model spec '{text}': the {backend} backend needs a model, as "
                         f"{'gguf' if backend == 'llamacpp' else backend}:PATH")
    if backend == "openai" and not url:
        raise UsageError(f"model spec '{text}': write the server as openai:MODEL@http://HOST:PORT/v1")
    if backend == "embedded" and url:
        raise UsageError(f"model spec '{text}': the embedded model runs in-process; it has no URL")
    return ModelSpec(label or default_label(backend, model), backend, model, url, text.strip())


def default_label(backend: str, model: str | None) -> str:
    if not model:
        return backend
    if backend in ("llamacpp", "transformers") or "/" in model:
        path = PurePath(model.rstrip("/"))
        return path.stem if path.suffix == ".gguf" else path.name
    return model


def parse_specs(texts: list[str]) -> list[ModelSpec]:
    """Several specs; their labels must differ, since each names a row and a respondent."""
    if not texts:
        raise UsageError("name at least one model (for example: embedded)")
    specs = [parse_spec(t) for t in texts]
    seen: dict[str, str] = {}
    for s in specs:
        if s.label in seen:
            raise UsageError(f"models '{seen[s.label]}' and '{s.text}' would both be labelled "
                             f"'{s.label}'; name one with LABEL=SPEC")
        seen[s.label] = s.text
    return specs

"""The contract every backend fulfils.

A backend scores the option letters for a batch of prompts, generates text, lists its
models and closes. Optional abilities are class flags so the engine and the UI can ask
before they try (``SUPPORTS_LOGPROBS``, ``SUPPORTS_BATCH``...).

What the UI shows about a backend it has not started is declared on the class too, so a
new backend is one module and one registry line: ``SUMMARY`` (one line), ``PACKAGES``
(what must be importable), ``ADVICE`` (what to do when it fails), ``readiness()`` (can it
run here: a package, a key, a server; never a model load) with ``READINESS_IS_SLOW`` when
that takes a network round trip, and ``form_values()`` (how a stored run's parameters
fill the form again). Backend modules import their engine's SDK only when a backend is
made, so reading these costs no SDK import. Backends raise
``TransientBackendError`` for faults worth retrying and ``PermanentBackendError`` for the
rest; the simulation engine owns retrying.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from fairpp_app.core.answers import LETTERS, OptionScores
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.prompts import Prompt


@dataclass
class BackendOptions:
    """What a user can set for any backend (CLI flags, config file, TUI form)."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    device: str = "auto"
    n_ctx: int = 2048
    timeout: float = 60.0
    max_tokens: int = 8
    temperature: float = 0.0
    batch_size: int = 8
    extra: dict = field(default_factory=dict)


class Backend:
    name: ClassVar[str] = "base"
    SUPPORTS_LOGPROBS: ClassVar[bool] = False
    SUPPORTS_TEXT: ClassVar[bool] = True
    SUPPORTS_BATCH: ClassVar[bool] = False
    #: HTTP backends run several requests at once; in-process engines do not.
    SUPPORTS_CONCURRENCY: ClassVar[bool] = False
    #: One line for ``fairpp backends`` and the Home screen.
    SUMMARY: ClassVar[str] = ""
    #: Importable packages the backend needs; the first is the one named when missing.
    PACKAGES: ClassVar[tuple[str, ...]] = ()
    #: What the user can do when the backend fails (shown under the error).
    ADVICE: ClassVar[str] = ""
    #: What ``readiness()`` says of an installed backend that needs nothing else checked.
    READY_TEXT: ClassVar[str] = "installed"
    #: ``readiness()`` reaches the network: the UI runs it in a worker.
    READINESS_IS_SLOW: ClassVar[bool] = False

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    # ---- what the UI knows before a backend is made --------------------------------------

    @classmethod
    def missing_packages(cls) -> list[str]:
        """The needed packages that cannot be imported here (looked up, not imported)."""
        import importlib.util

        return [p for p in cls.PACKAGES if importlib.util.find_spec(p) is None]

    @classmethod
    def installed(cls) -> bool:
        return not cls.missing_packages()

    @classmethod
    def readiness(cls) -> tuple[bool, str]:
        """Whether the backend can run here and why, without loading a model."""
        missing = cls.missing_packages()
        if missing:
            return False, f"needs the Python package {missing[0]}"
        return True, cls.READY_TEXT

    @classmethod
    def checking_text(cls) -> str:
        """What the UI shows while a slow ``readiness`` runs."""
        return "checking…"

    @classmethod
    def form_values(cls, params: dict) -> dict:
        """Form fields a stored run's parameters set beyond the common ones."""
        return {}

    @property
    def model_name(self) -> str:
        return self.options.model or "default"

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        """Probabilities of A/B/C as the next token after each prompt."""
        raise NotImplementedError(f"the {self.name} backend cannot score options")

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        """Greedy completions, one per prompt."""
        raise NotImplementedError(f"the {self.name} backend cannot generate text")

    def list_models(self) -> list[str]:
        return [self.model_name]

    def forget_cache(self) -> None:
        """The model's weights changed (a training step): drop every cached key and value
        computed with the old ones. Backends that keep none have nothing to do."""

    def close(self) -> None:
        """Release the engine; safe to call twice."""

    def describe(self) -> dict:
        """Run parameters worth storing (never secrets)."""
        return {"backend": self.name, "model": self.model_name}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def option_token_ids(encode: Callable[[str], list[int]]) -> list[list[int]]:
    """Single-token spellings of each option letter ("A" and " A"), whose probabilities are
    summed: after "Answer:" a tokenizer usually predicts " A", after a chat turn "A"."""
    ids = []
    for letter in LETTERS:
        variants = {int(t[0]) for t in (encode(letter), encode(" " + letter)) if len(t) == 1}
        if not variants:
            raise PermanentBackendError(f"the model has no single token for option {letter}")
        ids.append(sorted(variants))
    return ids


def completion_token_ids(encode: Callable[[str], list[int]], chat: bool) -> dict[str, int]:
    """The one token per letter that training puts after the prompt: "A" after a chat turn,
    " A" after the plain-text "Answer:" (falling back to the other spelling)."""
    out = {}
    for letter in LETTERS:
        spellings = (letter, " " + letter) if chat else (" " + letter, letter)
        ids = next((t for t in map(encode, spellings) if len(t) == 1), None)
        if ids is None:
            raise PermanentBackendError(f"the model has no single token for option {letter}")
        out[letter] = int(ids[0])
    return out

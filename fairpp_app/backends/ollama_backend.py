"""An Ollama server, through the official ``ollama`` client.

The host is ``--base-url``, else ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``.
``extra["api"]`` picks the endpoint: ``generate`` (the default) sends
:meth:`Prompt.as_text` with ``raw: true``, so Ollama applies no template and a base model
sees exactly what the embedded backend shows it; ``chat`` sends :meth:`Prompt.messages`
and lets the model's own chat template place the answer.

Option scoring asks for one token at temperature 0 with ``logprobs: true`` and
``top_logprobs: 20`` (Ollama's maximum; servers older than 0.12.11 ignore the fields
and get a clear error) and reads the first position's ``top_logprobs``, summing the
spellings of each letter by the rule the OpenAI backend shares
(:mod:`fairpp_app.backends.topk`). The log-probabilities
are over the whole vocabulary, so the mass the three letters leave is kept as
``other_mass``. A letter outside the top 20 counts as probability 0; when none of them is
there the prompt cannot be scored and :class:`UnscorableOutput` says so.

A client too old to send ``logprobs`` (ollama-python releases before late 2025 have no
such parameter; pyproject allows >= 0.4) is bypassed for scoring: the same JSON is POSTed
to the same endpoint through the client's own httpx connection pool (its private
``_client``), so host, headers and timeout stay the same.

Requests are independent, so the engine may run several at once (``SUPPORTS_CONCURRENCY``);
one client is shared, httpx's pool being thread-safe. Connection failures, timeouts,
HTTP 429 and 5xx are transient; an unknown model is permanent and names the installed
ones.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.backends.topk import letter_logprobs
from fairpp_app.core.answers import LETTERS, OptionScores
from fairpp_app.core.errors import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
    UnscorableOutput,
)
from fairpp_app.core.prompts import Prompt

DEFAULT_HOST = "http://127.0.0.1:11434"
TOP_LOGPROBS = 20  # Ollama refuses more
APIS = ("generate", "chat")
READINESS_TIMEOUT_S = 0.8  # the Home screen's probe: a local server answers at once


def scores_from_top(top: Sequence[Any]) -> OptionScores:
    """OptionScores from one position's ``top_logprobs``; UnscorableOutput if no letter."""
    logprobs = letter_logprobs((e.get("token"), e.get("logprob")) for e in top)
    if all(v is None for v in logprobs.values()):
        seen = ", ".join(repr(e.get("token")) for e in list(top)[:5]) or "nothing"
        raise UnscorableOutput(
            f"none of the options {'/'.join(LETTERS)} is among the {len(top)} most likely next "
            f"tokens (the model leans to {seen})")
    return OptionScores.from_logprobs(logprobs)


def resolve_host(options: BackendOptions) -> str:
    return options.base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def _with_scheme(host: str) -> str:
    return host if "://" in host else f"http://{host}"


class OllamaBackend(Backend):
    name = "ollama"
    SUMMARY = "an Ollama server ($OLLAMA_HOST or --base-url; --model TAG)"
    PACKAGES = ("ollama",)
    ADVICE = ("Is Ollama running here? Start it with `ollama serve`, check $OLLAMA_HOST or the "
              "base url field, and fetch the model with `ollama pull TAG`.")
    READINESS_IS_SLOW = True
    SUPPORTS_LOGPROBS = True
    SUPPORTS_CONCURRENCY = True

    # ---- what the UI knows before a backend is made --------------------------------------

    @classmethod
    def readiness(cls, timeout: float = READINESS_TIMEOUT_S) -> tuple[bool, str]:
        """Whether the server at $OLLAMA_HOST (or the default) answers, and its version."""
        ok, why = super().readiness()
        if not ok:
            return ok, why
        import httpx

        host = _with_scheme(resolve_host(BackendOptions()))
        try:
            response = httpx.get(f"{host.rstrip('/')}/api/version", timeout=timeout)
            response.raise_for_status()
            version = str(response.json().get("version", "?"))
        except (httpx.HTTPError, ValueError):
            return False, f"no server at {host}"
        return True, f"server {version} at {host}"

    @classmethod
    def checking_text(cls) -> str:
        return f"checking {_with_scheme(resolve_host(BackendOptions()))}…"

    @classmethod
    def form_values(cls, params: dict) -> dict:
        return {"base_url": params["host"]} if params.get("host") else {}

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        import httpx
        import ollama

        self._ollama = ollama
        self._httpx = httpx
        self.api = str(options.extra.get("api", "generate"))
        if self.api not in APIS:
            raise PermanentBackendError(f"the ollama api must be generate or chat, not '{self.api}'")
        self.host = resolve_host(options)
        self.client = ollama.Client(host=self.host, timeout=options.timeout)
        endpoint = self.client.generate if self.api == "generate" else self.client.chat
        self._client_sends_logprobs = "logprobs" in inspect.signature(endpoint).parameters

    # ---- requests ------------------------------------------------------------------------

    def _model(self) -> str:
        if not self.options.model:
            raise PermanentBackendError(
                f"the ollama backend needs --model TAG, e.g. gemma3:270m "
                f"(installed: {self._installed_text()})")
        return self.options.model

    def _request(self, prompt: Prompt, num_predict: int, logprobs: bool) -> Any:
        """One non-streaming request; the response as the client's model or a dict."""
        model = self._model()
        opts = {"temperature": 0.0, "num_predict": num_predict, "seed": 0}
        if self.api == "generate":
            body: dict[str, Any] = {"model": model, "prompt": prompt.as_text(), "raw": True}
        else:
            body = {"model": model, "messages": prompt.messages()}
        if logprobs:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        try:
            if logprobs and not self._client_sends_logprobs:
                return self._post(f"/api/{self.api}", {**body, "options": opts, "stream": False})
            call = self.client.generate if self.api == "generate" else self.client.chat
            return call(**body, options=opts, stream=False)
        except Exception as exc:
            raise self._map_error(exc, model) from exc

    def _post(self, path: str, body: dict) -> dict:
        response = self.client._client.post(path, json=body)
        try:
            response.raise_for_status()
        except self._httpx.HTTPStatusError as exc:
            raise self._ollama.ResponseError(exc.response.text, exc.response.status_code) from None
        return response.json()

    def _map_error(self, exc: Exception, model: str) -> BackendError:
        ollama, httpx = self._ollama, self._httpx
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            status, detail = exc.status_code, exc.error
            if status == 404 and "model" in str(detail).lower():
                return PermanentBackendError(
                    f"ollama at {self.host} has no model '{model}' (installed: "
                    f"{self._installed_text()}); pull it with `ollama pull {model}`")
            if status == 429 or status >= 500:
                return TransientBackendError(f"ollama at {self.host} answered {status}: {detail}")
            return PermanentBackendError(f"ollama at {self.host} refused the request ({status}): {detail}")
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            # ConnectError, timeouts and a server dying mid-answer are all TransportErrors.
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
            return TransientBackendError(f"ollama at {self.host} {kind} ({exc.__class__.__name__})")
        return PermanentBackendError(f"ollama at {self.host} sent an answer fairpp cannot read: {exc}")

    # ---- the contract --------------------------------------------------------------------

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        out = []
        for prompt in prompts:
            response = self._request(prompt, 1, logprobs=True)
            positions = response.get("logprobs")  # the client's model and a dict both have get
            if not positions:
                raise PermanentBackendError(
                    f"ollama at {self.host} returned no logprobs; it needs Ollama 0.12.11 or "
                    "newer for --mode logprob (or use --mode text)")
            out.append(scores_from_top(positions[0].get("top_logprobs") or []))
        return out

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        out = []
        for prompt in prompts:
            response = self._request(prompt, max_tokens or self.options.max_tokens, logprobs=False)
            if self.api == "generate":
                out.append(response.get("response") or "")
            else:
                out.append((response.get("message") or {}).get("content") or "")
        return out

    def list_models(self) -> list[str]:
        try:
            listing = self.client.list()
        except Exception as exc:
            raise self._map_error(exc, self.options.model or "") from exc
        return [m.get("model") or m.get("name") or "" for m in listing.get("models") or []]

    def _installed_text(self) -> str:
        try:
            names = self.list_models()
        except BackendError:
            return "unknown"
        return ", ".join(names) or "none"

    @property
    def model_name(self) -> str:
        return self.options.model or "default"

    def describe(self) -> dict:
        from urllib.parse import urlsplit

        # Only scheme, host and port: a URL may carry a user and password.
        parts = urlsplit(self.host if "://" in self.host else "http://" + self.host)
        name = parts.hostname or ""
        name = f"[{name}]" if ":" in name else name
        host = f"{parts.scheme}://{name}" + (f":{parts.port}" if parts.port else "")
        return {"backend": self.name, "model": self.model_name, "host": host, "api": self.api}

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None

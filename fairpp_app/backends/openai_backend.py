"""Any OpenAI-compatible server: OpenAI itself, vLLM, SGLang, the llama.cpp server.

Option scoring asks for one token with its top-k log-probabilities and sums the
spellings of each letter ("A", " A", by the rule of :mod:`fairpp_app.backends.topk`). Two APIs can do that, picked by
``extra["api"]``:

* ``completions`` sends the persona prompt as plain text (``Prompt.as_text``), the way
  base models are prompted in-process, and reads ``top_logprobs[0]``;
* ``chat`` sends ``Prompt.messages`` and reads the first token's ``top_logprobs``;
* ``auto`` (default) is chat on api.openai.com, whose current models have no completions
  endpoint, and completions elsewhere: local servers usually host base models, and an
  instruct model behind vLLM or SGLang should be named with ``api=chat``.

The server only returns the top k tokens (20, or 5 on servers that allow no more), so a
letter outside them has no log-probability. Probabilities are normalised over the
letters that are present and ``other_mass`` records what the letters leave over. When no
letter is in the top k the output cannot be scored: :class:`UnscorableOutput` says so
rather than inventing a distribution.

The API key is read from the environment variable named by ``api_key_env`` and handed to
the client only; messages and ``describe()`` name the variable, never its value, and any
text a server sends back is scrubbed of the key before it is shown. The client does not
retry (``max_retries=0``): the simulation engine owns retrying, and sees
``TransientBackendError`` for 429, 5xx, timeouts and refused connections.

The llama.cpp server answers with its one model whatever model name a request carries,
so a run could be labelled with a model that never answered. Before the first request
the backend therefore checks the model name against ``/models`` (skipped when the server
has no such endpoint, or with ``extra["check_model"] = False``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

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

if TYPE_CHECKING:
    import openai


def _import_openai() -> None:
    """The SDK is imported when a backend is made, so the UI reads the class without it."""
    global openai
    import openai


OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "not-needed"  # local servers accept anything; the client insists on a string
TOP_K = 20
TOP_K_FALLBACK = 5  # OpenAI's legacy completions and some vLLM set-ups allow no more
APIS = ("auto", "completions", "chat")


def public_url(url: str) -> str:
    """The URL without user:password@ (safe to show and store)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class OpenAIBackend(Backend):
    name = "openai"
    SUMMARY = "any OpenAI-compatible server: OpenAI, vLLM, SGLang, llama.cpp server"
    PACKAGES = ("openai",)
    ADVICE = ("Check the base url and model fields, and that the variable named in api key env "
              "is set in the shell that started fairpp.")
    SUPPORTS_LOGPROBS = True
    SUPPORTS_CONCURRENCY = True

    @classmethod
    def readiness(cls) -> tuple[bool, str]:
        """Installed, and whether the default key variable is set (its value is never read)."""
        ok, why = super().readiness()
        if not ok:
            return ok, why
        return True, f"{DEFAULT_KEY_ENV} {'set' if os.environ.get(DEFAULT_KEY_ENV) else 'unset'}"

    def __new__(cls, *args, **kwargs):
        _import_openai()
        return super().__new__(cls)

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self.base_url = (options.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.key_env = options.api_key_env or DEFAULT_KEY_ENV
        self.api = str(options.extra.get("api", "auto"))
        if self.api not in APIS:
            raise PermanentBackendError(f"api must be one of {', '.join(APIS)}, not '{self.api}'")
        if self.api == "auto":
            self.api = "chat" if self._is_openai() else "completions"
        self.top_k = int(options.extra.get("top_logprobs", TOP_K))
        self._check_model = bool(options.extra.get("check_model", True))
        self._key = self._read_key()
        self._lock = threading.Lock()
        self._model: str | None = options.model
        self._model_checked = False
        self.client = openai.OpenAI(api_key=self._key, base_url=self.base_url,
                                    max_retries=0, timeout=options.timeout)

    # ---- set-up ----------------------------------------------------------------------------

    def _is_openai(self) -> bool:
        return (urlsplit(self.base_url).hostname or "").lower() == "api.openai.com"

    def _read_key(self) -> str:
        from fairpp_app.core.user_config import secret

        key = secret(self.key_env)
        if key:
            return key
        if self.options.api_key_env or self._is_openai():
            raise PermanentBackendError(
                f"the API key variable ${self.key_env} is not set; export it, or name another "
                "variable with --api-key-env")
        return NO_KEY

    @property
    def model_name(self) -> str:
        if self._model is None:
            models = self.list_models()
            if len(models) != 1:
                shown = ", ".join(models[:10]) or "none"
                raise PermanentBackendError(
                    f"the server at {public_url(self.base_url)} offers {len(models)} models "
                    f"({shown}); choose one with --model")
            self._model = models[0]
            self._model_checked = True
        return self._model

    def _ensure_model(self) -> str:
        """The model name, checked once against the server's list (see the module docstring)."""
        model = self.model_name
        if self._model_checked or not self._check_model:
            return model
        with self._lock:
            if self._model_checked:
                return model
            try:
                models = self.list_models()
            except PermanentBackendError as exc:
                if getattr(exc, "status", None) != 404:
                    raise
                models = []  # no /models endpoint: nothing to check against
            if models and not any(m == model or m == f"{model}:latest" for m in models):
                raise PermanentBackendError(self._unknown_model_message(models))
            self._model_checked = True
        return model

    def _unknown_model_message(self, models: list[str] | None) -> str:
        if models is None:
            try:
                models = self.list_models()
            except BackendError:
                models = []
        shown = ", ".join(models[:10]) + (", ..." if len(models) > 10 else "") if models else "unknown"
        return f"the server does not know model '{self._model}' (models: {shown})"

    # ---- errors ----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._key != NO_KEY and len(self._key) >= 4:
            text = text.replace(self._key, "***")
        return text.replace(self.base_url, public_url(self.base_url))

    def _detail(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        text = " ".join(str(message or exc.message or "").split())
        return self._redact(text[:200])

    def _map_error(self, exc: openai.OpenAIError, what: str) -> BackendError:
        url = public_url(self.base_url)
        if isinstance(exc, openai.APITimeoutError):
            return TransientBackendError(f"no answer from {url} within {self.options.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            reason = type(cause).__name__ if cause else "connection error"
            return TransientBackendError(f"cannot reach {url} ({reason})")
        if not isinstance(exc, openai.APIStatusError):
            return TransientBackendError(f"{what} failed: {self._redact(str(exc))[:200]}")
        code = exc.status_code
        if isinstance(exc, openai.AuthenticationError):
            err = PermanentBackendError(f"the API key in ${self.key_env} was rejected by {url} (HTTP 401)")
        elif isinstance(exc, openai.PermissionDeniedError):
            err = PermanentBackendError(
                f"the API key in ${self.key_env} may not use {what} at {url} (HTTP 403)")
        elif isinstance(exc, openai.RateLimitError):
            err = TransientBackendError(f"rate limited by {url} (HTTP 429)")
        elif code >= 500 or code in (408, 409, 425):
            err = TransientBackendError(f"server error at {url} (HTTP {code}): {self._detail(exc)}")
        elif isinstance(exc, openai.NotFoundError):
            detail = self._detail(exc)
            if what != "the model list" and ("model" in detail.lower() or not detail):
                err = PermanentBackendError(self._unknown_model_message(None))
            else:
                err = PermanentBackendError(
                    f"{url} has no endpoint for {what} (HTTP 404; does --base-url end in /v1?)")
        else:
            err = PermanentBackendError(f"{url} refused {what} (HTTP {code}): {self._detail(exc)}")
        return err

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except openai.OpenAIError as exc:
            raise self._map_error(exc, what) from None

    # ---- requests --------------------------------------------------------------------------

    def _top_tokens(self, prompt: Prompt, model: str) -> list[tuple[str, float]]:
        if self.api == "chat":
            with self._calling("chat completions"):
                resp = self.client.chat.completions.create(
                    model=model, messages=prompt.messages(), max_tokens=1, temperature=0,
                    logprobs=True, top_logprobs=self.top_k)
            choice = resp.choices[0] if resp.choices else None
            content = choice.logprobs.content if choice and choice.logprobs else None
            if not content:
                raise self._no_logprobs()
            first = content[0]
            pairs = [(t.token, t.logprob) for t in first.top_logprobs or []]
            if first.token not in {t for t, _ in pairs}:
                pairs.append((first.token, first.logprob))
            return pairs
        with self._calling("completions"):
            resp = self.client.completions.create(
                model=model, prompt=prompt.as_text(), max_tokens=1, temperature=0,
                logprobs=self.top_k, echo=False)
        choice = resp.choices[0] if resp.choices else None
        lp = choice.logprobs if choice else None
        if lp is None or not lp.top_logprobs or lp.top_logprobs[0] is None:
            raise self._no_logprobs()
        top = dict(lp.top_logprobs[0])
        if lp.tokens and lp.token_logprobs and lp.tokens[0] not in top:
            top[lp.tokens[0]] = lp.token_logprobs[0]
        return list(top.items())

    def _no_logprobs(self) -> PermanentBackendError:
        return PermanentBackendError(
            f"{public_url(self.base_url)} returned no log-probabilities for {self.api}; "
            "use --mode text with this server")

    def _score_one(self, prompt: Prompt, model: str) -> OptionScores:
        try:
            pairs = self._top_tokens(prompt, model)
        except PermanentBackendError as exc:
            # Servers that cap top-k say so with a 400 naming logprobs: ask for fewer, once.
            if (getattr(exc, "status", None) == 400 and "logprob" in str(exc).lower()
                    and self.top_k > TOP_K_FALLBACK):
                self.top_k = TOP_K_FALLBACK
                pairs = self._top_tokens(prompt, model)
            else:
                raise
        logprobs = letter_logprobs(pairs)
        if all(v is None for v in logprobs.values()):
            ranked = sorted(pairs, key=lambda p: p[1], reverse=True)[:5]
            shown = ", ".join(repr(t) for t, _ in ranked)
            raise UnscorableOutput(
                f"none of {'/'.join(LETTERS)} is among the top {len(pairs)} tokens for "
                f"{'/'.join(prompt.key)} (the model preferred {shown})",
                key=prompt.key, top=dict(ranked))
        scores = OptionScores.from_logprobs(logprobs, total_known=True)
        scores.raw["top_k"] = len(pairs)
        return scores

    def score_options(self, prompts: Sequence[Prompt]) -> list[OptionScores]:
        model = self._ensure_model()
        return [self._score_one(p, model) for p in prompts]

    def generate(self, prompts: Sequence[Prompt], max_tokens: int | None = None) -> list[str]:
        model = self._ensure_model()
        n = max_tokens or self.options.max_tokens
        out = []
        for prompt in prompts:
            if self.api == "chat":
                with self._calling("chat completions"):
                    resp = self.client.chat.completions.create(
                        model=model, messages=prompt.messages(), max_tokens=n,
                        temperature=self.options.temperature)
                out.append((resp.choices[0].message.content or "") if resp.choices else "")
            else:
                with self._calling("completions"):
                    resp = self.client.completions.create(
                        model=model, prompt=prompt.as_text(), max_tokens=n,
                        temperature=self.options.temperature)
                out.append(resp.choices[0].text if resp.choices else "")
        return out

    def list_models(self) -> list[str]:
        with self._calling("the model list"):
            return [m.id for m in self.client.models.list()]

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name,
                "base_url": public_url(self.base_url), "api_key_env": self.key_env,
                "api": self.api}

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None

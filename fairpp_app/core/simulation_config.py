"""What defines a simulation: the one dataclass the CLI flags, the TUI form and the config file read.

It lives in the core, apart from the engine in :mod:`fairpp_app.jobs.simulation`, because the
user's config file (:mod:`fairpp_app.core.user_config`) checks its ``[simulate]`` section against
these fields without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fairpp_app.core.errors import UsageError
from fairpp_app.core.questions import BANKS, DEFAULT_BANK

MODES = ("logprob", "text")
DEBIAS = ("none", "permute")
RESPONDENTS = ("personas", "model")


def _help(text: str, **kw) -> dict:
    return {"help": text, **kw}


@dataclass
class SimulationConfig:
    """Everything that defines a simulation; the CLI flags and the TUI form come from here."""

    backend: str = field(default="embedded", metadata=_help("backend name (see `fairpp backends`)"))
    model: str | None = field(default=None, metadata=_help("model name, path or tag for the backend"))
    personas: str = field(default="all", metadata=_help("all, or a comma list of numbers and slugs"))
    respondent: str = field(default="personas", metadata=_help(
        "personas: each persona answers; model: the bare model answers with no persona",
        choices=RESPONDENTS))
    split: str = field(default="all", metadata=_help("questions to ask",
                                                     choices=("all", "train", "test", "scenario")))
    limit: int | None = field(default=None, metadata=_help("ask only the first N questions of the split"))
    mode: str = field(default="logprob", metadata=_help(
        "logprob: score the option letters in one forward pass; text: generate and parse",
        choices=MODES))
    debias: str = field(default="none", metadata=_help(
        "permute: also score with options A and B swapped and average (cancels letter bias)",
        choices=DEBIAS))
    calibrate: bool = field(default=False, metadata=_help(
        "add the self-calibration reminder to persona prompts"))
    run: str | None = field(default=None, metadata=_help("run name (default: derived from backend, model and mode)"))
    concurrency: int = field(default=4, metadata=_help("requests in flight for HTTP backends"))
    batch_size: int = field(default=8, metadata=_help("prompts per batch for batching backends"))
    base_url: str | None = field(default=None, metadata=_help("server URL for openai/ollama backends"))
    api_key_env: str | None = field(default=None, metadata=_help(
        "NAME of the environment variable holding the API key (the key itself is never stored)"))
    api: str | None = field(default=None, metadata=_help(
        "HTTP API flavour: openai completions|chat, ollama generate|chat (default: the backend's choice)"))
    timeout: float = field(default=60.0, metadata=_help("seconds to wait for one HTTP request"))
    device: str = field(default="auto", metadata=_help("transformers: auto, cpu, cuda or mps; mlx: cpu or gpu"))
    max_retries: int = field(default=5, metadata=_help("retries of a failing request before the run stops"))
    retry_delay: float = field(default=0.5, metadata=_help("first retry delay in seconds; doubles each time"))
    max_tokens: int = field(default=8, metadata=_help("tokens to generate in text mode"))
    bank: str = field(default=DEFAULT_BANK, metadata=_help(
        "question bank: fairpp (this app's wording) or official (the imported release's, to "
        "compare a model with the release's persona answers on the same text)", choices=BANKS))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.debias not in DEBIAS:
            raise UsageError(f"debias must be one of {', '.join(DEBIAS)}, not '{self.debias}'")
        if self.respondent not in RESPONDENTS:
            raise UsageError(f"respondent must be personas or model, not '{self.respondent}'")
        if self.debias == "permute" and self.mode != "logprob":
            raise UsageError("--debias permute needs --mode logprob")
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be at least 1")
        if self.concurrency < 1 or self.batch_size < 1:
            raise UsageError("--concurrency and --batch-size must be at least 1")
        if self.max_retries < 0 or self.retry_delay < 0:
            raise UsageError("--max-retries and --retry-delay must not be negative")

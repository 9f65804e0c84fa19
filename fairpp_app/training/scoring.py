"""The transformers backend around a model already in memory, and the completion tokens.

Training and evaluation must see prompts exactly as ``fairpp simulate --backend
transformers`` does, so this is the backend itself, wrapped around the model being
trained (a peft model) or an adapter loaded for evaluation through the backend's one
path for models loaded elsewhere (:meth:`TransformersBackend.from_loaded`): the
rendering (chat template or plain text, BOS rule), left padding, position ids, the
prefix cache and last-position logits are the backend's, never set up here by hand.

The completion a trainer scores is one letter token: the spelling that follows the
prompt in the backend's format ("A" as the first assistant token under a chat template,
" A" after "Answer:" in plain text), falling back to the other spelling when the
tokenizer has no single token for it.
"""

from __future__ import annotations

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.transformers_backend import TransformersBackend


class ModelScorer(TransformersBackend):
    """Scores options with ``model`` (loaded elsewhere) under the backend's exact rules."""

    def __init__(self, model, tokenizer, device: str, *, name: str, batch_size: int = 8,
                 chat: str = "auto", n_ctx: int = 4096) -> None:
        options = BackendOptions(model=name, device=device, batch_size=batch_size,
                                 n_ctx=n_ctx, extra={"chat": chat})
        self._wrap(model, tokenizer, options, name)
        self._completion_ids = self.completion_ids()

    @property
    def chat(self) -> bool:
        return self.uses_chat_template

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def keeps_logits(self) -> bool:
        return self._keeps_logits

    @property
    def cache_arg(self) -> str:
        """The forward's keyword for a KV cache (transformers 5 renamed it)."""
        return self._cache_arg

    def completion_id(self, letter: str) -> int:
        return self._completion_ids[letter]

    def describe(self) -> dict:
        return {**super().describe(), "adapter": self._name}

    def close(self) -> None:
        """The model belongs to whoever loaded it (the trainer keeps training it)."""

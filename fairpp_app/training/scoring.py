"""The transformers backend around a model already in memory, and the completion tokens.

Training and evaluation must see prompts exactly as ``fairpp simulate --backend
transformers`` does, so instead of re-implementing the rendering (chat template or plain
text, BOS rule, left padding, position ids, last-position logits) this subclass of the
backend borrows all of it and only skips the loading: it wraps the model being trained
(a peft model) or an adapter loaded for evaluation.

The completion a trainer scores is one letter token: the spelling that follows the
prompt in the backend's format ("A" as the first assistant token under a chat template,
" A" after "Answer:" in plain text), falling back to the other spelling when the
tokenizer has no single token for it.
"""

from __future__ import annotations

from fairpp_app.backends.base import Backend, BackendOptions, completion_token_ids
from fairpp_app.backends.transformers_backend import TransformersBackend
from fairpp_app.core.prompts import Prompt


class ModelScorer(TransformersBackend):
    """Scores options with ``model`` (loaded elsewhere) under the backend's exact rules."""

    def __init__(self, model, tokenizer, device: str, *, name: str, batch_size: int = 8,
                 chat: str = "auto", n_ctx: int = 4096) -> None:
        Backend.__init__(self, BackendOptions(model=name, device=device, batch_size=batch_size,
                                              n_ctx=n_ctx, extra={"chat": chat}))
        self.device = device
        self.path = None
        self.dtype = next(model.parameters()).dtype
        # The backend's own set-up, so that nothing it prepares is missing here.
        self._setup(tokenizer, model, name)
        self._completion_ids = self._completion_token_ids()

    @property
    def chat(self) -> bool:
        return self._chat

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def keeps_logits(self) -> bool:
        return self._keeps_logits

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt, exactly as the transformers backend feeds them."""
        return self._tokens(prompt)

    def _completion_token_ids(self) -> dict[str, int]:
        return completion_token_ids(
            lambda text: self.tokenizer.encode(text, add_special_tokens=False), self._chat)

    def completion_id(self, letter: str) -> int:
        return self._completion_ids[letter]

    def describe(self) -> dict:
        return {**super().describe(), "adapter": self._name}

    def close(self) -> None:
        """The model belongs to whoever loaded it (the trainer keeps training it)."""

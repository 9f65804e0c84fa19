"""How a prompt becomes token ids for a Hugging Face-style tokenizer.

The transformers backend, the mlx backend, training's ``ModelScorer`` and the MLX trainer
must feed a model exactly the same ids for the same prompt, or a trained adapter is
scored on prompts it never saw. So the rendering (the tokenizer's chat template, or
``Prompt.as_text()`` for base models), the BOS rule and the chat on/off/auto switch live
here once, and both engines hold one :class:`HFPrompts`.

The BOS rule: a chat template usually writes the BOS token itself; plain text gets it
only where the tokenizer would add it on its own (``add_special_tokens=True`` puts it in
front), so a model sees one BOS, never two. Templates that refuse a system turn (Gemma's,
older Mistral's) get the system text merged into the user turn.

The tokenizer may be a ``transformers`` tokenizer or mlx-lm's ``TokenizerWrapper``, which
hands unknown attributes on to the transformers tokenizer it wraps; nothing here imports
either library except jinja2 (which renders templates) when a template is used.
"""

from __future__ import annotations

from fairpp_app.backends.base import completion_token_ids, option_token_ids
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.prompts import Prompt


class HFPrompts:
    """Renders and tokenises prompts for one tokenizer, under one chat setting."""

    def __init__(self, tokenizer, *, chat: str = "auto", n_ctx: int = 2048,
                 model_name: str = "the model") -> None:
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.model_name = model_name
        mode = str(chat)  # "on", "off"; anything else means auto
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if mode == "on" and not has_template:
            raise PermanentBackendError(f"{model_name} has no chat template")
        self.uses_chat_template = has_template and mode != "off"
        self.bos_id = tokenizer.bos_token_id
        with_special = list(tokenizer.encode("x", add_special_tokens=True))
        self.adds_bos = self.bos_id is not None and bool(with_special) and with_special[0] == self.bos_id

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)]

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        """Prompt text and whether it already holds the BOS token."""
        if not self.uses_chat_template:
            return prompt.as_text(), False
        from jinja2 import TemplateError

        attempts = [prompt.messages()]
        if prompt.system:
            attempts.append([{"role": "user", "content": f"{prompt.system}\n\n{prompt.user}"}])
        for messages in attempts:
            try:
                text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True)
                break
            except TemplateError as exc:
                error = exc
        else:
            raise PermanentBackendError(
                f"the chat template of {self.model_name} cannot render a prompt: {error}")
        bos = self.tokenizer.bos_token
        return text, bool(bos) and text.startswith(bos)

    def ids(self, prompt: Prompt) -> list[int]:
        """The ids the model is fed: rendered, tokenised, BOS in front where it belongs."""
        return self.text_ids(*self.render(prompt))

    def text_ids(self, text: str, has_bos: bool = False) -> list[int]:
        """Ids of already rendered text (a training recipe's own prompt), under the same BOS rule."""
        ids = self.encode(text)
        if self.adds_bos and not has_bos:
            ids.insert(0, int(self.bos_id))
        if not ids:
            raise PermanentBackendError("the prompt rendered to no tokens")
        if len(ids) >= self.n_ctx:
            raise PermanentBackendError(
                f"prompt of {len(ids)} tokens does not fit the context of {self.n_ctx}")
        return ids

    def option_ids(self) -> list[list[int]]:
        """Per letter, the single-token spellings whose probabilities scoring sums."""
        return option_token_ids(self.encode)

    def completion_ids(self) -> dict[str, int]:
        """Letter -> the one token training puts after the prompt."""
        return completion_token_ids(self.encode, self.uses_chat_template)


class HFPromptMethods:
    """The public prompt methods of a backend that holds an ``HFPrompts`` as ``self.prompts``.

    Training, evaluation and the MLX trainer read prompts through these names on the backend,
    whichever engine it is, so they never reach into the prompt layer's internals.
    """

    prompts: HFPrompts

    @property
    def uses_chat_template(self) -> bool:
        return self.prompts.uses_chat_template

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        """Prompt text and whether it already holds the BOS token."""
        return self.prompts.render(prompt)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt, exactly as scoring feeds them to the model."""
        return self.prompts.ids(prompt)

    def completion_ids(self) -> dict[str, int]:
        """Letter -> the token id training puts after the prompt."""
        return self.prompts.completion_ids()

    def text_ids(self, text: str) -> list[int]:
        """Token ids of plain text given as is (no template), BOS in front where it belongs."""
        return self.prompts.text_ids(text)

    def text_encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens."""
        return self.prompts.encode(text)

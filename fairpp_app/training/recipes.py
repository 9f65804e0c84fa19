"""Training recipes: how a question becomes the prompt, the completion and the pairs trained on.

fairpp's own recipe puts the question to the model exactly as ``fairpp simulate`` does (the
backend's chat template, or plain text ending in "Answer:"), trains on the one letter token
that follows, and gives each question two preference pairs (the target's letter over each
other letter). The paper's recipe is what the authors' trainer did (REFERENCE section 7):

- the prompt is ``"\\n\\nHuman: " + question-with-options + "\\n\\nAssistant:"``, as plain text
  whatever the model's chat template (the options on their own lines under the question,
  as in the released data); the tokenizer's BOS rule still applies (the authors tokenised
  without special tokens, which leaves Gemma without its BOS and makes it babble);
- the completion is the letter followed by the tokenizer's EOS, two tokens, scored as the
  sum of both log-probabilities;
- each question gives three pairs: the target's letter over each other letter, and the two
  other letters in a random order (noise by construction: nothing says which of them the
  target prefers). The order is drawn once per question from ``--seed`` and stored in the
  example as the order of its rejected letters, so the loss reads the third pair as
  column 1 over column 2 and never draws anything itself.

The paper also started DPO from its SFT model: that is ``--init-from`` (``fairpp sweep``
trains the SFT cell first when the recipe is ``paper``). Evaluation keeps fairpp's prompt,
as the authors evaluated with the chat template (their train/eval mismatch, measured here
rather than fixed).

Each part is also a switch of its own (``--prompt-format``, ``--completion``, ``--pairs``);
a switch left unset takes the recipe's value. Plain Python: both trainers read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fairpp_app.backends.base import completion_token_ids
from fairpp_app.core.errors import UsageError
from fairpp_app.core.prompts import Prompt
from fairpp_app.core.questions import LETTERS, Question

PROMPT_FORMATS = ("fairpp", "paper")
COMPLETIONS = ("letter", "letter-eos")
PAIRS = (2, 3)


@dataclass(frozen=True)
class Recipe:
    name: str
    prompt_format: str
    completion: str
    pairs: int


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("fairpp", "fairpp", "letter", 2),
    Recipe("paper", "paper", "letter-eos", 3),
)}
NAMES = tuple(RECIPES)


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(f"--recipe must be one of {', '.join(NAMES)}, not '{name}'") from None


def paper_prompt(question: Question, swap_ab: bool = False) -> str:
    """The authors' training prompt: Human/Assistant turns around the question and its options."""
    a, b, c = question.options()
    if swap_ab:
        a, b = b, a
    body = f"{question.text}\n" + "\n".join(f"{k}. {v}" for k, v in zip(LETTERS, (a, b, c)))
    return f"\n\nHuman: {body}\n\nAssistant:"


def prompt_ids(backend, prompt: Prompt, question: Question, swap_ab: bool, prompt_format: str) -> list[int]:
    """Token ids of a training prompt, through ``backend``'s tokenizer and BOS rule."""
    if prompt_format == "paper":
        return backend.text_ids(paper_prompt(question, swap_ab))
    return backend.prompt_ids(prompt)


def letter_ids(backend, prompt_format: str) -> dict[str, int]:
    """Letter -> the token trained on after the prompt. After "Assistant:" the authors
    tokenised the bare letter, as a chat turn starts with it."""
    if prompt_format == "paper":
        return completion_token_ids(backend.text_encode, chat=True)
    return backend.completion_ids()


def eos_id(backend) -> int:
    """The token that ends a two-token completion (the authors appended the tokenizer's EOS)."""
    eos = getattr(backend.tokenizer, "eos_token_id", None)
    if eos is None:
        raise UsageError("--completion letter-eos needs a tokenizer with an EOS token; this "
                         "model's has none (use --completion letter)")
    return int(eos)

"""The prompts a respondent sees.

A persona speaks through the system prompt; a ``model`` respondent gets no system prompt,
which is how a model is placed among the personas. Base models without a chat template
get the same parts joined as plain text, persona first, so consecutive prompts of one
persona share a long common prefix that llama.cpp and friends keep in their KV cache.

Everything that shapes the prompt is in ``TEMPLATE``; its hash is stored with a run and a
run refuses to resume under a different one, so one run never mixes two prompt formats.
The training code builds its prompts here too, so training and evaluation see the same
format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from fairpp_app.core.personas import Persona
from fairpp_app.core.questions import Question

TEMPLATE = {
    "version": 1,
    "system": "Answer the survey question below as the following person would.\n\n{description}",
    "question": "Question: {text}\n\nA. {a}\nB. {b}\nC. {c}",
    "instruction": "Reply with the letter of one option only (A, B or C).",
    "text_join": "{system}\n\n{user}\n\nAnswer:",
    "text_join_no_system": "{user}\n\nAnswer:",
    "calibration": ("Before answering, recall how this person usually weighs effort, equality, "
                    "tradition and the law, and keep those views consistent across questions."),
}


@dataclass(frozen=True)
class Prompt:
    """One question put to one respondent."""

    system: str | None
    user: str
    key: tuple[str, str] = ("", "")  # (question id, respondent) for bookkeeping

    def as_text(self) -> str:
        """Plain-text rendering for base models without a chat template."""
        if self.system:
            return TEMPLATE["text_join"].format(system=self.system, user=self.user)
        return TEMPLATE["text_join_no_system"].format(user=self.user)

    def messages(self) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": self.user}]


def template_hash(calibrate: bool = False, permute: bool = False) -> str:
    blob = json.dumps({"template": TEMPLATE, "calibrate": calibrate, "permute": permute},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def system_prompt(persona: Persona | None, calibrate: bool = False) -> str | None:
    if persona is None:
        return None
    text = TEMPLATE["system"].format(description=persona.description)
    if calibrate:
        text += "\n\n" + TEMPLATE["calibration"]
    return text


def question_block(question: Question, swap_ab: bool = False) -> str:
    a, b, c = question.options()
    if swap_ab:
        a, b = b, a
    return TEMPLATE["question"].format(text=question.text, a=a, b=b, c=c)


def build_prompt(question: Question, persona: Persona | None, *, calibrate: bool = False,
                 swap_ab: bool = False, respondent: str | None = None) -> Prompt:
    user = question_block(question, swap_ab) + "\n\n" + TEMPLATE["instruction"]
    who = respondent or (persona.slug if persona else "model")
    return Prompt(system=system_prompt(persona, calibrate), user=user, key=(question.id, who))

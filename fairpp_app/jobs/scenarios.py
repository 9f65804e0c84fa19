"""Scenario questions: a short vignette per option of a template question.

For each template question a generative backend writes one vignette per pole (options A
and B); option C stays the neutral choice. A vignette must read as a small story: a few
sentences, within length limits, without echoing the instructions. A failed attempt is
retried with a differently worded request (so greedy decoding gets a second chance), and
after the last attempt the question is recorded as failed in the events table; the run
goes on. Accepted scenarios are stored as questions of the ``scenario`` split linked to
their template by ``parent_id``; planning skips templates that already have one, so a
rerun resumes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fairpp_app.core.errors import BackendError, TransientBackendError, UsageError
from fairpp_app.core.events import Event, Progress, RunEnded, RunStarted
from fairpp_app.core.prompts import Prompt
from fairpp_app.core.questions import Question, dimension_poles, scenario_id, wording
from fairpp_app.store.database import Store

MIN_CHARS, MAX_CHARS = 80, 900
MIN_SENTENCES, MAX_SENTENCES = 2, 6
SCENARIO_QUESTION = ("Here are situations involving {group} and {problem}. Which of these "
                     "situations do you find the fairest?")
NEUTRAL_OPTION = "None of these; I have no preference."

REQUESTS = [
    ("Write a short, realistic scene of three to five sentences. Introduce one or two people "
     "with concrete details (age, job, where they live). Show the moment they receive {problem} "
     "and why, following this principle: {principle} End with one sentence about how they "
     "feel.\n\nScene:"),
    ("Tell a brief true-to-life story (three to five sentences) about a specific person among "
     "{group} who gets {problem}. The reason they get it is: {principle} Name the person, "
     "describe them concretely and finish with how they feel about it.\n\nStory:"),
    ("Describe in three to five plain sentences a real-world example of this rule at work: "
     "{principle} The example is about {group} and {problem}. Include one or two named people "
     "and one line about their feelings.\n\nExample:"),
]
_ECHO = re.compile(r"(three to five sentences|scene:|story:|example:|principle)", re.I)


@dataclass
class ScenarioOutcome:
    status: str
    run: str
    generated: int = 0
    failed: int = 0
    skipped: int = 0
    message: str = ""
    failures: list[str] = field(default_factory=list)


def clean(text: str) -> str:
    text = text.strip().split("\n\n")[0].strip()
    return " ".join(text.split())


def validate(text: str) -> str | None:
    """Why a vignette is unacceptable, or None when it is fine."""
    if len(text) < MIN_CHARS:
        return f"too short ({len(text)} characters)"
    if len(text) > MAX_CHARS:
        return f"too long ({len(text)} characters)"
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if not MIN_SENTENCES <= len(sentences) <= MAX_SENTENCES:
        return f"{len(sentences)} sentences"
    if _ECHO.search(text):
        return "repeats the instructions"
    normalised = [s.strip().lower() for s in sentences]
    if len(set(normalised)) < len(normalised):
        return "repeats itself"
    return None


def vignette_prompt(question: Question, option_text: str, attempt: int) -> Prompt:
    request = REQUESTS[attempt % len(REQUESTS)].format(
        problem=question.problem, group=question.group_name, principle=option_text)
    return Prompt(system=None, user=request, key=(question.id, f"vignette-{attempt}"))


def build_scenario(template: Question, vignettes: list[str]) -> Question:
    if not 2 <= len(vignettes) <= 3:
        raise ValueError("a scenario question needs 2 or 3 options")
    options = list(vignettes) + [NEUTRAL_OPTION] * (3 - len(vignettes))
    return Question(
        id=scenario_id(template.id), kind="scenario", topic=template.topic,
        category=template.category, problem=template.problem, group_type=template.group_type,
        group_name=template.group_name, dimension=template.dimension, framing=template.framing,
        text=SCENARIO_QUESTION.format(group=template.group_name, problem=template.problem),
        option_a=options[0], option_b=options[1], option_c=options[2], split="scenario",
        parent_id=template.id)


def generate_scenarios(store: Store, backend, *, run_name: str | None = None,
                       source_split: str = "test", limit: int | None = None,
                       attempts: int = 3, max_tokens: int = 160,
                       listener: Callable[[Event], None] | None = None,
                       cancel: threading.Event | None = None) -> ScenarioOutcome:
    if not backend.SUPPORTS_TEXT:
        raise UsageError(f"the {backend.name} backend cannot generate text")
    listener = listener or (lambda e: None)
    cancel = cancel or threading.Event()
    name = run_name or f"scenarios-{backend.name}-{backend.model_name}"
    run = store.find_run(name) or store.create_run(
        name, "scenarios", backend=backend.name, model=backend.model_name, mode="text",
        params={"source_split": source_split, "attempts": attempts, "max_tokens": max_tokens})
    if run["kind"] != "scenarios":
        raise UsageError(f"run '{name}' is a {run['kind']} run; choose another --run name")
    templates = store.questions(source_split, where="kind = 'template'", limit=limit)
    have = store.scenario_parents()
    todo = [q for q in templates if q.id not in have]
    outcome = ScenarioOutcome("finished", name, skipped=len(templates) - len(todo))

    def emit(event: Event) -> None:
        store.add_event(event.kind, event.payload(), run_id=run["id"])
        listener(event)

    store.claim_run(run["id"])
    emit(RunStarted(name, len(todo), outcome.skipped, backend.name, backend.model_name, "text"))
    try:
        for i, template in enumerate(todo, start=1):
            if cancel.is_set():
                outcome.status, outcome.message = "cancelled", "cancelled by the user"
                break
            vignettes, why = [], ""
            for option in (template.option_a, template.option_b):
                text = None
                for attempt in range(attempts):
                    candidate = clean(backend.generate([vignette_prompt(template, option, attempt)],
                                                       max_tokens)[0])
                    why = validate(candidate) or ""
                    if not why:
                        text = candidate
                        break
                if text is None:
                    break
                vignettes.append(text)
            if len(vignettes) == 2:
                store.upsert_questions([build_scenario(template, vignettes)])
                outcome.generated += 1
            else:
                outcome.failed += 1
                outcome.failures.append(template.id)
                store.add_event("scenario_failed", {"question_id": template.id, "reason": why,
                                                    "attempts": attempts}, run_id=run["id"])
            emit(Progress(name, outcome.skipped + i, len(templates), 0.0, None, outcome.failed, 0))
            store.heartbeat(run["id"])
    except TransientBackendError as exc:
        outcome.status = "stopped"
        outcome.message = f"the backend kept failing ({exc}); rerun to resume"
    except BackendError as exc:
        outcome.status, outcome.message = "failed", str(exc)
    store.release_run(run["id"], outcome.status)
    emit(RunEnded(name, outcome.status, outcome.generated + outcome.skipped, len(templates),
                  outcome.message))
    return outcome


def poles_text(question: Question) -> tuple[str, str]:
    return dimension_poles(question.dimension)


__all__ = ["generate_scenarios", "validate", "build_scenario", "wording"]

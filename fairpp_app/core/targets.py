"""Training targets: one persona, or a group of personas mixed in given shares.

A target is written as a persona (``6``, ``disengaged-traditionalists``) or a group
(``3,6`` for an equal mix, ``3:0.7,6:0.3`` for given shares, normalised to sum 1). A
:class:`Target` stands where a :class:`~fairpp_app.core.personas.Persona` used to: it has
a ``slug``, a ``number`` and a ``name``, and for one persona they are that persona's, so a
one-persona target is the persona in every table, file name, stored row and weight.

A group's slug is its canonical spec (``3,6`` or ``3:0.7,6:0.3``, members by number in
the order given). No persona slug can contain ``,`` or ``:``, so it never clashes with a
persona's as a respondent key; stored as a training's ``target`` it reads as what was asked.

The group's answer distribution on a question is the share-weighted mix of its members'
A/B/C vectors: a member's probabilities where its record has them, its letter as a
one-hot vector where it has only a letter. Its answer is the mix's argmax; a tie (two
letters-only members in equal shares that disagree) goes to the tied option of the first
member listed that chose one, so the order of the spec decides, never the letter A. A
question where any member's answer is unparsed has no group answer (as an unparsed
persona answer has none): the mix would silently be someone else's.

A one-persona target takes the persona's own letter, not the argmax of its
probabilities: the two agree wherever the letter came from scoring, and taking the letter
makes "a group of one is today's target" hold by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import Persona, resolve
from fairpp_app.core.questions import LETTERS

#: Shares are compared and printed to this many decimals.
SHARE_DIGITS = 6


@dataclass(frozen=True)
class Target:
    members: tuple[Persona, ...]
    shares: tuple[float, ...]   # one per member, summing to 1
    spec: str                   # canonical: "6", "3,6" or "3:0.7,6:0.3"

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1

    @property
    def slug(self) -> str:
        return self.spec if self.is_group else self.members[0].slug

    @property
    def number(self) -> int | str:
        """The persona's number; a group's spec (what messages print after "persona")."""
        return self.spec if self.is_group else self.members[0].number

    @property
    def name(self) -> str:
        if not self.is_group:
            return self.members[0].name
        return "group of " + ", ".join(f"{p.name} {_share(s)}"
                                       for p, s in zip(self.members, self.shares))

    @property
    def title(self) -> str:
        """How messages and table titles name it: ``persona 6 (slug)`` or ``group 3:0.7,6:0.3``."""
        return f"group {self.spec}" if self.is_group else f"persona {self.number} ({self.slug})"

    @property
    def tag(self) -> str:
        """What a default training name carries: ``p6``, ``p3-6``, ``p3x0.7-6x0.3``."""
        if not self.is_group:
            return f"p{self.members[0].number}"
        if self.equal:
            return "p" + "-".join(str(p.number) for p in self.members)
        return "p" + "-".join(f"{p.number}x{_share(s)}" for p, s in zip(self.members, self.shares))

    @property
    def equal(self) -> bool:
        return len({round(s, SHARE_DIGITS) for s in self.shares}) == 1

    @property
    def member_slugs(self) -> list[str]:
        return [p.slug for p in self.members]

    def outside(self, personas: Sequence[Persona]) -> list[Persona]:
        """The personas not in the group: the ones its margin and tiers are measured against."""
        mine = set(self.member_slugs)
        return [p for p in personas if p.slug not in mine]

    def compared(self, personas: Sequence[Persona]) -> list[str]:
        """The respondent keys a comparison reads: the target's, then those outside it."""
        return [self.slug] + [p.slug for p in self.outside(personas)]

    def mix(self, letters: Mapping[str, str | None],
            probs: Mapping[str, Sequence[float] | None] | None = None) -> np.ndarray | None:
        """The group's A/B/C distribution on one question from its members' letters (and
        probabilities where known); None where a member's answer is unparsed."""
        total = np.zeros(3)
        for p, share in zip(self.members, self.shares):
            vector = member_vector(letters.get(p.slug), (probs or {}).get(p.slug))
            if vector is None:
                return None
            total += share * vector
        return total

    def answer(self, letters: Mapping[str, str | None],
               probs: Mapping[str, Sequence[float] | None] | None = None) -> str | None:
        """The target's letter on one question (the persona's own for a one-persona target)."""
        if not self.is_group:
            return letters.get(self.members[0].slug)
        mixed = self.mix(letters, probs)
        if mixed is None:
            return None
        tied = {i for i in range(3) if math.isclose(mixed[i], mixed.max(), abs_tol=1e-12)}
        if len(tied) > 1:
            for p in self.members:
                own = LETTERS.index(letters[p.slug]) if letters.get(p.slug) else None
                if own in tied:
                    return LETTERS[own]
        return LETTERS[int(np.argmax(mixed))]


def member_vector(letter: str | None, probs: Sequence[float] | None) -> np.ndarray | None:
    """A member's A/B/C vector: its probabilities (renormalised) if known, else its letter one-hot."""
    if letter is None:
        return None
    if probs is not None:
        vector = np.asarray(probs, dtype=float)
        if np.all(np.isfinite(vector)) and vector.sum() > 0:
            return vector / vector.sum()
    vector = np.zeros(3)
    vector[LETTERS.index(letter)] = 1.0
    return vector


def _share(value: float) -> str:
    return f"{round(value, SHARE_DIGITS):g}"


def parse_target(spec: str | int, personas: list[Persona]) -> Target:
    """A target from ``6``, a slug, ``3,6`` or ``3:0.7,6:0.3`` (shares are normalised): what
    ``--target`` gives, and what a training stores (a slug or a group's spec) reads back."""
    text = str(spec).strip()
    parts = [part.strip() for part in text.split(",")]
    if not text or any(not part for part in parts):
        raise UsageError(f"--target '{spec}': give a persona (6) or a group (3,6 or 3:0.7,6:0.3)")
    members: list[Persona] = []
    raw: list[float | None] = []
    for part in parts:
        ref, sep, share = part.partition(":")
        persona = resolve(ref, personas)
        if persona in members:
            raise UsageError(f"--target '{spec}': persona {persona.number} is listed twice")
        members.append(persona)
        if not sep:
            raw.append(None)
            continue
        try:
            value = float(share)
        except ValueError:
            raise UsageError(f"--target '{spec}': the share of persona {persona.number} must be "
                             f"a number, not '{share}'") from None
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--target '{spec}': the share of persona {persona.number} must be "
                             "a positive number")
        raw.append(value)
    if any(r is None for r in raw) and any(r is not None for r in raw):
        raise UsageError(f"--target '{spec}': give every member a share (3:0.7,6:0.3) or none "
                         "(3,6 for an equal mix)")
    values = [1.0] * len(raw) if raw[0] is None else [float(r) for r in raw]
    shares = tuple(v / sum(values) for v in values)
    return _build(tuple(members), shares)


def as_target(target: Target | Persona) -> Target:
    """A persona as the one-persona target it is (a target as itself)."""
    return target if isinstance(target, Target) else _build((target,), (1.0,))


def _build(members: tuple[Persona, ...], shares: tuple[float, ...]) -> Target:
    if len(members) == 1:
        return Target(members, (1.0,), str(members[0].number))
    probe = Target(members, shares, "")
    spec = (",".join(str(p.number) for p in members) if probe.equal else
            ",".join(f"{p.number}:{_share(s)}" for p, s in zip(members, shares)))
    return Target(members, shares, spec)

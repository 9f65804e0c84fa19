"""Adding, changing and removing the user's own personas.

The user's file (``paths.user_personas_path()``) holds ``[[persona]]`` tables in the same
layout as the shipped file. Every change is checked the way loading checks it: the new
file text is parsed with ``parse_personas`` and merged over the built-ins before it is
written, so the file on disk is always one ``load_personas`` accepts. Built-in personas
are never written here except as an override the user made deliberately.
"""

from __future__ import annotations

import os
from pathlib import Path

from fairpp_app.core.errors import PersonaFileError, UsageError
from fairpp_app.core.paths import user_personas_path
from fairpp_app.core.personas import Persona, builtin_personas, merge, parse_personas, to_toml

HEADER = ("# Your fairpp personas. Each [[persona]] adds a persona, or overrides the built-in\n"
          "# one with the same number and slug. Written by fairpp; hand edits are kept.\n\n")


def read_user_personas(path: Path | None = None) -> list[Persona]:
    path = path or user_personas_path()
    if not path.exists():
        return []
    return parse_personas(path.read_text("utf-8"), str(path), builtin=False)


def render(personas: list[Persona]) -> str:
    return HEADER + "\n".join(to_toml(p) for p in sorted(personas, key=lambda p: p.number))


def validate(personas: list[Persona], path: Path | None = None) -> str:
    """The file text for these personas, or PersonaFileError naming what is wrong."""
    path = path or user_personas_path()
    text = render(personas)
    parsed = parse_personas(text, str(path), builtin=False)
    merge(builtin_personas(), parsed, str(path))
    return text


def write_user_personas(personas: list[Persona], path: Path | None = None) -> Path:
    path = path or user_personas_path()
    text = validate(personas, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)  # never leave a half-written file behind
    return path


def save_persona(persona: Persona, replaces: int | None = None,
                 path: Path | None = None) -> Path:
    """Add ``persona`` to the user's file, or put it in place of user persona ``replaces``."""
    existing = read_user_personas(path)
    if any(p.number == persona.number and p.number != replaces for p in existing):
        raise PersonaFileError(f"persona {persona.number} already exists in your file; "
                               "edit it instead, or pick another number")
    mine = [p for p in existing if p.number != replaces]
    return write_user_personas(mine + [Persona(persona.number, persona.slug, persona.name,
                                               persona.description, builtin=False)], path)


def delete_persona(number: int, path: Path | None = None) -> Path:
    mine = read_user_personas(path)
    if not any(p.number == number for p in mine):
        if any(p.number == number for p in builtin_personas()):
            raise UsageError(f"persona {number} is built in and cannot be deleted; "
                             "clone it to make your own version")
        raise UsageError(f"persona {number} is not in your personas file")
    return write_user_personas([p for p in mine if p.number != number], path)


def next_number(personas: list[Persona]) -> int:
    return max((p.number for p in personas), default=0) + 1

"""Personas: the seven built-in survey segments plus whatever the user adds.

Personas are data. The shipped TOML file holds the seven segments; a user file with the
same layout may override a built-in (same number or slug) or add new ones. Validation
errors name the file, the line and the field so a hand-edited file is easy to fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from fairpp_app.core.errors import PersonaFileError, UnknownPersonaError
from fairpp_app.core.paths import user_personas_path

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REQUIRED = ("number", "slug", "name", "description")
MAX_DESCRIPTION = 4000


@dataclass(frozen=True)
class Persona:
    number: int
    slug: str
    name: str
    description: str
    builtin: bool = True

    def as_row(self) -> dict:
        return asdict(self)


_HEADER_RE = re.compile(r"^\s*\[\[\s*persona\s*\]\]\s*(#.*)?$")


def _table_lines(text: str) -> list[int]:
    """1-based line numbers of each ``[[persona]]`` header (a trailing comment allowed)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if _HEADER_RE.match(line)]


def _field_line(text: str, table_line: int, field: str) -> int:
    lines = text.splitlines()
    for i in range(table_line, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("["):
            break
        if re.match(rf"^{re.escape(field)}\s*=", stripped):
            return i + 1
    return table_line


def parse_personas(text: str, source: str, builtin: bool) -> list[Persona]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PersonaFileError(f"{source}: not valid TOML: {exc}") from None
    unknown_top = set(data) - {"persona"}
    if unknown_top:
        raise PersonaFileError(
            f"{source}: unexpected top-level key(s) {sorted(unknown_top)}; "
            "personas go in [[persona]] tables")
    tables = data.get("persona", [])
    if not isinstance(tables, list):
        raise PersonaFileError(f"{source}: 'persona' must be an array of tables ([[persona]])")
    header_lines = _table_lines(text)
    out: list[Persona] = []
    seen_numbers: dict[int, str] = {}
    seen_slugs: set[str] = set()
    for idx, table in enumerate(tables):
        line = header_lines[idx] if idx < len(header_lines) else 1
        if not isinstance(table, dict):
            raise PersonaFileError(
                f"{source}, line {line}: 'persona' must be an array of tables ([[persona]])")

        def fail(field: str, why: str, table=table, line=line) -> PersonaFileError:
            at = _field_line(text, line, field) if field in table else line
            return PersonaFileError(f"{source}, line {at}, field '{field}': {why}")

        for field in REQUIRED:
            if field not in table:
                raise fail(field, "missing")
        extra = set(table) - set(REQUIRED)
        if extra:
            raise fail(sorted(extra)[0], f"unknown field (allowed: {', '.join(REQUIRED)})")
        number = table["number"]
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise fail("number", f"must be a positive integer, got {number!r}")
        slug = table["slug"]
        if not isinstance(slug, str) or not SLUG_RE.match(slug):
            raise fail("slug", f"must be lower-case words joined by '-', got {slug!r}")
        for field in ("name", "description"):
            value = table[field]
            if not isinstance(value, str) or not value.strip():
                raise fail(field, "must be a non-empty string")
        if len(table["description"]) > MAX_DESCRIPTION:
            raise fail("description", f"longer than {MAX_DESCRIPTION} characters")
        if number in seen_numbers:
            raise fail("number", f"persona {number} is defined twice in the same file")
        if slug in seen_slugs:
            raise fail("slug", f"slug '{slug}' is defined twice in the same file")
        seen_numbers[number] = slug
        seen_slugs.add(slug)
        out.append(Persona(number, slug, table["name"].strip(),
                           " ".join(table["description"].split()), builtin))
    return out


def builtin_personas() -> list[Persona]:
    res = resources.files("fairpp_app.data").joinpath("personas.toml")
    return parse_personas(res.read_text("utf-8"), "built-in personas.toml", builtin=True)


def merge(base: Iterable[Persona], overrides: Iterable[Persona], source: str) -> list[Persona]:
    by_number = {p.number: p for p in base}
    for p in overrides:
        clash = next((q for q in by_number.values() if q.slug == p.slug and q.number != p.number), None)
        if clash is not None:
            raise PersonaFileError(
                f"{source}: slug '{p.slug}' already belongs to persona {clash.number}; "
                "override a persona by giving both its number and slug")
        by_number[p.number] = p
    return [by_number[n] for n in sorted(by_number)]


def load_personas(user_file: Path | None = None) -> list[Persona]:
    """Built-in personas overlaid with the user's file, if any, ordered by number."""
    personas = builtin_personas()
    path = user_file if user_file is not None else user_personas_path()
    if path.exists():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PersonaFileError(f"{path}: cannot be read: {exc}") from None
        personas = merge(personas, parse_personas(text, str(path), builtin=False), str(path))
    return personas


def resolve(ref: str | int, personas: list[Persona]) -> Persona:
    """Find a persona by number (``6``, ``"6"``) or slug."""
    key = str(ref).strip().lower()
    for p in personas:
        if key == p.slug or key == str(p.number):
            return p
    known = ", ".join(f"{p.number}={p.slug}" for p in personas)
    raise UnknownPersonaError(f"unknown persona '{ref}'; known personas: {known}")


def resolve_many(spec: str, personas: list[Persona]) -> list[Persona]:
    """Parse ``all`` or a comma list of numbers and slugs."""
    if spec.strip().lower() in ("", "all"):
        return list(personas)
    chosen: list[Persona] = []
    for part in spec.split(","):
        if part.strip():
            p = resolve(part, personas)
            if p not in chosen:
                chosen.append(p)
    return chosen


def to_toml(persona: Persona) -> str:
    """Serialise one persona as a ``[[persona]]`` table (for the user's file)."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return (f"[[persona]]\nnumber = {persona.number}\nslug = {q(persona.slug)}\n"
            f"name = {q(persona.name)}\ndescription = {q(persona.description)}\n")

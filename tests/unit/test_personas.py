"""Personas: the fixed built-in numbering, the user's overrides, and exact error locations."""

from __future__ import annotations

import json
import textwrap

import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import PersonaFileError, UnknownPersonaError
from fairpp_app.core.personas import (
    builtin_personas,
    load_personas,
    parse_personas,
    resolve,
    resolve_many,
    to_toml,
)

EXPECTED = ["progressive-activists", "civic-pragmatists", "disengaged-battlers",
            "established-liberals", "loyal-nationals", "disengaged-traditionalists",
            "backbone-conservatives"]

GOOD = """\
[[persona]]
number = 6
slug = "disengaged-traditionalists"
name = "My Traditionalists"
description = "A rewritten description."

[[persona]]
number = 8
slug = "rural-optimists"
name = "Rural Optimists"
description = "Someone new."
"""


def test_seven_builtins_with_fixed_numbers_and_slugs():
    personas = builtin_personas()
    assert [(p.number, p.slug) for p in personas] == list(enumerate(EXPECTED, start=1))
    assert all(p.builtin for p in personas)
    assert all(p.name and len(p.description) > 100 for p in personas)
    assert personas[5].name == "Disengaged Traditionalists"


def test_load_without_user_file_gives_the_builtins():
    assert load_personas() == builtin_personas()


@pytest.mark.parametrize("ref", [6, "6", " 6 ", "disengaged-traditionalists",
                                 "Disengaged-Traditionalists"])
def test_resolve_by_number_or_slug(ref):
    assert resolve(ref, builtin_personas()).number == 6


@pytest.mark.parametrize("ref", ["0", "9", "nobody", "disengaged", ""])
def test_unknown_persona_raises(ref):
    with pytest.raises(UnknownPersonaError) as exc:
        resolve(ref, builtin_personas())
    assert "6=disengaged-traditionalists" in str(exc.value)


def test_resolve_many():
    personas = builtin_personas()
    assert resolve_many("all", personas) == personas
    chosen = resolve_many("6, loyal-nationals,6,1", personas)
    assert [p.number for p in chosen] == [6, 5, 1]
    with pytest.raises(UnknownPersonaError):
        resolve_many("1,42", personas)


def test_cli_unknown_persona_exits_2_without_traceback(capsys):
    assert main(["personas", "show", "42"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown persona '42'" in captured.err
    assert "Traceback" not in captured.err


def test_cli_show_and_list(capsys):
    assert main(["personas", "show", "disengaged-traditionalists", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["number"] == 6
    assert main(["personas", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["slug"] for p in listed] == EXPECTED


def test_user_file_overrides_6_and_adds_8(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD, "utf-8")
    monkeypatch.setenv("FAIRPP_PERSONAS", str(path))
    personas = load_personas()
    assert [p.number for p in personas] == [1, 2, 3, 4, 5, 6, 7, 8]
    six = resolve(6, personas)
    assert six.name == "My Traditionalists" and not six.builtin
    assert six.slug == "disengaged-traditionalists"
    assert resolve("rural-optimists", personas).number == 8
    assert resolve(7, personas).builtin
    assert main(["personas", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["personas", "show", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slug"] == "rural-optimists"


def test_user_file_synced_into_the_database(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD, "utf-8")
    monkeypatch.setenv("FAIRPP_PERSONAS", str(path))
    db = tmp_path / "p.db"
    assert main(["--db", str(db), "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["personas"] == 8
    from fairpp_app.store.database import Store

    with Store(db) as s:
        rows = {r["number"]: r for r in s.db["personas"].rows}
    assert rows[6]["name"] == "My Traditionalists" and rows[6]["builtin"] == 0
    assert rows[8]["slug"] == "rural-optimists"


def test_to_toml_round_trips():
    for p in builtin_personas():
        back = parse_personas(to_toml(p), "x", builtin=True)
        assert back == [p]


def _error(tmp_path, monkeypatch, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text), "utf-8")
    monkeypatch.setenv("FAIRPP_PERSONAS", str(path))
    with pytest.raises(PersonaFileError) as exc:
        load_personas()
    message = str(exc.value)
    assert str(path) in message
    return message


# Each case: file text, the field the message must name, the line it must point at.
BAD_FILES = {
    "missing field": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = "fine"

        [[persona]]
        number = 9
        slug = "c-d"
        description = "no name"
        """, "name", 7),
    "number of wrong type": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = "fine"

        [[persona]]
        slug = "c-d"
        name = "C"
        number = "nine"
        description = "x"
        """, "number", 10),
    "negative number": ("""\
        [[persona]]
        number = -1
        slug = "a-b"
        name = "A"
        description = "fine"
        """, "number", 2),
    "bad slug": ("""\
        # a comment first

        [[persona]]
        number = 8
        name = "A"
        slug = "Not A Slug"
        description = "fine"
        """, "slug", 6),
    "description of wrong type": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = 12
        """, "description", 5),
    "blank name": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "   "
        description = "x"
        """, "name", 4),
    "unknown field": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = "x"
        colour = "red"
        """, "colour", 6),
    "duplicate number": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = "x"

        [[persona]]
        number = 8
        slug = "c-d"
        name = "C"
        description = "y"
        """, "number", 8),
    "duplicate slug": ("""\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A"
        description = "x"

        [[persona]]
        number = 9
        name = "C"
        slug = "a-b"
        description = "y"
        """, "slug", 10),
    "header with a trailing comment": ("""\
        [[persona]]  # mine
        number = 8
        slug = "a-b"
        name = "A"
        description = "x"

        [[persona]]  # also mine
        number = 9
        slug = "c-d"
        name = "C"
        description = 3
        """, "description", 11),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_user_file_names_path_line_and_field(tmp_path, monkeypatch, case):
    text, field, line = BAD_FILES[case]
    message = _error(tmp_path, monkeypatch, text)
    assert f"line {line}," in message, message
    assert f"field '{field}'" in message, message


def test_toml_syntax_error_names_path_and_line(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, """\
        [[persona]]
        number = 8
        slug = "a-b"
        name = "A" "B"
        description = "x"
        """)
    assert "not valid TOML" in message
    assert "line 4" in message, message


def test_slug_of_another_builtin_is_refused(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, """\
        [[persona]]
        number = 8
        slug = "loyal-nationals"
        name = "Copy"
        description = "x"
        """)
    assert "loyal-nationals" in message and "persona 5" in message


def test_persona_key_must_hold_tables(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, "persona = [1, 2]\n")
    assert "line 1" in message


def test_unexpected_top_level_key(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, 'title = "mine"\n')
    assert "title" in message


def test_cli_bad_user_file_exits_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[[persona]]\nnumber = 8\nslug = "x"\nname = "X"\n', "utf-8")
    monkeypatch.setenv("FAIRPP_PERSONAS", str(path))
    assert main(["personas", "list"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "line 1" in err and "description" in err
    assert "Traceback" not in err

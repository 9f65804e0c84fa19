"""A form generated from a config dataclass, as the CLI's flags are.

Each field becomes one row: a Select when its metadata lists ``choices`` (or the caller
passes them), a Switch for a bool, an Input otherwise (typed for numbers; blank means
``None`` for optional fields). The field's ``help`` is shown under it. ``build()`` returns
the dataclass, so its ``__post_init__`` validation, the same the CLI gets, decides what
is acceptable.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static, Switch
from textual.widgets.select import InvalidSelectValueError

from fairpp_app.core.errors import UsageError


def _base(kind: Any) -> type:
    """int for ``int`` and ``int | None``, and so on."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def _optional(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


class ConfigForm(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    ConfigForm { height: 1fr; }
    ConfigForm .field { height: auto; margin-bottom: 1; }
    ConfigForm .field-row { height: auto; }
    ConfigForm .field-name { width: 16; padding-right: 1; }
    ConfigForm .field-row Input, ConfigForm .field-row Select { width: 1fr; }
    ConfigForm .field-row Switch { width: auto; }
    ConfigForm .field-help { color: $text-muted; padding-left: 2; }
    """

    def __init__(self, cls: type, choices: dict[str, list[tuple[str, Any]]] | None = None,
                 defaults: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cls = cls
        self.defaults = defaults or {}  # start values that differ from the dataclass's
        self.hints = typing.get_type_hints(cls)
        self.specs = list(dataclasses.fields(cls))
        self.extra_choices = choices or {}

    def _widget(self, f: dataclasses.Field):
        kind = self.hints[f.name]
        wid = f"field-{f.name}"
        choices = self.extra_choices.get(f.name)
        if choices is None and f.metadata.get("choices"):
            choices = [(str(c), c) for c in f.metadata["choices"]]
        default = None if f.default is dataclasses.MISSING else f.default
        default = self.defaults.get(f.name, default)
        if choices is not None:
            values = [v for _, v in choices]
            return Select(choices, value=default if default in values else values[0],
                          allow_blank=False, id=wid, compact=True)
        if kind is bool:
            return Switch(value=bool(default), id=wid)
        base = _base(kind)
        typ = {int: "integer", float: "number"}.get(base, "text")
        return Input("" if default is None else str(default), type=typ, id=wid,
                     placeholder="(none)" if _optional(kind) else "", compact=True)

    def compose(self) -> ComposeResult:
        for f in self.specs:
            help_ = f.metadata.get("help", "")
            with Vertical(classes="field"):
                with Horizontal(classes="field-row"):
                    yield Label(f.name.replace("_", " "), classes="field-name")
                    widget = self._widget(f)
                    widget.tooltip = help_ or None
                    yield widget
                if help_:
                    yield Static(help_, classes="field-help", markup=False)

    def raw(self, name: str):
        return self.query_one(f"#field-{name}").value

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.specs:
            widget = self.query_one(f"#field-{f.name}")
            kind = self.hints[f.name]
            if isinstance(widget, (Select, Switch)):
                out[f.name] = widget.value
                continue
            text = widget.value.strip()
            if not text:
                if _optional(kind):
                    out[f.name] = None
                    continue
                if _base(kind) is str:
                    out[f.name] = ""
                    continue
                raise UsageError(f"{f.name.replace('_', ' ')}: a value is needed")
            base = _base(kind)
            try:
                out[f.name] = base(text) if base in (int, float) else text
            except ValueError:
                raise UsageError(f"{f.name.replace('_', ' ')}: '{text}' is not a "
                                 f"{'whole number' if base is int else 'number'}") from None
        return out

    def build(self):
        """The dataclass from the form; UsageError (and others of FairppError) on bad input."""
        return self.cls(**self.values())

    def load(self, values: dict[str, Any]) -> None:
        """Put values into the form (unknown names are ignored)."""
        for f in self.specs:
            if f.name not in values:
                continue
            value = values[f.name]
            widget = self.query_one(f"#field-{f.name}")
            if isinstance(widget, Select):
                try:
                    widget.value = value
                except InvalidSelectValueError:
                    pass  # a value this form does not offer (e.g. an uninstalled backend)
            elif isinstance(widget, Switch):
                widget.value = bool(value)
            else:
                widget.value = "" if value is None else str(value)

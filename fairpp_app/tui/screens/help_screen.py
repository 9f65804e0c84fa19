"""Every key binding, gathered from the classes that declare them, so it cannot go stale."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Textual's key names are exact but not pretty.
KEY_NAMES = {"slash": "/", "question_mark": "?", "left_square_bracket": "[",
             "right_square_bracket": "]", "escape": "esc", "delete": "del"}


def key_text(keys: str) -> str:
    return ", ".join(KEY_NAMES.get(k, k) for k in keys.split(","))


def bindings_table(title: str, bindings) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None,
                  padding=(0, 2), title_style="bold")
    table.add_column("keys", style="bold cyan", no_wrap=True, min_width=14)
    table.add_column("does")
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            table.add_row(key_text(b.key), b.description)
        elif isinstance(b, tuple) and len(b) >= 3:
            table.add_row(key_text(b[0]), b[2])
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        from fairpp_app.tui.screens.inspector_screen import InspectorScreen

        app = type(self.app)  # the app's class declares the keys and the modes

        with Vertical(id="help", classes="dialog"):
            yield Static(Text("Keys  (esc closes; ctrl+p opens the command palette, which "
                              "reaches every screen and action)", style="bold"))
            with VerticalScroll():
                yield Static(bindings_table("Everywhere", app.BINDINGS))
                for mode, title, _ in app.NAVIGATION:
                    cls = app.MODES[mode]
                    yield Static(bindings_table(title, cls.BINDINGS))
                    if mode == "questions":
                        yield Static(bindings_table("Inspector (Enter on a question)",
                                                    InspectorScreen.BINDINGS))
                yield Static("Tables: arrows move, Enter selects. Forms: Tab moves between "
                             "fields. Mouse: click anything.", classes="help-note")

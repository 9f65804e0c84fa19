"""Quitting while a simulation child started by this app still runs: stop it, leave it, or stay.

The child runs in its own process session with its output in a log, so it can outlive the
app; the user says which they want. The dialog answers "stop", "leave" or None (don't quit).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("s", "answer('stop')", "Stop it"),
        Binding("l", "answer('leave')", "Leave it running"),
        Binding("n,escape", "answer(None)", "Don't quit"),
    ]

    def __init__(self, runs: list[str]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        names = ", ".join(self.runs) or "a simulation"
        with Vertical(classes="dialog", id="quit"):
            yield Static(f"{names} is still running in its own process.\n\n"
                         "Stop it (the records so far are kept and it can be resumed), leave it "
                         "running (the Simulate or Train screen follows it again next time; "
                         "`fairpp jobs` lists it), or stay?")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop it (s)", variant="error", id="stop")
                yield Button("Leave it running (l)", variant="primary", id="leave")
                yield Button("Don't quit (n)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)

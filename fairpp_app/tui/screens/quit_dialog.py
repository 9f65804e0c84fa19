"""Quitting while jobs this app started still run, or jobs wait in its queue.

A running child runs in its own process session with its output in a log, so it can outlive
the app; the user says whether to stop it, leave it running, or stay. The queue
(``tui.job_queue``) lives in this app's memory and is not kept: the dialog names the
queued jobs and says that they will not start, so quitting never drops one silently. The
dialog answers "stop", "leave" (with nothing running: just quit) or None (don't quit).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def queued_line(queued: list[str]) -> str:
    """What quitting does to the queue, in one sentence ('' for an empty queue)."""
    if not queued:
        return ""
    jobs = "1 queued job" if len(queued) == 1 else f"{len(queued)} queued jobs"
    return (f"{jobs} will not start: {'; '.join(queued)} (the queue is not kept; start "
            "them again after the next start)")


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("s", "answer('stop')", "Stop it"),
        Binding("l", "answer('leave')", "Leave it running"),
        Binding("q", "answer('leave')", "Quit"),
        Binding("n,escape", "answer(None)", "Don't quit"),
    ]

    def __init__(self, runs: list[str], queued: list[str] = ()) -> None:
        super().__init__()
        self.runs = runs
        self.queued = list(queued)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quit"):
            if self.runs:
                names = ", ".join(self.runs)
                text = (f"{names} is still running in its own process.\n\n"
                        "Stop it (the records so far are kept and it can be resumed), leave it "
                        "running (the Simulate or Train screen follows it again next time; "
                        "`fairpp jobs` lists it), or stay?")
            else:
                text = "Quit fairpp?"
            if self.queued:
                text += f"\n\n{queued_line(self.queued)}."
            yield Static(text, id="quit-text")
            with Horizontal(classes="dialog-buttons"):
                if self.runs:
                    yield Button("Stop it (s)", variant="error", id="stop")
                    yield Button("Leave it running (l)", variant="primary", id="leave")
                else:
                    yield Button("Quit (q)", variant="error", id="leave")
                yield Button("Don't quit (n)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # s and l speak of a running job: with none, only q quits.
        if action == "answer" and parameters and parameters[0] == "stop" and not self.runs:
            return False
        return True

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)

"""A job's log in a modal: the last lines of the file its child's output goes to."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import RichLog, Static

from fairpp_app.jobs import supervisor

LOG_LINES = 200


class LogScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,l", "close", "Close")]

    def __init__(self, title: str, path: Path, lines: int = LOG_LINES) -> None:
        super().__init__()
        self.title_text, self.path, self.lines = title, path, lines

    def compose(self) -> ComposeResult:
        tail = supervisor.log_tail(self.path, self.lines)
        with Vertical(classes="dialog", id="job-log"):
            yield Static(f"[b]{self.title_text}[/b]: last {len(tail)} lines of {self.path} "
                         "(Esc closes)", classes="dialog-title", markup=True)
            log = RichLog(id="job-log-text", wrap=True, markup=False, highlight=False,
                          max_lines=self.lines)
            yield log

    def on_mount(self) -> None:
        log = self.query_one("#job-log-text", RichLog)
        tail = supervisor.log_tail(self.path, self.lines)
        for line in tail or ["(the log is empty)"]:
            log.write(line)
        self.text = "\n".join(tail)  # what the dialog shows, for tests and copying

    def action_close(self) -> None:
        self.dismiss(None)

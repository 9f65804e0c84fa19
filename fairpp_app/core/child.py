"""Child processes: how one is started, how its end is named, and the tests' crash switch.

This module owns the three things every child of fairpp shares, whoever starts it:
``spawn`` starts a process in its own session (closing the terminal or an SSH drop, SIGHUP,
does not reach it, and a time-out can end its whole group), ``signal_name`` names the signal
that ended one, and ``crash_point`` is the single switch tests use to make one die for real.
The supervised jobs (``jobs.supervisor``) and ``fairpp doctor`` both build on it.

``run_in_child`` runs a function in a child process, so that a native crash in it is a
result, not our end. llama.cpp, torch and mlx are native code: an illegal instruction or a
segfault in them kills the process that loaded them, with no Python exception to catch. Anything that must survive
such a fault (``fairpp doctor``, and the app when it checks an engine) runs the risky part
here: ``run_in_child("fairpp_app.jobs.doctor:probe_embedded", {...})`` starts
``python -m fairpp_app.core.child``, which calls the function with the keyword arguments and
writes its JSON-able return value to a file; the parent reads the exit status and tells a
value, a Python error, a signal (by name) and a time-out apart.

``crash_point(name)`` is the one switch with which tests make a child die for real: when
``FAIRPP_TEST_CRASH`` is ``name:SIGNAL`` (e.g. ``engine-load:SIGILL``) the process sends
itself that signal there; ``name:SIGNAL:N`` waits for the point's Nth call (e.g. the third
batch of a run, so that records were written before the fault). Production code calls it at
the points a native fault can strike.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

CRASH_ENV = "FAIRPP_TEST_CRASH"
STDERR_TAIL_LINES = 12


_calls: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die by the signal that ``$FAIRPP_TEST_CRASH`` names for this point (tests only)."""
    spec = os.environ.get(CRASH_ENV, "")
    point, _, rest = spec.partition(":")
    if not spec or point != name:
        return
    sig, _, nth = rest.partition(":")
    _calls[name] = _calls.get(name, 0) + 1
    if _calls[name] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, sig or "SIGSEGV"))


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class ChildResult:
    """How a child ended. Exactly one of ``value``, ``error``, ``signal`` or ``timed_out``
    describes it; ``stderr_tail`` holds its last stderr lines in every case."""

    value: object = None
    error: str | None = None  # a Python exception in the child: "Type: message"
    signal: str | None = None  # "SIGILL", "SIGSEGV", "SIGKILL", ...
    exit_code: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.signal is None and not self.timed_out \
            and self.exit_code == 0

    def failure(self) -> str:
        """One line saying how the child failed ('' when it did not)."""
        if self.signal:
            return f"the process died by {self.signal}"
        if self.timed_out:
            return f"no answer within {self.seconds:.0f} s"
        if self.error:
            return self.error
        if self.exit_code:
            return f"the process exited with code {self.exit_code}"
        return ""


def spawn(cmd: list[str], stdout, stderr, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in a session of its own, with no stdin and ``env`` over ours."""
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def run_in_child(target: str, kwargs: dict | None = None, timeout: float = 300.0,
                 env: dict[str, str] | None = None) -> ChildResult:
    """Call ``module:function(**kwargs)`` in a fresh Python process and report how it ended."""
    with tempfile.TemporaryDirectory(prefix="fairpp-child-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "fairpp_app.core.child", target, json.dumps(kwargs or {}), str(out)]
        started = time.monotonic()
        # Its own process group, so that a time-out or our own interruption ends whatever the
        # child started as well.
        proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, stderr = proc.communicate()
            return ChildResult(timed_out=True, seconds=time.monotonic() - started,
                               stderr_tail=_tail(stderr or b""))
        except BaseException:
            _kill_group(proc)
            raise
        result = ChildResult(exit_code=proc.returncode, seconds=time.monotonic() - started,
                             stderr_tail=_tail(stderr))
        if proc.returncode < 0:
            result.signal = signal_name(-proc.returncode)
        elif out.is_file():
            payload = json.loads(out.read_text())
            result.value = payload.get("value")
            result.error = payload.get("error")
        return result


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(stderr: bytes) -> list[str]:
    lines = stderr.decode("utf-8", "replace").splitlines()
    return lines[-STDERR_TAIL_LINES:]


def _main(argv: list[str]) -> int:
    target, kwargs, out = argv[0], json.loads(argv[1]), Path(argv[2])
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        payload = {"value": func(**kwargs)}
        code = 0
    except Exception as exc:  # reported to the parent as a value: the child's whole job
        traceback.print_exc(file=sys.stderr)
        payload = {"error": f"{type(exc).__name__}: {exc}"}
        code = 1
    out.write_text(json.dumps(payload, default=str))
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

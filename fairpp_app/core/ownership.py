"""Who is working on a run, and whether that process still lives.

A run being worked on carries its owner: pid, host and the process's start time (so a pid
reused by another program after a reboot or a crash is not taken for the owner), plus a
heartbeat the owner refreshes as records land. A run whose status says ``running`` while
its owner is gone was ended without anyone seeing how (``kill -9``, a closed terminal, a
reboot): the store marks it ``interrupted`` the next time runs are read. An owner on
another host cannot be asked directly; its run counts as gone when its heartbeat is older
than ``STALE_S``.
"""

from __future__ import annotations

import os
import socket
import time

STALE_S = 300.0


def start_token(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def me() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": start_token(pid)}


def alive(owner: dict, heartbeat: float | None) -> bool:
    """Whether the owner of a run may still be working on it."""
    if owner.get("host") != socket.gethostname():
        return heartbeat is not None and time.time() - heartbeat < STALE_S
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    start = owner.get("start")
    return start is None or start_token(pid) in (None, start)


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}"

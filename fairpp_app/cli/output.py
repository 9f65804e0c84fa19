"""What every command shares: the two consoles, the database it opens, JSON and number formats.

stdout carries data and stderr narration, so each has its own console. No ``file=`` is given:
rich then looks ``sys.stdout`` / ``sys.stderr`` up at each write, and output follows a
redirected stream (tests, the TUI) instead of the one present at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(description: str) -> Iterator:
    """A progress bar on stderr; yields ``update(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def shares(amounts: dict[str, float]) -> str:
    """Percentages of A/B/C in ``amounts`` (shares or counts), as "54/0/46"."""
    total = sum(amounts.get(k, 0.0) for k in "ABC") or 1.0
    return "/".join(f"{100 * amounts.get(k, 0.0) / total:.0f}" for k in "ABC")


def db_path(args: argparse.Namespace) -> Path:
    from fairpp_app.core.paths import default_db_path

    return Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()


def open_store(args: argparse.Namespace, writer: bool = True):
    """The store and the personas; a non-``writer`` (a launch's rank other than 0) only reads."""
    from fairpp_app.core.personas import load_personas
    from fairpp_app.store.database import Store

    store = Store(db_path(args))
    try:
        if writer:  # the user's file is read under the write lock: no older copy lands last
            return store, store.sync_personas(load_personas)
        store.refuse_writes()
        return store, load_personas()
    except BaseException:
        store.close()
        raise


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")

"""A command that started before a persona edit must not write the older definition last.

Found by ``test_writers``: a CLI reader read the user's persona file, waited for the write lock
while the Personas screen saved an edit and synced it, then wrote the definition it had read
before the edit over it. The database then said the persona was described as it no longer was.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from fairpp_app.core.personas import Persona, load_personas
from fairpp_app.core.user_personas import save_persona
from fairpp_app.store.database import Store

FAIRPP = [sys.executable, "-m", "fairpp_app.cli"]


def _description(db, number: int) -> str:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT description FROM personas WHERE number = ?",
                            [number]).fetchone()[0]
    finally:
        conn.close()


def test_a_command_waiting_for_the_lock_writes_the_edit_made_meanwhile(db_path):
    save_persona(Persona(8, "writers", "Writers", "Before the edit."))
    with Store(db_path) as store:
        store.sync_personas(load_personas)
    assert _description(db_path, 8) == "Before the edit."

    holder = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the app holds the write lock for a moment
    reader = subprocess.Popen(FAIRPP + ["--db", str(db_path), "runs", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Long enough for the command to start, read the personas file as it was, and wait
        # for the lock (an import of the CLI takes about a second here).
        time.sleep(6)
        assert reader.poll() is None, reader.communicate()
        save_persona(Persona(8, "writers", "Writers", "After the edit."),
                     replaces=8)
        holder.execute("UPDATE personas SET description = 'After the edit.' WHERE number = 8")
        holder.execute("COMMIT")  # the edit's own sync, then the lock is free
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
        holder.close()
    assert reader.returncode == 0, err
    assert _description(db_path, 8) == "After the edit."

"""Several writers on one database file at once, for real.

A supervised ``fairpp simulate`` child (embedded model) writes its records while, in the same
moments, this process does what the app does beside it (computes and stores weights on another
run; adds and edits a user persona and syncs the personas into the store) and CLI processes
read (``runs``, ``jobs``, ``metrics``; each of them also syncs the personas, as every command
does). Nothing may fail: no exit code, no exception, no "database is locked" anywhere.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from fairpp_app.core.personas import Persona, load_personas, resolve
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.core.user_personas import read_user_personas, save_persona
from fairpp_app.jobs import supervisor
from fairpp_app.jobs.run_metrics import run_weights
from fairpp_app.store.database import Store
from tests.support.tui_data import insert_synthetic_run

FAIRPP = [sys.executable, "-m", "fairpp_app.cli"]
RUN = "writers-run"
TOTAL = 10 * 7  # --limit 10, all seven personas
DEADLINE_S = 300
LOCKED = "database is locked"


def _records(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*), count(DISTINCT question_id || '|' || respondent) FROM records "
            "WHERE run_id = (SELECT id FROM runs WHERE name = ?)", [RUN]).fetchone()
    finally:
        conn.close()


class Loop(threading.Thread):
    """Calls ``step(i)`` until told to stop (after ``at_least`` steps) or the deadline passes;
    keeps the first exception."""

    def __init__(self, name: str, step, at_least: int, deadline: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.at_least, self.deadline = step, at_least, deadline
        self.done = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                if self.stop.is_set() and self.done >= self.at_least:
                    return
                self.step(self.done)
                self.done += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.mark.model
def test_a_child_writes_while_the_app_and_cli_readers_write_and_read(db_path, tmp_path):
    with Store(db_path) as store:
        synthetic, _ = insert_synthetic_run(store, n=60, name="synthetic")
    config = SimulationConfig(run=RUN, split="test", limit=10)
    job = supervisor.start("simulate", ["simulate", "--config-json", json.dumps(asdict(config))],
                           db_path)
    deadline = time.monotonic() + DEADLINE_S
    while _records(db_path)[0] == 0:  # the child has loaded its personas and its model
        assert job.running(), supervisor.log_tail(job.log(), 40)
        assert time.monotonic() < deadline, "the child wrote nothing"
        time.sleep(0.2)

    weights_made: list[tuple[str, float, int]] = []

    def weights(i: int) -> None:
        # What the Weights screen does: a Store of its own, compute, store.
        with Store(db_path) as store:
            personas = load_personas()
            target = personas[i % 7]
            alpha = 1.0 + i / 10
            result = run_weights(store, "synthetic", target, personas[:7], alpha=alpha,
                                 split="test")
        weights_made.append((target.slug, alpha, len(result.weights)))

    def personas(i: int) -> None:
        # What the Personas screen does: add a persona, or edit the last one, then sync.
        mine = read_user_personas()
        if i % 2 == 0:
            number = 8 + i // 2
            save_persona(Persona(number, f"writer-{number}", f"Writer {number}",
                                 "Writes while others write."))
        else:
            last = max(mine, key=lambda p: p.number)
            save_persona(Persona(last.number, last.slug, last.name, f"Edited {i} times."),
                         replaces=last.number)
        with Store(db_path) as store:
            store.sync_personas(load_personas())

    failures: list[str] = []

    def readers(i: int) -> None:
        args = [["runs", "--json"], ["jobs", "--json"],
                ["metrics", "--run", "synthetic", "--json"]][i % 3]
        done = subprocess.run(FAIRPP + ["--db", str(db_path), *args], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0 or LOCKED in done.stderr:
            failures.append(f"fairpp {' '.join(args)}: {done.returncode}: {done.stderr[-2000:]}")
        else:
            json.loads(done.stdout)

    loops = [Loop("weights", weights, 3, deadline), Loop("personas", personas, 4, deadline),
             Loop("readers", readers, 3, deadline)]
    for loop in loops:
        loop.start()
    end = job.wait(timeout=max(1.0, deadline - time.monotonic()))
    for loop in loops:
        loop.stop.set()
    for loop in loops:
        loop.join(timeout=max(1.0, deadline - time.monotonic() + 30))

    log = supervisor.log_path(RUN).read_text("utf-8", "replace")
    assert end.exit_code == 0 and not end.crashed, end.log_tail
    assert LOCKED not in log
    assert not [(loop.name, repr(loop.error)) for loop in loops if loop.error]
    assert not failures
    assert all(not loop.is_alive() for loop in loops)
    assert all(loop.done >= loop.at_least for loop in loops), [(lp.name, lp.done) for lp in loops]

    # The child: exactly the planned records, none twice, the run finished.
    assert _records(db_path) == (TOTAL, TOTAL)
    with Store(db_path) as store:
        assert store.get_run(RUN)["status"] == "finished"
        # Every weight set stored is there, with all its weights.
        for slug, alpha, count in weights_made:
            stored = store.load_weights(synthetic["id"], slug, alpha, 1.0, "test")
            assert stored is not None and len(stored) == count > 0, (slug, alpha)
        # Every user persona, with its last edit.
        stored = {row["number"]: row for row in store.db.query("SELECT * FROM personas")}
    for p in read_user_personas():
        assert stored[p.number]["slug"] == p.slug
        assert stored[p.number]["description"] == p.description
    assert resolve(8, load_personas()).slug == "writer-8"


_OTHER_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO events (run_id, time, kind, payload) VALUES (NULL, 0, 'x', '{}')")
conn.execute("INSERT INTO events (run_id, time, kind, payload) "
             "SELECT NULL, 0, 'x', payload FROM events LIMIT 2000")
conn.execute("COMMIT")
conn.close()
"""


def test_opening_a_store_keeps_the_locks_of_the_stores_already_open(db_path):
    """Found by the test above (1 run in 4): opening a Store read the file's header with
    open()/close() while another Store of this process was open; the close dropped the
    process's SQLite locks, so a second process closing its last connection checkpointed and
    removed the WAL under ours (SQLITE_IOERR_SHORT_READ, "database disk image is malformed",
    a false "damaged" from the integrity check)."""
    stop = time.monotonic() + 8
    errors: list[str] = []

    def opener() -> None:
        with Store(db_path) as kept:
            while time.monotonic() < stop:
                try:
                    with Store(db_path) as store:
                        store.db.execute("SELECT count(*) FROM events").fetchone()
                    kept.db.execute("SELECT count(*) FROM events").fetchone()
                except Exception as exc:  # collected for the assertion
                    errors.append(repr(exc))

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for thread in threads:
        thread.start()
    writes = 0
    while time.monotonic() < stop:
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, str(db_path)], check=True,
                       timeout=60)
        writes += 1
    for thread in threads:
        thread.join()
    assert writes > 3 and errors == [], (writes, errors[:3])


_HOLDER = """
import sys, time
from fairpp_app.store.database import Store
with Store(sys.argv[1]) as store:
    run = store.create_run("held-run", "simulation", backend="embedded")
    store.claim_run(run["id"])
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.model
def test_a_cli_run_beside_a_running_job_warns_and_still_runs(db_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        done = subprocess.run(FAIRPP + ["--db", str(db_path), "simulate", "--run", "second",
                                        "--split", "test", "--limit", "1", "--personas", "1"],
                              capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    assert f"'held-run' (pid {holder.pid})" in warnings[0]
    assert "two engine jobs" in warnings[0] and "slow both down" in warnings[0]
    with Store(db_path) as store:
        assert store.record_count(store.get_run("second")["id"]) == 1

    # Alone, it says nothing of the kind.
    again = subprocess.run(FAIRPP + ["--db", str(db_path), "simulate", "--run", "third",
                                     "--split", "test", "--limit", "1", "--personas", "1"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "warning:" not in again.stderr, again.stderr

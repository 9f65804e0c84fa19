"""The ownership rows of runs and trainings: who works on one now, its heartbeat, and what
becomes of a row whose owner has gone (see ``core/ownership.py``).

``OwnershipRows`` is a mixin of :class:`~fairpp_app.store.database.Store`, the only class meant
to use it: its methods use the Store's connection (``self.db``) and its other methods.
"""

from __future__ import annotations

import json

from fairpp_app.core.errors import UsageError
from fairpp_app.core.events import RunCrashed
from fairpp_app.store.common import _now

#: How a table's rows are named in messages.
_NOUN = {"runs": "run", "trainings": "training"}


class OwnershipRows:
    """The ownership queries of :class:`~fairpp_app.store.database.Store` (a mixin of it)."""

    # ---- ownership (see ownership.py) ------------------------------------------------------
    # Runs and trainings are owned the same way: owner JSON (pid, host, start, since) and a
    # heartbeat, one status set, and a supervisor that settles what its dead child left.

    def claim_run(self, run_id: int) -> None:
        """Make this process the owner of a run and set it ``running``; refused (UsageError)
        while another living process owns it."""
        self._claim("runs", run_id)

    def claim_training(self, training_id: int) -> None:
        """As :meth:`claim_run`, for a training."""
        self._claim("trainings", training_id)

    def _claim(self, table: str, row_id: int) -> None:
        from fairpp_app.core import ownership

        noun = _NOUN[table]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            name, status, owner, beat = self.db.execute(
                f"SELECT name, status, owner, heartbeat FROM {table} WHERE id = ?",
                [row_id]).fetchone()
            current = json.loads(owner) if owner and status == "running" else None
            mine = {**ownership.me(), "since": _now()}
            if current and current.get("pid") != mine["pid"] and ownership.alive(current, beat):
                raise UsageError(
                    f"{noun} '{name}' is being worked on by {ownership.describe(current)}; wait "
                    f"for it to end, or stop that process (kill {current.get('pid')}), then "
                    "run the same command again")
            now = _now()
            finished = ", finished_at = NULL" if table == "runs" else ""
            self.db.execute(f"UPDATE {table} SET status = 'running', owner = ?, heartbeat = ?, "
                            f"updated_at = ?{finished} WHERE id = ?",
                            [json.dumps(mine), now, now, row_id])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def live_owner(self, table: str, name: str) -> dict | None:
        """The living process working on run or training ``name`` now, None when there is none."""
        from fairpp_app.core import ownership

        row = self.db.execute(f"SELECT status, owner, heartbeat FROM {table} WHERE name = ?",
                              [name]).fetchone()
        if row is None or row[0] != "running" or not row[1]:
            return None
        owner = json.loads(row[1])
        return owner if ownership.alive(owner, row[2]) else None

    def heartbeat(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", [_now(), run_id])

    def heartbeat_training(self, training_id: int) -> None:
        self.db.execute("UPDATE trainings SET heartbeat = ? WHERE id = ?", [_now(), training_id])

    def release_run(self, run_id: int, status: str) -> None:
        """The owner's last word on a run: its status. The owner stays recorded as the last
        process that worked on the run; only a ``running`` run's owner is a live one."""
        self.set_run_status(run_id, status)

    def reap_runs(self) -> list[str]:
        """Mark ``interrupted`` every running run whose owner is gone; their names."""
        return self._reap("runs")

    def reap_trainings(self) -> list[str]:
        """Mark ``interrupted`` every running training whose owner is gone; their names."""
        return self._reap("trainings")

    def _reap(self, table: str) -> list[str]:
        from fairpp_app.core import ownership

        if self._reader:
            return []  # a reader leaves ending others' rows to a writer
        gone = []
        for row_id, name, owner, beat in self.db.execute(
                f"SELECT id, name, owner, heartbeat FROM {table} WHERE status = 'running'").fetchall():
            current = json.loads(owner) if owner else None
            if current is None or not ownership.alive(current, beat):
                gone.append(name)
                # The owner stays: a supervisor that saw its child die can still find the row.
                self.db.execute(f"UPDATE {table} SET status = 'interrupted', updated_at = ? "
                                "WHERE id = ? AND status = 'running'", [_now(), row_id])
        return gone

    def settle_run(self, run_id: int, crash: RunCrashed) -> bool:
        """A supervisor's word after the process working on a run has died: a run it left
        ``running`` (or that a reader has since marked ``interrupted``) becomes ``crashed``,
        with the how in an event. A run its process ended properly is left as it is.
        Returns whether the run was marked."""
        return self._settle("runs", run_id, crash)

    def settle_training(self, training_id: int, crash: RunCrashed) -> bool:
        """As :meth:`settle_run`, for a training (the event is on the training)."""
        return self._settle("trainings", training_id, crash)

    def _settle(self, table: str, row_id: int, crash: RunCrashed) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            changed = self.db.execute(
                f"UPDATE {table} SET status = 'crashed', updated_at = ? "
                "WHERE id = ? AND status IN ('running', 'interrupted')", [_now(), row_id]).rowcount
            if changed:
                where = {"run_id": row_id} if table == "runs" else {"training_id": row_id}
                self.add_event(crash.kind, crash.payload(), **where)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return bool(changed)

    def _owned_by(self, table: str, pid: int, host: str) -> str | None:
        row = self.db.execute(
            f"SELECT name FROM {table} WHERE json_extract(owner, '$.pid') = ? "
            "AND json_extract(owner, '$.host') = ? ORDER BY updated_at DESC, id DESC LIMIT 1",
            [pid, host]).fetchone()
        return row[0] if row else None

    def run_owned_by(self, pid: int, host: str) -> dict | None:
        """The latest run whose owner is (or, once it died, was) process ``pid`` on ``host``."""
        name = self._owned_by("runs", pid, host)
        return self.get_run(name) if name else None

    def training_owned_by(self, pid: int, host: str) -> dict | None:
        """The latest training whose owner is (or was) process ``pid`` on ``host``."""
        name = self._owned_by("trainings", pid, host)
        return self.get_training(name) if name else None

    def live_runs(self) -> list[dict]:
        """Runs a living process is working on now, each with its owner (pid, host, since),
        its records so far and its latest progress event (None before the first)."""
        self.reap_runs()
        out = []
        for run in self.db.query("""
                SELECT runs.*, (SELECT count(*) FROM records WHERE records.run_id = runs.id) AS records
                FROM runs WHERE status = 'running' AND owner IS NOT NULL ORDER BY runs.id"""):
            run["owner"] = json.loads(run["owner"])
            latest = self.db.execute(
                "SELECT payload FROM events WHERE run_id = ? AND kind = 'progress' "
                "ORDER BY id DESC LIMIT 1", [run["id"]]).fetchone()
            run["progress"] = json.loads(latest[0]) if latest else None
            out.append(run)
        return out

    def live_trainings(self) -> list[dict]:
        """Trainings a living process is working on now, each with its owner, its last step
        and its total steps (None before the first step or start event)."""
        self.reap_trainings()
        out = []
        for row in self.db.query("SELECT * FROM trainings WHERE status = 'running' "
                                 "AND owner IS NOT NULL ORDER BY id"):
            row["config"] = json.loads(row["config"] or "{}")
            row["owner"] = json.loads(row["owner"])
            step = self._latest_payload(row["id"], "train_step")
            started = self._latest_payload(row["id"], "train_started")
            row["step"] = step.get("step") if step else (started or {}).get("start_step")
            row["total"] = started.get("total_steps") if started else None
            out.append(row)
        return out

    def _latest_payload(self, training_id: int, kind: str) -> dict | None:
        latest = self.db.execute(
            "SELECT payload FROM events WHERE training_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
            [training_id, kind]).fetchone()
        return json.loads(latest[0]) if latest else None

"""The rows analyses keep and read: position sets, human reference surveys, and the answers
the consistency checks compare (``core/consistency.py``).

``AnalysisRows`` is a mixin of :class:`~fairpp_app.store.database.Store`, the only class meant
to use it: its methods use the Store's connection (``self.db``) and its other methods.
"""

from __future__ import annotations

import json
from typing import Any

from fairpp_app.core.errors import NotFoundError
from fairpp_app.core.questions import BANKS, DEFAULT_BANK, LETTERS
from fairpp_app.store.common import TWIN_FIELDS, _now, twin_sql


class AnalysisRows:
    """The position set, survey and consistency queries of
    :class:`~fairpp_app.store.database.Store` (a mixin of it)."""

    # ---- position sets -------------------------------------------------------------------

    def save_position_set(self, name: str, persona_run: str, split: str, models: list[dict],
                          params: dict) -> dict:
        """Create or replace the set ``name`` (a rerun of the same command updates it)."""
        now = _now()
        self.db.execute(
            """INSERT INTO position_sets (name, persona_run, split, models, params, created_at,
                                          updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET persona_run = excluded.persona_run,
                   split = excluded.split, models = excluded.models, params = excluded.params,
                   updated_at = excluded.updated_at""",
            [name, persona_run, split, json.dumps(models, sort_keys=True),
             json.dumps(params, sort_keys=True), now, now])
        return self.get_position_set(name)

    def list_position_sets(self) -> list[dict]:
        rows = list(self.db.query("SELECT * FROM position_sets ORDER BY id"))
        for row in rows:
            row["models"] = json.loads(row["models"])
            row["params"] = json.loads(row["params"])
        return rows

    def get_position_set(self, name: str) -> dict:
        sets = self.list_position_sets()
        for row in sets:
            if row["name"] == name:
                return row
        hint = (f"; sets here: {', '.join(r['name'] for r in sets)}" if sets
                else "; store one with `fairpp position ... --name NAME`")
        raise NotFoundError(f"no position set named '{name}'{hint}")

    # ---- human reference surveys (jobs/survey.py) -------------------------------------------

    def save_survey(self, name: str, source: str, segments: dict[str, str],
                    rows: list[dict]) -> int:
        """Store a survey under ``name``, replacing one of that name, in one transaction.

        ``segments`` maps each segment to a persona slug; each row has ``segment``,
        ``question_id`` or ``topic`` and ``dimension``, ``share_a/b/c`` and ``n``."""
        with self.transaction():
            self.db.execute("DELETE FROM surveys WHERE name = ?", [name])
            survey_id = self.db.execute(
                "INSERT INTO surveys (name, source, created_at) VALUES (?, ?, ?)",
                [name, source, _now()]).lastrowid
            self.db.conn.executemany(
                "INSERT INTO survey_segments (survey_id, segment, persona) VALUES (?, ?, ?)",
                [(survey_id, seg, persona) for seg, persona in segments.items()])
            self.db.conn.executemany(
                "INSERT INTO survey_shares (survey_id, segment, question_id, topic, dimension, "
                "share_a, share_b, share_c, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(survey_id, r["segment"], r.get("question_id"), r.get("topic"),
                  r.get("dimension"), r["share_a"], r["share_b"], r["share_c"], r["n"])
                 for r in rows])
        return survey_id

    def get_survey(self, name: str) -> dict:
        """A survey with its ``segments`` (segment -> persona slug); NotFoundError names the
        surveys there are."""
        rows = list(self.db.query("SELECT * FROM surveys WHERE name = ?", [name]))
        if not rows:
            known = [r["name"] for r in self.db.query("SELECT name FROM surveys ORDER BY id")]
            hint = (f"; surveys here: {', '.join(known)}" if known else
                    "; import one with `fairpp import survey FILE --name NAME`")
            raise NotFoundError(f"no survey named '{name}'{hint}")
        survey = rows[0]
        survey["segments"] = dict(self.db.execute(
            "SELECT segment, persona FROM survey_segments WHERE survey_id = ? ORDER BY rowid",
            [survey["id"]]).fetchall())
        return survey

    def list_surveys(self) -> list[dict]:
        """Every stored survey (``name``, ``source`` file name, ``created_at``), oldest first."""
        return list(self.db.query("SELECT name, source, created_at FROM surveys ORDER BY id"))

    def survey_shares(self, survey_id: int) -> list[dict]:
        """Every share row of a survey, in the order it was imported."""
        return list(self.db.query(
            "SELECT segment, question_id, topic, dimension, share_a, share_b, share_c, n "
            "FROM survey_shares WHERE survey_id = ? ORDER BY id", [survey_id]))

    def question_survey_shares(self, qid: str) -> list[dict]:
        """Human shares stored for one question, in every survey: the inspector shows them."""
        return list(self.db.query(
            "SELECT s.name AS survey, h.segment, g.persona, h.share_a, h.share_b, h.share_c, h.n "
            "FROM survey_shares h JOIN surveys s ON s.id = h.survey_id "
            "JOIN survey_segments g ON g.survey_id = h.survey_id AND g.segment = h.segment "
            "WHERE h.question_id = ? ORDER BY s.id, h.id", [qid]))

    # ---- answer consistency (core/consistency.py) -----------------------------------------

    def order_probabilities(self, run_id: int, split: str = "all",
                            respondents: list[str] | None = None, bank: str | None = None):
        """Records scored in both option orders, as a DataFrame: question_id, respondent,
        ``fwd`` (the order shown) and ``swap`` (A and B swapped, mapped back) per letter; on one
        bank (default: the run's own)."""
        return self._record_query(
            "r.question_id, r.respondent, r.p_a_fwd, r.p_b_fwd, r.p_c_fwd, "
            "r.p_a_swap, r.p_b_swap, r.p_c_swap", run_id, split, respondents, bank,
            " AND r.p_a_fwd IS NOT NULL AND r.p_a_swap IS NOT NULL")

    def framing_twins(self, run_id: int) -> list[tuple[str, str]]:
        """(framing 1 id, framing 2 id) of every question a run answered in both framings."""
        # Paired here rather than by a self-join: without statistics SQLite joins on the
        # least selective index (dimension), thousands of rows per question.
        sql = (f"SELECT q.id, q.framing, {', '.join('q.' + c for c in TWIN_FIELDS)} "
               "FROM questions q WHERE q.id IN (SELECT DISTINCT question_id FROM records "
               "WHERE run_id = ?) ORDER BY q.rowid")
        by_key: dict[tuple, dict[int, str]] = {}
        for qid, framing, *key in self.db.execute(sql, [run_id]):
            by_key.setdefault(tuple(key), {})[framing] = qid
        return [(pair[1], pair[2]) for pair in by_key.values() if 1 in pair and 2 in pair]

    def framing_twin(self, qid: str) -> str | None:
        """The id of the same question in its other framing, None when there is none."""
        table, same = twin_sql("q2", "q1")
        row = self.db.execute(
            f"SELECT q2.id FROM questions q1 JOIN {table} ON {same} "
            "AND q2.framing != q1.framing WHERE q1.id = ? ORDER BY q2.rowid LIMIT 1",
            [qid]).fetchone()
        return row[0] if row else None

    def wording_answers(self, run_ids: list[int], split: str = "all",
                        split_bank: str = DEFAULT_BANK) -> list[tuple]:
        """Answers to both wordings of a question, in runs ``run_ids``: ``(run id, respondent,
        official question id, side, answer)`` for every record on an official question that
        has a fairpp twin (side ``official``) or on that twin (side ``fairpp``). With a
        ``split``, only the pairs whose question in ``split_bank`` is in it (the two
        wordings may sit in different splits of their banks)."""
        if not run_ids:
            return []
        side = "f" if split_bank == DEFAULT_BANK else "o"
        args: list[Any] = [BANKS[1], *run_ids]
        sql = ("SELECT r.run_id, r.respondent, o.id, CASE WHEN r.question_id = o.id "
               "THEN 'official' ELSE 'fairpp' END, r.answer "
               "FROM questions o JOIN questions f ON f.id = o.twin_id "
               "JOIN records r ON r.question_id IN (o.id, f.id) "
               f"WHERE o.bank = ? AND r.run_id IN ({','.join('?' * len(run_ids))})")
        if split != "all":
            sql += f" AND {side}.split = ?"
            args.append(split)
        return self.db.execute(sql, args).fetchall()

    def bank_twin(self, qid: str) -> str | None:
        """The same question in the other bank: an official question's fairpp twin, or the
        first official question that words a fairpp one differently; None when there is none."""
        row = self.db.execute(
            "SELECT coalesce(q.twin_id, (SELECT o.id FROM questions o WHERE o.twin_id = q.id "
            "ORDER BY o.rowid LIMIT 1)) FROM questions q WHERE q.id = ?", [qid]).fetchone()
        return row[0] if row else None

    def question_consistency(self, run_id: int, qid: str) -> dict[str, dict]:
        """Per respondent of one question: the letter chosen in each option order (``fwd``,
        ``swap``; None when scored once), its answer to the other framing (``twin``) and to
        the question in the other bank's wording (``wording``), in the same run."""
        out: dict[str, dict] = {}
        blank = {"fwd": None, "swap": None, "twin": None, "wording": None}
        for resp, *probs in self.db.execute(
                "SELECT respondent, p_a_fwd, p_b_fwd, p_c_fwd, p_a_swap, p_b_swap, p_c_swap "
                "FROM records WHERE run_id = ? AND question_id = ?", [run_id, qid]):
            fwd, swap = probs[:3], probs[3:]
            out[resp] = {**blank, "fwd": _argmax_letter(fwd), "swap": _argmax_letter(swap)}
        for key, other in (("twin", self.framing_twin(qid)), ("wording", self.bank_twin(qid))):
            if other is None:
                continue
            for resp, answer in self.db.execute(
                    "SELECT respondent, answer FROM records WHERE run_id = ? AND question_id = ?",
                    [run_id, other]):
                out.setdefault(resp, dict(blank))[key] = answer
        return out


def _argmax_letter(probs) -> str | None:
    """The letter of the largest probability (the first on a tie, as ``OptionScores.answer``)."""
    if any(p is None for p in probs):
        return None
    return LETTERS[max(range(3), key=lambda i: probs[i])]

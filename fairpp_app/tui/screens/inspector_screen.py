"""Inspector: one question, and how every respondent of a run answered it.

Stepping (previous/next, next disagreement, next unparsed, next inconsistent answer)
follows the filter the questions screen had when the inspector opened, with keyset queries from ``browse``, so a
step costs a few indexed lookups. The tier of the question for the target persona comes
from its own records; the weight needs the tier sizes of the whole split, so it is read
from stored weights or computed once per (run, target, split) in a thread worker and
cached on the app.

Beside each answer, the "other" column shows what the same respondent chose with options A
and B swapped (runs simulated with ``--debias permute``), in the question's other framing
and, where the run holds both banks, in the other bank's wording (``off`` for the official
one, ``fpp`` for fairpp's), in red where that differs; human answer shares of imported surveys, where they
cover the question, are part of the summary.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Label, Select, Static

from fairpp_app.core.errors import FairppError
from fairpp_app.core.questions import DEFAULT_BANK, Question, dimension_poles
from fairpp_app.jobs import run_metrics
from fairpp_app.store import browse
from fairpp_app.tui.screens.base_screen import BaseScreen
from fairpp_app.tui.widgets.bars import LETTER_COLOURS, prob_bars

PROBS_WIDTH = len(prob_bars((1.0, 0.0, 0.0)).plain.rstrip())
OTHER_WIDTH = 13  # "swap B · f2 A"; a wording answer widens it


def _other(answer: str | None, seen: dict, twin_label: str, wording_label: str) -> Text:
    """What the respondent chose with A/B swapped (red when not its choice in the order shown),
    in the other framing and in the other bank's wording (red when not ``answer``)."""
    out = Text()
    for label, letter, own in (("swap", seen.get("swap"), seen.get("fwd")),
                               (twin_label, seen.get("twin"), answer),
                               (wording_label, seen.get("wording"), answer)):
        if letter is None:
            continue
        if out:
            out.append(" · ", style="dim")
        same = own is None or letter == own
        out.append(f"{label} {letter}", style="dim" if same else "bold red")
    return out or Text("-", style="dim")


class InspectorScreen(BaseScreen):
    SUB_TITLE = "Inspector"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n,right", "step(1)", "Next"),
        Binding("p,left", "step(-1)", "Previous"),
        Binding("d", "next_matching('disagree')", "Disagreement"),
        Binding("u", "next_matching('unparsed')", "Unparsed"),
        Binding("i", "next_inconsistent", "Inconsistent"),
    ]
    PALETTE = [
        ("Inspector: next question", "step(1)", "in the current filter"),
        ("Inspector: previous question", "step(-1)", "in the current filter"),
        ("Inspector: next question where personas disagree", "next_matching('disagree')", ""),
        ("Inspector: next unparsed answer", "next_matching('unparsed')", ""),
        ("Inspector: next inconsistent answer", "next_inconsistent",
         "another answer with options A/B swapped, in the other framing or wording"),
    ]

    def __init__(self, qid: str, flt: browse.QuestionFilter | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.qid = qid
        self.filter = flt or browse.QuestionFilter()
        self.question: Question | None = None
        self.records: list[dict] = []
        self.consistency: dict[str, dict] = {}
        self.run_consistency: dict[tuple[int, str], dict] = {}  # (run, respondent) -> figures
        self._consistency_pending: set[tuple[int, str]] = set()

    def compose(self) -> ComposeResult:
        app = self.app
        runs = browse.runs_with_records(app.store)
        run_names = [r["name"] for r in runs]
        if app.run_name not in run_names:
            app.run_name = run_names[0] if run_names else None
        yield Header()
        with Horizontal(id="inspector-bar"):
            yield Label("run", classes="bar-label")
            yield Select([(f"{r['name']} ({r['records']:,})", r["name"]) for r in runs],
                         value=app.run_name if app.run_name else Select.NULL,
                         prompt="no run with answers", id="insp-run", compact=True)
            yield Label("target", classes="bar-label")
            yield Select([(f"P{p.number} {p.name}", p.slug) for p in app.personas],
                         value=app.target, allow_blank=False, id="insp-target",
                         compact=True)
        with VerticalScroll(id="inspector"):
            yield Static(id="q-meta")
            yield Static(id="q-text", classes="question-text")
            yield Static(id="q-options")
            yield Static(id="q-summary")
            yield Static(id="answers")
        yield Footer()

    def on_mount(self) -> None:
        self.show(self.qid)

    # ---- drawing ---------------------------------------------------------------------------

    @property
    def run(self) -> dict | None:
        name = self.app.run_name
        return self.app.store.find_run(name) if name else None

    def show(self, qid: str) -> None:
        store = self.app.store
        try:
            q = store.get_question(qid)
        except FairppError as exc:
            self.app.show_error(exc)
            return
        self.qid, self.question = qid, q
        self.app.inspected_qid = qid
        run = self.run
        self.records = browse.question_records(store, run["id"], qid) if run else []
        self.consistency = store.question_consistency(run["id"], qid) if run else {}
        pos = browse.position(store, self.filter, qid)
        where = (f"{pos + 1:,} of {browse.count(store, self.filter):,} in {self.filter.describe()}"
                 if pos is not None else "outside the current filter")
        a_pole, b_pole = dimension_poles(q.dimension)
        self.query_one("#q-meta", Static).update(
            f"[b]{q.id}[/b]  {q.split} · {q.kind} · {where}\n"
            f"{q.topic} › {q.category} › {q.problem}\n"
            f"{q.group_type}: {q.group_name} · dimension {q.dimension} ({a_pole} vs {b_pole})"
            f" · framing {q.framing}" + (f" · from {q.parent_id}" if q.parent_id else ""))
        self.query_one("#q-text", Static).update(Text(q.text, style="bold"))
        options = Text()
        for letter, text in zip("ABC", q.options()):
            options.append(f"{letter}. ", style=f"bold {LETTER_COLOURS[letter]}")
            options.append(text + "\n")
        self.query_one("#q-options", Static).update(options)
        self._draw_summary()
        self._draw_answers()

    def on_resize(self) -> None:
        if self.question is not None:
            self._draw_answers()

    def _draw_answers(self) -> None:
        # A Rich table in a Static: one render per step, where a DataTable renders cell by cell.
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
        # The figures keep their width; the names and the detail share what is left of the
        # screen (Rich would shrink every column alike, figures included).
        # The "other" column only where a respondent has another answer to show.
        other = any(v["swap"] or v["twin"] or v["wording"] for v in self.consistency.values())
        other_w = OTHER_WIDTH + 6 * any(v["wording"] for v in self.consistency.values())
        rest = max(30, (self.size.width or 120) - 4 - PROBS_WIDTH - 3 - 5 - 10
                   - (other_w + 1 if other else 0))
        who_w = max(12, min(30, rest // 2))
        table.add_column("respondent", no_wrap=True, overflow="ellipsis", width=who_w)
        table.add_column("ans", no_wrap=True)
        table.add_column("P(A)     P(B)     P(C)", no_wrap=True)
        table.add_column("ms", justify="right", no_wrap=True)
        if other:
            table.add_column("other", no_wrap=True, width=other_w)
        table.add_column("chosen option · raw text", overflow="ellipsis", no_wrap=True,
                         width=rest - who_w)
        options = dict(zip("ABC", self.question.options()))
        twin = f"f{3 - self.question.framing}"
        wording = "off" if self.question.bank == DEFAULT_BANK else "fpp"  # the other bank
        for r in self.records:
            if r["respondent_kind"] == "persona" and r["number"] is not None:
                who = Text(f"P{r['number']} {r['name']}")
            else:
                who = Text(f"model: {r['respondent']}", style="italic")
            if r["answer"] is None:
                answer = Text("??", style="bold red")
            else:
                answer = Text(r["answer"], style=f"bold {LETTER_COLOURS[r['answer']]}")
            probs = (prob_bars((r["p_a"], r["p_b"], r["p_c"])) if r["p_a"] is not None
                     else Text("-", style="dim"))
            latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
            raw = " ".join((r["raw_text"] or "").split())[:120]
            if r["answer"] is None:
                detail = Text("unparsed: ", style="bold red") + Text(raw, style="red")
            else:
                detail = Text(options[r["answer"]])
                if raw:
                    detail.append(f" · {raw}", style="dim")
            seen = ((_other(r["answer"], self.consistency.get(r["respondent"], {}), twin, wording),)
                    if other else ())
            table.add_row(who, answer, probs, latency, *seen, detail)
        self.query_one("#answers", Static).update(table if self.records else "")

    def _draw_summary(self) -> None:
        app = self.app
        run = self.run
        summary = Table.grid(padding=(0, 2))
        if run is None:
            self.query_one("#q-summary", Static).update(
                "No run with answers yet: simulate (4) or import one, then come back.")
            return
        if not self.records:
            self.query_one("#q-summary", Static).update(
                f"Run {run['name']} has no answers for this question; d jumps to the next "
                "question where the personas disagree.")
            return
        majority, tally = browse.majority(self.records)
        unparsed = sum(r["answer"] is None for r in self.records)
        models = [r for r in self.records if r["respondent_kind"] != "persona"]
        maj = Text("majority ")
        maj.append(majority or "tie / none", style="bold")
        maj.append("   " + "  ".join(f"{k}:{v}" for k, v in tally.items()))
        if unparsed:
            maj.append(f"   {unparsed} unparsed", style="bold red")
        target = app.target
        tier = browse.question_tier(self.records, target)
        q = self.question
        weights = app.weight_cache.get((run["id"], target, q.bank, q.split))
        if tier is None:
            tw = Text(f"target {target}: no parsed answer here, so no tier or weight")
        elif weights is None:
            tw = Text(f"target {target}: tier {tier}, weight computing…")
            self.load_weights(run["id"], run["name"], target, q.bank, q.split)
        else:
            by_q, source = weights
            w = by_q.get(self.qid)
            tw = Text(f"target {target}: tier {tier}, weight "
                      + (f"{w[1]:.6f} ({source}, split {q.split}"
                         + (f" of the {q.bank} bank" if q.bank != DEFAULT_BANK else "") + ")"
                         if w else "-"))
        summary.add_row(maj)
        summary.add_row(tw)
        summary.add_row(self._target_consistency(run, target))
        for h in self.app.store.question_survey_shares(self.qid):
            summary.add_row(Text(f"humans, survey {h['survey']}: {h['segment']} ({h['persona']}) "
                                 f"A {h['share_a']:.0%} B {h['share_b']:.0%} C {h['share_c']:.0%}"
                                 f" of {h['n']:,}"))
        summary.add_row(Text(f"run {run['name']}: {len(self.records) - len(models)} persona and "
                             f"{len(models)} model answers", style="dim"))
        self.query_one("#q-summary", Static).update(summary)

    def _target_consistency(self, run: dict, target: str) -> Text:
        key = (run["id"], target)
        figures = self.run_consistency.get(key)
        if figures is None:
            if key not in self._consistency_pending:
                self._consistency_pending.add(key)
                self.load_consistency(run["id"], run["name"], target)
            return Text(f"target {target} in this run: consistency computing…", style="dim")
        order, framing = figures["consistency"]["order"], figures["consistency"]["framing"]
        uniform = figures["uniform_distance"]["shares"]
        parts = [f"order kept {order['share']:.2f} of {order['questions']:,}" if order
                 else "order: scored in one order",
                 f"framing same {framing['share']:.2f} of {framing['pairs']:,} pairs" if framing
                 else "framing: no pair"]
        wording = figures["consistency"].get("wording")
        if wording:  # only a run that holds both banks has wording pairs
            parts.append(f"wording same {wording['share']:.2f} of {wording['pairs']:,} pairs")
        parts.append("JS from uniform " + ("-" if uniform is None else f"{uniform:.3f}"))
        return Text(f"target {target} in this run: " + " · ".join(parts) + " (i: next inconsistent)")

    @work(thread=True, exit_on_error=False, group="consistency")
    def load_consistency(self, run_id: int, run_name: str, respondent: str) -> None:
        from fairpp_app.store.database import Store

        key = (run_id, respondent)
        try:  # a failure goes to the app's worker handler; the key is free to retry
            with Store(self.app.db_path) as store:
                self.run_consistency[key] = run_metrics.respondent_consistency(
                    store, run_name, respondent)
        finally:
            self._consistency_pending.discard(key)
        self.app.call_from_thread(self._draw_summary)

    # Not exclusive: each (run, target, bank, split) is loaded once, and asking for another
    # one must not cancel a load under way (its result fills the app's cache).
    @work(thread=True, exit_on_error=False, group="weights")
    def load_weights(self, run_id: int, run_name: str, target: str, bank: str,
                     split: str) -> None:
        from fairpp_app.store.database import Store

        key = (run_id, target, bank, split)
        if key in self.app.weight_cache or key in self.app.weight_pending:
            return
        self.app.weight_pending.add(key)
        try:  # a failure goes to the app's worker handler; the key is free to retry
            with Store(self.app.db_path) as store:
                slugs = [p.slug for p in self.app.personas]
                result = run_metrics.split_weights(store, run_id, run_name, target, split, slugs,
                                                   bank=bank)
            self.app.weight_cache[key] = result
        finally:
            self.app.weight_pending.discard(key)
        self.app.call_from_thread(self._draw_summary)

    # ---- events and actions ------------------------------------------------------------------

    @on(Select.Changed, "#insp-run")
    def _run_changed(self, event: Select.Changed) -> None:
        name = None if event.value is Select.NULL else event.value
        if name != self.app.run_name:
            self.app.run_name = name
            self.show(self.qid)

    @on(Select.Changed, "#insp-target")
    def _target_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.app.target:
            self.app.target = event.value
            self._draw_summary()

    def action_step(self, step: int) -> None:
        qid = browse.neighbour(self.app.store, self.filter, self.qid, step)
        if qid is None:
            self.notify("first question of this filter" if step < 0
                        else "last question of this filter")
            return
        self.show(qid)

    def action_next_inconsistent(self) -> None:
        run = self.run
        if run is None:
            self.notify("choose a run first", severity="warning")
            return
        qid = browse.next_inconsistent(self.app.store, self.filter, self.qid, run["id"])
        if qid is None:
            self.notify("no further answer that changes with the option order, the framing "
                        "or the wording",
                        title=run["name"])
            return
        self.show(qid)

    def action_next_matching(self, what: str) -> None:
        run = self.run
        if run is None:
            self.notify("choose a run first", severity="warning")
            return
        qid = browse.next_matching(self.app.store, self.filter, self.qid, run["id"], what)
        if qid is None:
            self.notify("no further question where the personas disagree" if what == "disagree"
                        else "no further unparsed answer", title=run["name"])
            return
        self.show(qid)

"""Analysis: the Reference view (a run against an imported generated survey) and the
Consistency view (a run whose personas answer both framings of each question), with
their CSV and figure exports, on real database files."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
from textual.widgets import Select, TabbedContent

from fairpp_app.core import metrics
from fairpp_app.core.personas import builtin_personas
from fairpp_app.jobs.positioning import Pick, exports_dir
from fairpp_app.jobs.survey import compare, import_survey
from fairpp_app.tui.screens.analysis_screen import AnalysisScreen
from fairpp_app.tui.widgets.reference_view import ReferenceView
from tests.support.tui_data import MODEL, RUN, SIZE, insert_synthetic_run, plain, until

pytestmark = pytest.mark.asyncio

COLUMNS = ("segment", "persona", "question_id", "share_a", "share_b", "share_c", "n")
SEGMENTS = (("Loyal Nationals", "5"), ("Progressive Activists", "1"))


def _survey_file(path, questions, seed: int = 3):
    """Two segments over the questions, with seeded shares and sample sizes."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for segment, persona in SEGMENTS:
            for q in questions:
                a, b = np.round(rng.dirichlet([2.0, 2.0, 1.0])[:2], 3)
                writer.writerow([segment, persona, q.id, a, b, round(1 - a - b, 3),
                                 int(rng.integers(20, 400))])
    return path


def answer_ids(store) -> list[str]:
    frame = store.record_frame(store.get_run(RUN)["id"])
    return list(dict.fromkeys(frame["question_id"]))


@pytest.fixture
def surveyed(store, tmp_path):
    _, questions = insert_synthetic_run(store, n=40)
    import_survey(store, _survey_file(tmp_path / "bsa.csv", questions[:25]), "bsa",
                  builtin_personas())
    return store


async def _show(app, pilot, view: str) -> AnalysisScreen:
    await pilot.press("5")
    await until(pilot, lambda: isinstance(app.screen, AnalysisScreen) and app.screen.result,
                "the analysis of the run")
    screen = app.screen
    screen.query_one(TabbedContent).active = view
    await until(pilot, lambda: screen.side_result(view) is not None, f"the {view} view")
    return screen


async def test_reference_view_shows_every_segment_with_intervals(surveyed, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _show(app, pilot, "reference")
        assert screen.query_one("#an-survey", Select).value == "bsa"
        expected = compare(surveyed, RUN, "bsa", builtin_personas())
        assert screen.side_result("reference") == expected  # fixed seed: the same draws
        text = plain(screen.query_one("#ref-body"))
        for segment, number in SEGMENTS:
            persona = builtin_personas()[int(number) - 1]
            assert f"{segment} → P{number} {persona.name}" in text
            own = expected["comparison"][persona.slug][segment]
            lo, hi = own["similarity_ci"]
            # The segment's persona is marked and its similarity shown with its interval.
            assert f"* P{number} {persona.name}" in text
            assert f"{own['similarity']:.3f} [{lo:.3f}, {hi:.3f}]" in text
        model = expected["comparison"][MODEL]["Loyal Nationals"]
        lo, hi = model["match_ci"]
        assert f"{model['match']:.3f} [{lo:.3f}, {hi:.3f}]" in text

        await pilot.press("s")
        path = exports_dir() / f"{RUN}-all-reference-bsa.csv"
        await until(pilot, path.exists, "the reference CSV")
        rows = list(csv.DictReader(path.open()))
        assert len(rows) == len(SEGMENTS) * len(expected["respondents"])
        row = next(r for r in rows if r["respondent"] == MODEL and r["segment"] == "Loyal Nationals")
        assert float(row["match_lo"]) == pytest.approx(lo) and float(row["match"]) == pytest.approx(
            model["match"])
        await pilot.press("f")
        svg = exports_dir() / f"{RUN}-all-reference-bsa-figure.svg"
        png = svg.with_suffix(".png")
        await until(pilot, lambda: svg.exists() and png.exists(), "the reference figure")
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert "Progressive Activists" in svg.read_text()
        await pilot.press("v")
        shot = exports_dir() / f"{RUN}-all-reference-bsa.svg"
        await until(pilot, shot.exists, "the screenshot")
        assert "Loyal" in shot.read_text()

        # A model placed beside from another run joins the other views, not this one.
        other = surveyed.create_run("other", "simulation", model="m2", status="finished")
        surveyed.upsert_records([{"run_id": other["id"], "question_id": q, "respondent": "m2",
                                  "answer": "A", "method": "text"}
                                 for q in list(answer_ids(surveyed))[:10]])
        screen.picks = [Pick("other")]
        screen.action_compute()
        await until(pilot, lambda: "m2" in screen.result.respondents, "the model beside")
        await until(pilot, lambda: screen.side_result("reference") is not None, "the comparison")
        assert "m2" not in screen.side_result("reference")["respondents"]
        assert "models placed beside from other runs are not compared here" in plain(
            screen.query_one("#ref-body"))


async def test_reference_view_without_a_survey_says_how_to_import_one(store, make_app):
    insert_synthetic_run(store, n=20)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, AnalysisScreen) and app.screen.result,
                    "the analysis of the run")
        screen = app.screen
        screen.query_one(TabbedContent).active = "reference"
        await pilot.pause()
        assert not screen.query_one("#ref-bar").display  # no selector without a survey
        assert "fairpp import survey FILE" in plain(screen.query_one("#ref-body"))
        await pilot.press("s")
        await until(pilot, lambda: any("nothing computed" in n.message
                                       for n in app._notifications), "the warning")


def _framing_run(store, n_pairs: int = 24, seed: int = 5):
    """Three personas answer both framings of ``n_pairs`` questions; each persona keeps its
    framing-1 letter with its own probability, so the three consistencies differ. The first
    persona was also scored in both option orders (seeded probabilities, one order copied
    onto the other for a third of the questions)."""
    rng = random.Random(seed)
    draws = np.random.default_rng(seed)
    personas = builtin_personas()[:3]
    store.sync_personas(builtin_personas())
    run = store.create_run("framings", "simulation", mode="text", status="finished")
    questions = store.questions("all", limit=2 * n_pairs)
    keep = {p.slug: k for p, k in zip(personas, (0.9, 0.6, 0.3))}
    rows, letters = [], {}
    for q in questions:
        for p in personas:
            first = letters.get((p.slug, q.problem, q.group_name, q.dimension))
            if first is not None and rng.random() < keep[p.slug]:
                letter = first
            else:
                letter = rng.choice("ABC")
            letters.setdefault((p.slug, q.problem, q.group_name, q.dimension), letter)
            row = {"run_id": run["id"], "question_id": q.id, "respondent": p.slug,
                   "answer": letter, "raw_text": letter, "method": "text"}
            if p is personas[0]:
                fwd, swap = draws.dirichlet(np.ones(3), size=2)
                swap = fwd if rng.random() < 1 / 3 else swap
                row.update({f"p_{x}_{order}": float(v) for order, probs in (("fwd", fwd), ("swap", swap))
                            for x, v in zip("abc", probs)})
            rows.append(row)
    store.upsert_records(rows)
    return questions, personas, rows


async def test_consistency_view_shows_the_framing_shares(store, make_app):
    questions, personas, rows = _framing_run(store)
    # Computed here from the answers: pairs are the two framings of one problem, group
    # and dimension (the bank lists them side by side).
    answer = {(r["question_id"], r["respondent"]): r["answer"] for r in rows}
    twins: dict[tuple, dict[int, str]] = {}
    for q in questions:
        twins.setdefault((q.topic, q.category, q.problem, q.group_type, q.group_name,
                          q.dimension), {})[q.framing] = q.id
    pairs = [(t[1], t[2]) for t in twins.values() if set(t) == {1, 2}]
    assert len(pairs) == 24
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _show(app, pilot, "consistency")
        assert screen.side_result("consistency")["run"] == "framings"
        text = plain(screen.query_one("#cons-body"))
        assert "framing: share of framing 1/framing 2 pairs" in text
        first = personas[0].slug
        mine = [r for r in rows if r["respondent"] == first]
        order = np.mean([np.argmax([r[f"p_{x}_fwd"] for x in "abc"])
                         == np.argmax([r[f"p_{x}_swap"] for x in "abc"]) for r in mine])
        assert f"{order:.3f}" in next(line for line in text.splitlines()
                                      if line.strip().startswith("P1 "))
        lines = {line.split()[1]: line for line in text.splitlines()
                 if line.strip().startswith("P") and line.split()[0][1:].isdigit()}
        shares = {}
        for p in personas:
            kept = [answer[(a, p.slug)] == answer[(b, p.slug)] for a, b in pairs]
            flips = [{answer[(a, p.slug)], answer[(b, p.slug)]} == {"A", "B"} for a, b in pairs]
            shares[p.slug] = sum(kept) / len(kept)
            counts = [sum(answer[(q.id, p.slug)] == x for q in questions) for x in "ABC"]
            uniform = 1 - metrics.js_similarity(counts, [1, 1, 1])
            line = lines[p.name.split()[0]]
            assert f"{shares[p.slug]:.3f}" in line and f"{sum(flips) / len(flips):.3f}" in line
            assert f" {len(pairs)} " in line and f"{uniform:.3f}" in line
        assert len(set(shares.values())) == 3  # the generator gave each persona its own rate

        await pilot.press("s")
        path = exports_dir() / "framings-all-consistency.csv"
        await until(pilot, path.exists, "the consistency CSV")
        got = {r["respondent"]: r for r in csv.DictReader(path.open())}
        for p in personas:
            assert float(got[p.slug]["framing_share"]) == pytest.approx(shares[p.slug])
        assert float(got[first]["order_share"]) == pytest.approx(order)
        assert int(got[first]["order_questions"]) == len(questions)
        assert got[personas[1].slug]["order_share"] == ""  # scored in one order only
        await pilot.press("f")
        svg = exports_dir() / "framings-all-consistency-figure.svg"
        await until(pilot, lambda: svg.exists() and svg.with_suffix(".png").exists(),
                    "the consistency figure")
        assert "framing" in svg.read_text()


async def test_a_survey_imported_meanwhile_joins_the_selector(surveyed, make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _show(app, pilot, "reference")
        questions = surveyed.questions("test", limit=10)
        import_survey(surveyed, _survey_file(tmp_path / "small.csv", questions, seed=8), "small",
                      builtin_personas())
        await pilot.press("1")
        await pilot.press("5")  # back on the same screen: it lists the surveys again
        select = screen.query_one("#an-survey", Select)
        await until(pilot, lambda: screen.query_one(ReferenceView).surveys == ["bsa", "small"],
                    "the second survey offered")
        select.clear()  # the blank choice: nothing compared, and the view says so
        await until(pilot, lambda: "Pick a survey above" in plain(screen.query_one("#ref-body")),
                    "the hint")
        assert screen.side_result("reference") is None
        select.value = "small"
        await until(pilot, lambda: (screen.side_result("reference") or {}).get("survey") == "small",
                    "the comparison with the second survey")
        segment = screen.side_result("reference")["segments"][0]
        assert segment["items"] == 10
        assert "10 items" in plain(screen.query_one("#ref-body"))


async def test_a_failing_side_view_says_so_in_the_view(surveyed, make_app, monkeypatch):
    """An unexpected error in the comparison (a bug cannot be produced on purpose, hence the
    patch) goes through the app's one handler: notified, written in the view, and the
    other views go on."""
    import fairpp_app.jobs.survey as survey

    def broken(*args, **kwargs):
        raise RuntimeError("draws went wrong")

    monkeypatch.setattr(survey, "compare", broken)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, AnalysisScreen) and app.screen.result,
                    "the analysis of the run")
        screen = app.screen
        screen.query_one(TabbedContent).active = "reference"
        message = "unexpected error (RuntimeError): draws went wrong"
        await until(pilot, lambda: message in plain(screen.query_one("#ref-body")),
                    "the error in the view")
        assert any(n.severity == "error" and message in n.message for n in app._notifications)
        assert screen.side_pending == {} and screen.result is not None
        screen.query_one(TabbedContent).active = "consistency"
        await until(pilot, lambda: screen.side_result("consistency") is not None,
                    "the consistency view still computes")
        assert "no record of this run was scored in both option orders" in plain(
            screen.query_one("#cons-body"))

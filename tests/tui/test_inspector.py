"""Inspector: stepping through a filter, to disagreements and to unparsed answers."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from fairpp_app.jobs import run_metrics
from fairpp_app.store import browse
from fairpp_app.tui.screens.inspector_screen import InspectorScreen
from tests.support.tui_data import MODEL, RUN, SIZE, plain, until, wait_for_workers

pytestmark = pytest.mark.asyncio
TEST_SPLIT = browse.QuestionFilter(split="test")


async def _inspect(app, pilot, qid: str) -> InspectorScreen:
    await app.push_screen(InspectorScreen(qid, TEST_SPLIT))
    await pilot.pause()
    return app.screen


async def test_steps_through_the_filter(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[0].id)
        assert app.run_name == RUN
        await pilot.press("n")
        assert screen.qid == qs[1].id
        await pilot.press("n", "n")
        assert screen.qid == qs[3].id
        await pilot.press("p")
        assert screen.qid == qs[2].id
        await pilot.press("p", "p", "p")  # past the first question: stays, says so
        assert screen.qid == qs[0].id
        assert any("first question" in n.message for n in app._notifications)
        assert "1 of 5,669" in plain(screen.query_one("#q-meta", Static))


async def test_next_disagreement_and_next_unparsed(synthetic, make_app):
    _, _, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[0].id)
        await pilot.press("d")
        assert screen.qid == qs[2].id  # 0, 1 agree; 2 has one dissenter
        await pilot.press("d")
        assert screen.qid == qs[5].id  # 4 agrees apart from an unparsed answer
        await pilot.press("p", "p", "p", "p", "p")
        await pilot.press("u")
        assert screen.qid == qs[4].id


async def test_answers_majority_tier_and_weight(synthetic, make_app):
    store, run, qs = synthetic
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[2].id)
        await wait_for_workers(app)  # the split's weights are computed once
        await pilot.pause()
        assert len(screen.records) == 8  # seven personas and the model
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        battlers = next(line for line in lines if "P3 Disengaged Battlers" in line)
        assert battlers.split()[3] == "B"
        assert any(f"model: {MODEL}" in line for line in lines)
        summary = plain(screen.query_one("#q-summary", Static))
        assert "majority A" in summary
        # Target 6 answered A; one other persona (3) answered B: tier 2.
        weights, source = run_metrics.split_weights(store, run["id"], RUN,
                                               "disengaged-traditionalists", "test",
                                               [p.slug for p in app.personas])
        assert source == "computed" and weights[qs[2].id][0] == 2
        assert f"tier 2, weight {weights[qs[2].id][1]:.6f} (computed" in summary

        await pilot.press("n", "n")  # question 4: the target's answer is unparsed
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        target = next(line for line in lines if "P6 Disengaged Traditionalists" in line)
        assert "??" in target and "unparsed: I would rather not say" in target
        summary = plain(screen.query_one("#q-summary", Static))
        assert "no tier or weight" in summary and "1 unparsed" in summary


async def test_stored_weights_are_preferred(synthetic, make_app):
    from fairpp_app.core.personas import builtin_personas, resolve
    from fairpp_app.jobs.run_metrics import run_weights

    store, run, qs = synthetic
    personas = builtin_personas()
    run_weights(store, RUN, resolve("6", personas), personas, split="test")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _inspect(app, pilot, qs[2].id)
        await wait_for_workers(app)
        await pilot.pause()
        assert "(stored, split test)" in plain(screen.query_one("#q-summary", Static))


async def test_without_a_run_it_says_what_to_do(store, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        qid = store.questions("test", limit=1)[0].id
        screen = await _inspect(app, pilot, qid)
        assert "No run with answers yet" in plain(screen.query_one("#q-summary", Static))
        await pilot.press("d")
        assert any("choose a run" in n.message for n in app._notifications)


async def test_next_inconsistent_answer_and_the_other_column(store, make_app):
    """`i` stops where a respondent changed its answer with options A/B swapped or in the
    other framing; the "other" column shows both, and imported human shares are summarised."""
    from fairpp_app.core import metrics
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.store.database import TWIN_FIELDS

    personas = builtin_personas()
    qs = store.questions("test", limit=60)
    keys = [tuple(getattr(q, f) for f in TWIN_FIELDS) for q in qs]
    i, j = next((a, b) for a in range(len(qs)) for b in range(a + 1, len(qs))
                if keys[a] == keys[b])
    k = j + 1 + (keys[j + 1] == keys[j + 2])  # a question whose twin stays consistent
    run = store.create_run("steady", "simulation", mode="logprob", status="finished")
    steady = {"p_a": 0.6, "p_b": 0.3, "p_c": 0.1, "p_a_fwd": 0.6, "p_b_fwd": 0.3, "p_c_fwd": 0.1,
              "p_a_swap": 0.6, "p_b_swap": 0.3, "p_c_swap": 0.1}
    rows = [{"run_id": run["id"], "question_id": q.id, "respondent": p.slug, "answer": "A",
             "method": "logprob+permute", **steady} for q in qs for p in personas]
    for row in rows:
        if row["question_id"] == qs[j].id and row["respondent"] == personas[1].slug:
            row["answer"] = "B"  # framing: A in one framing, B in the other
        if row["question_id"] == qs[k].id and row["respondent"] == personas[2].slug:
            row.update(p_a_swap=0.2, p_b_swap=0.7)  # order: B wins once A and B swap
    store.upsert_records(rows)
    store.save_survey("bsa", "bsa.csv", {"Loyal Nationals": "loyal-nationals"},
                      [{"segment": "Loyal Nationals", "question_id": qs[k].id, "share_a": 0.25,
                        "share_b": 0.5, "share_c": 0.25, "n": 1200}])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.run_name = "steady"
        screen = await _inspect(app, pilot, qs[0].id)
        for expected in [n for n in (i, j, k) if n != 0]:
            await pilot.press("i")
            await until(pilot, lambda e=expected: screen.qid == qs[e].id, f"question {expected}")
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        battlers = next(line for line in lines if "P3 Disengaged Battlers" in line)
        assert "swap B" in battlers
        assert "swap A" in next(line for line in lines if "P4 Established Liberals" in line)
        await until(pilot, lambda: "order kept" in plain(screen.query_one("#q-summary", Static)),
                    "the target's consistency")
        summary = plain(screen.query_one("#q-summary", Static))
        assert "humans, survey bsa: Loyal Nationals (loyal-nationals) A 25% B 50% C 25% of 1,200" \
            in summary
        # The target persona (6) kept every answer; its pairs are the run's.
        pairs = len(store.framing_twins(run["id"]))
        onehot = metrics.distance_from_uniform([1, 0, 0])[0]
        assert (f"target {app.target} in this run: order kept 1.00 of 60 · framing same 1.00 of "
                f"{pairs} pairs · JS from uniform {onehot:.3f}") in summary, summary
        await pilot.press("i")
        await until(pilot, lambda: any("no further answer" in n.message
                                       for n in app._notifications), "the last one")
        assert screen.qid == qs[k].id
        await pilot.press("p")
        await until(pilot, lambda: screen.qid != qs[k].id, "a step back")
        screen.show(qs[j].id)
        pragmatists = next(line for line in plain(screen.query_one("#answers", Static)).splitlines()
                           if "P2 Civic Pragmatists" in line)
        assert f"f{qs[i].framing} A" in pragmatists


async def test_the_other_wording_in_a_run_holding_both_banks(store, bank, make_app, tmp_path):
    """An import run with the release's rows and a fairpp export of the same questions: the
    "other" column shows each respondent's answer in the other bank's wording, `i` stops
    where it changed, and the target's summary counts its wording pairs."""
    from fairpp_app.core.personas import builtin_personas
    from fairpp_app.jobs.importing import import_fairpp
    from tests.support.official_files import SOURCE, official_frame, pairs, row_ids, write

    personas = builtin_personas()
    questions = pairs(bank, 8, seed=70)[::2]  # framing 1 only: no framing pair to stop at
    official, _ = official_frame(questions, seed=70)
    fairpp = official.copy()  # the same answers ...
    fairpp["bank"] = "fairpp"
    column = f"{SOURCE}_role_4_answer"
    official.loc[2, column] = (official.loc[2, column] + 1) % 3  # ... but one
    import_fairpp(store, write(official, tmp_path / "o.csv"), personas, "both", split="test")
    import_fairpp(store, write(fairpp, tmp_path / "f.csv"), personas, "both")
    ids = row_ids(store, questions)
    theirs, ours = "ABC"[official.loc[2, column]], "ABC"[fairpp.loc[2, column]]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.run_name = "both"
        await app.push_screen(InspectorScreen(ids[0], browse.QuestionFilter(bank="official")))
        await pilot.pause()
        screen = app.screen
        await pilot.press("i")
        await until(pilot, lambda: screen.qid == ids[2], "the official question answered apart")
        lines = plain(screen.query_one("#answers", Static)).splitlines()
        liberals = next(line for line in lines if "P4 Established Liberals" in line)
        assert f"fpp {ours}" in liberals and liberals.split()[3] == theirs
        same = "ABC"[official.loc[2, f"{SOURCE}_role_1_answer"]]  # unchanged for persona 1
        assert f"fpp {same}" in next(line for line in lines if "P1 Progressive Activists" in line)
        await pilot.press("i")
        await until(pilot, lambda: any("no further answer" in n.message
                                       for n in app._notifications), "the last one")
        # From fairpp's side, the official wording is the other one.
        screen.show(questions[2].id)
        liberals = next(line for line in plain(screen.query_one("#answers", Static)).splitlines()
                        if "P4 Established Liberals" in line)
        assert f"off {theirs}" in liberals
        app.target = "established-liberals"
        screen._draw_summary()
        await until(pilot, lambda: "wording same" in plain(screen.query_one("#q-summary", Static)),
                    "the target's wording pairs")
        summary = plain(screen.query_one("#q-summary", Static))
        n = len(questions)
        assert f"wording same {(n - 1) / n:.2f} of {n} pairs" in summary, summary

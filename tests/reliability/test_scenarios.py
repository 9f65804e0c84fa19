"""Scenario generation: validation, storage, resume, and failures that never crash a run.

The embedded 270M base model cannot write acceptable vignettes (it repeats itself), so the
failure path is exercised for real with it; the acceptance path is checked with vignettes
written here, because no model on this machine writes good ones.
"""

from __future__ import annotations

import pytest

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.llamacpp import EmbeddedBackend
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.scenarios import build_scenario, generate_scenarios, validate
from fairpp_app.jobs.simulation import run_simulation

GOOD_A = ("Amira is 34 and works night shifts as a nurse in Bristol. She earned the hospital's "
          "first-ever merit bonus after her ward scored top marks for patient care. The manager "
          "hands her the envelope at the end of a long shift. She feels proud and a little tired.")
GOOD_B = ("Tom and Jess, both 29, share a small flat in Leeds. Their employer splits this year's "
          "bonus pool equally across all staff, whatever their results. They open the same "
          "payslip on Friday. They feel that everyone has been treated alike.")


def test_validation_rules():
    assert validate(GOOD_A) is None and validate(GOOD_B) is None
    assert "too short" in validate("He got food.")
    assert "repeats itself" in validate("He is a young man who works. " * 3 + "He is tall.")
    assert "instructions" in validate(GOOD_A + " Scene: write three to five sentences.")
    assert "too long" in validate("A sentence here. " * 80)
    with pytest.raises(ValueError):
        build_scenario(None, [GOOD_A])  # no question at all: the error path, on purpose


def test_scenarios_are_stored_linked_and_answerable(store):
    template = store.questions("test", limit=1)[0]
    scenario = build_scenario(template, [GOOD_A, GOOD_B])
    store.upsert_questions([scenario])
    stored = store.get_question(scenario.id)
    assert stored.split == "scenario" and stored.parent_id == template.id
    assert stored.option_a == GOOD_A and stored.option_c.startswith("None of these")
    out = run_simulation(store, SimulationConfig(split="scenario", personas="6"), builtin_personas())
    assert out.status == "finished" and out.done == 1


@pytest.mark.model
def test_embedded_model_failures_are_recorded_not_raised_and_resume_skips_done(store):
    templates = store.questions("test", limit=2)
    store.upsert_questions([build_scenario(templates[0], [GOOD_A, GOOD_B])])
    with EmbeddedBackend(BackendOptions()) as backend:
        out = generate_scenarios(store, backend, limit=2, attempts=1, max_tokens=48)
    assert out.status == "finished"
    assert out.skipped == 1  # the first template already had its scenario
    assert out.generated + out.failed == 1
    failed = [e for e in store.events() if e["kind"] == "scenario_failed"]
    assert len(failed) == out.failed
    for event in failed:
        assert event["payload"]["question_id"] == templates[1].id and event["payload"]["reason"]
    assert store.get_run(out.run)["status"] == "finished"

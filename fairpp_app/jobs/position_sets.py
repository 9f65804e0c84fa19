"""Several models placed among the personas of one run: the paper's Table 1.

Each model answers the questions as the bare ``model`` respondent through the ordinary
simulation (``jobs.simulation``): one run per model, named as ``fairpp simulate
--respondent model`` would name it, so an earlier run of the same model is resumed and
reused instead of asked again. The models run one after the other (two engines on the same
cores would slow both); a model that fails is a row with its error, never the end of the
others. The rows then come from one ``position_run`` over the persona run and every model
run, the same numbers the Analysis screen and ``fairpp metrics --with`` show.

A named set stores the persona run, the split and each model's label, spec and run (URLs
without credentials), so the report and the Analysis screen can take the same models later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fairpp_app.core.errors import FairppError, UsageError
from fairpp_app.core.events import Event
from fairpp_app.core.personas import Persona
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.model_specs import ModelSpec
from fairpp_app.jobs.positioning import Pick, Positioning, position_run
from fairpp_app.jobs.simulation import Estimate, estimate, run_simulation
from fairpp_app.store.database import Store


@dataclass
class ModelRow:
    """One row of Table 1: a model's similarity to every persona, or why it has none."""

    label: str
    spec: str
    run: str | None = None
    status: str = "planned"
    error: str = ""
    questions: int = 0
    similarity: dict[str, float | None] = field(default_factory=dict)
    agreement: dict[str, float | None] = field(default_factory=dict)
    closest: str | None = None
    second: str | None = None
    margin: float | None = None  # closest minus second

    @property
    def agreement_closest(self) -> float | None:
        return self.agreement.get(self.closest) if self.closest else None


def config_for(spec: ModelSpec, split: str, limit: int | None, mode: str = "logprob",
               debias: str = "none", **extra) -> SimulationConfig:
    """The simulation that asks ``spec``'s model the questions as the bare model respondent."""
    return SimulationConfig(backend=spec.backend, model=spec.model, base_url=spec.base_url,
                            respondent="model", split=split, limit=limit, mode=mode,
                            debias=debias, **extra)


def plan_estimates(store: Store, configs: list[SimulationConfig], personas: list[Persona]
                   ) -> list[Estimate]:
    """What each model's run asks for (records of an earlier run of it are then skipped)."""
    return [estimate(store, c, personas) for c in configs]


def ask_models(store: Store, specs: list[ModelSpec], configs: list[SimulationConfig],
               personas: list[Persona], listener: Callable[[ModelSpec, Event], None] | None = None,
               cancel: threading.Event | None = None) -> list[ModelRow]:
    """Run each model's simulation in turn; a failing model becomes a row with its error."""
    rows = []
    for spec, config in zip(specs, configs):
        row = ModelRow(spec.label, public_spec(spec))
        rows.append(row)
        if cancel is not None and cancel.is_set():
            row.status, row.error = "cancelled", "not started: cancelled"
            continue

        def listen(event: Event, spec: ModelSpec = spec) -> None:
            if listener is not None:
                listener(spec, event)

        try:
            outcome = run_simulation(store, config, personas, listener=listen, cancel=cancel)
        except FairppError as exc:
            row.status, row.error = "failed", str(exc)
            continue
        row.run, row.status = outcome.run, outcome.status
        if outcome.status != "finished":
            row.error = outcome.message or outcome.status
    return rows


def table_one(store: Store, persona_run: str, rows: list[ModelRow], personas: list[Persona],
              split: str) -> Positioning:
    """Fill each row that has a run with its numbers; returns the joint positioning. A row
    without a label takes its model respondent's name."""
    with_runs = [r for r in rows if r.run]
    pos = position_run(store, persona_run, personas, split,
                       picks=[Pick(r.run, r.label or None) for r in with_runs])
    if not pos.personas:
        raise UsageError(f"run '{persona_run}' has no persona answers on split '{split}'")
    for row, names in zip(with_runs, pos.picked):
        if not names:
            row.label = row.label or row.run
            row.error = row.error or f"run '{row.run}' has no answers on split '{split}'"
            continue
        name = names[0]
        row.label = row.label or name
        row.similarity = pos.similarity.get(name, {})
        row.agreement = pos.agreement.get(name, {})
        row.questions = pos.answered.get(name, 0)
        ranked = sorted(((v, p) for p, v in row.similarity.items() if v is not None), reverse=True)
        if ranked:
            row.closest = ranked[0][1]
        if len(ranked) > 1:
            row.second = ranked[1][1]
            row.margin = ranked[0][0] - ranked[1][0]
    return pos


def public_spec(spec: ModelSpec) -> str:
    """The spec as written, with any user:password@ taken out of its URL."""
    if not spec.base_url:
        return spec.text
    from fairpp_app.backends.openai_backend import public_url

    return spec.text.replace(spec.base_url, public_url(spec.base_url))


def save_set(store: Store, name: str, persona_run: str, split: str, specs: list[ModelSpec],
             rows: list[ModelRow], params: dict) -> dict:
    from fairpp_app.backends.openai_backend import public_url

    models = [{"label": s.label, "spec": r.spec, "backend": s.backend, "model": s.model,
               "base_url": public_url(s.base_url) if s.base_url else None, "run": r.run}
              for s, r in zip(specs, rows)]
    return store.save_position_set(name, persona_run, split, models, params)


def set_picks(position_set: dict) -> list[Pick]:
    """The model runs of a stored set, labelled as they were when it was made."""
    return [Pick(m["run"], m["label"]) for m in position_set["models"] if m.get("run")]

"""A trained adapter (or its base model) answering as the bare ``model`` respondent.

``fairpp evaluate --adapter NAME`` loads the base model the adapter was trained on, puts
the adapter on it, and runs it through the simulation engine like any backend, so its
answers are stored, resumable and comparable the same way: a simulation-kind run named
``eval-NAME`` whose respondent is the adapter's name. ``--base`` does the same for the
untrained model (run ``eval-base-MODEL``), which is the report's first row.

``live_similarity`` is the small version the trainer runs every ``--eval-every`` steps on
a fixed held-out subset, with the model being trained.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from fairpp_app.core import metrics
from fairpp_app.core.answers import average
from fairpp_app.core.events import Event
from fairpp_app.core.personas import Persona
from fairpp_app.core.prompts import build_prompt
from fairpp_app.store.database import Store


def eval_run_name(adapter: str) -> str:
    return f"eval-{adapter}"


def base_run_name(display: str, debias: str = "none") -> str:
    return f"eval-base-{display}" + ("" if debias == "none" else f"-{debias}")


def compare_with_personas(mine: dict[str, str | None], answers: dict[str, dict[str, str | None]],
                          personas: list[Persona], target: Persona) -> dict:
    """Similarity and agreement of one respondent's answers to each persona's, and the margin."""
    sims: dict[str, float] = {}
    agrees: dict[str, float] = {}
    for p in personas:
        theirs = {qid: by.get(p.slug) for qid, by in answers.items()}
        s = metrics.paired_similarity(mine, theirs)
        if s is None:
            continue
        sims[p.slug] = s
        a = metrics.agreement(mine, theirs)
        if a is not None:
            agrees[p.slug] = a
    others = [v for k, v in sims.items() if k != target.slug]
    margin = (sims[target.slug] - sum(others) / len(others)
              if target.slug in sims and others else None)
    return {"similarity": sims, "agreement": agrees, "margin": margin}


def live_similarity(scorer, questions, answers: dict[str, dict[str, str | None]],
                    personas: list[Persona], target: Persona, debias: str = "none") -> dict:
    """Answers of the model in ``scorer`` on ``questions`` (logprob mode, no persona), compared.

    With ``debias="permute"`` each question is also scored with A and B swapped and the two
    distributions averaged, as ``fairpp simulate --debias permute`` did for the personas.
    """
    model = scorer.model
    was_training = model.training
    model.eval()
    scorer.forget_cache()  # the weights changed since the last evaluation
    try:
        scores = scorer.score_options([build_prompt(q, None) for q in questions])
        if debias == "permute":
            swapped = scorer.score_options([build_prompt(q, None, swap_ab=True) for q in questions])
            scores = [average(s, w.swapped_ab()) for s, w in zip(scores, swapped)]
    finally:
        scorer.forget_cache()  # nor keep keys and values while training goes on
        if was_training:
            model.train()
    mine = {q.id: s.answer for q, s in zip(questions, scores)}
    return {**compare_with_personas(mine, answers, personas, target), "answers": mine}


def load_adapter(store: Store, name: str, device: str = "auto", batch_size: int = 8):
    """A ``ModelScorer`` of the finished training ``name``: its base model with the adapter on."""
    from peft import PeftModel

    from fairpp_app.backends import hf_models
    from fairpp_app.training.runner import adapter_chain, finished_adapter, read_metadata
    from fairpp_app.training.scoring import ModelScorer
    from fairpp_app.training.torch_trainer import load_base, merge_adapters

    _, folder = finished_adapter(store, name)
    meta = read_metadata(folder)
    device = hf_models.pick_device(device)
    model, tokenizer, _ = load_base(meta["base_model"], device)
    # A training started --init-from another sits on that one's merged model.
    model = merge_adapters(model, adapter_chain(store, meta.get("init_from")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft reads a deprecated property
        model = PeftModel.from_pretrained(model, str(folder)).eval()
    return ModelScorer(model, tokenizer, device, name=name, batch_size=batch_size)


def evaluate_adapter(store: Store, personas: list[Persona], name: str, *, split: str = "test",
                     limit: int | None = None, device: str = "auto", batch_size: int = 8,
                     debias: str | None = None, listener: Callable[[Event], None] | None = None,
                     cancel: threading.Event | None = None):
    """Run the adapter ``name`` as a ``model`` respondent on ``split``; returns the engine's Outcome.

    ``debias`` defaults to that of the run the adapter was trained from, so its answers are
    measured the way the personas' were.
    """
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation
    from fairpp_app.training.data import run_debias

    if debias is None:
        from_run = store.get_training(name)["from_run"]
        debias = run_debias(store, from_run) if store.find_run(from_run) else "none"
    scorer = load_adapter(store, name, device, batch_size)
    config = SimulationConfig(backend="transformers", model=name, respondent="model", split=split,
                              limit=limit, run=eval_run_name(name), mode="logprob",
                              debias=debias, batch_size=batch_size, device=scorer.device)
    return run_simulation(store, config, personas, listener=listener, cancel=cancel, backend=scorer)


def evaluate_base(store: Store, personas: list[Persona], base: str | None = None, *,
                  split: str = "test", limit: int | None = None, device: str = "auto",
                  batch_size: int = 8, debias: str = "none",
                  listener: Callable[[Event], None] | None = None,
                  cancel: threading.Event | None = None):
    """Run the untrained base model as a ``model`` respondent (the report's 'base' row)."""
    from fairpp_app.backends.hf_models import model_display_name
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation

    config = SimulationConfig(backend="transformers", model=base, respondent="model", split=split,
                              limit=limit, run=base_run_name(model_display_name(base), debias),
                              mode="logprob", debias=debias, batch_size=batch_size, device=device)
    return run_simulation(store, config, personas, listener=listener, cancel=cancel)

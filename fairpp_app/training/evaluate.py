"""A trained adapter (or its base model) answering as the bare ``model`` respondent.

``fairpp evaluate --adapter NAME`` loads the base model the adapter was trained on, puts
the adapter on it, and runs it through the simulation engine like any backend, so its
answers are stored, resumable and comparable the same way: a simulation-kind run named
``eval-NAME`` whose respondent is the adapter's name. ``--base`` does the same for the
untrained model (run ``eval-base-MODEL``), which is the report's first row.

This is the half of evaluation that loads models (torch, transformers and peft, imported
when a function runs); comparing answers with the personas' is ``compare``, which the
report and the live evaluation use without any of them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from fairpp_app.core.events import Event
from fairpp_app.core.personas import Persona
from fairpp_app.store.database import Store
from fairpp_app.training.compare import base_run_name, eval_run_name


def load_adapter(store: Store, name: str, device: str = "auto", batch_size: int = 8):
    """A ``ModelScorer`` of the finished training ``name``: its base model with the adapter on."""
    from peft import PeftModel

    from fairpp_app.backends import hf_models
    from fairpp_app.training.scoring import ModelScorer
    from fairpp_app.training.session import adapter_chain, finished_adapter, read_metadata
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
                     cancel: threading.Event | None = None, bank: str | None = None):
    """Run the adapter ``name`` as a ``model`` respondent on ``split``; returns the engine's Outcome.

    ``debias`` and ``bank`` default to those of the run the adapter was trained from, so its
    answers are measured the way, and on the questions, the personas' were.
    """
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation
    from fairpp_app.training.data import run_debias

    training = store.get_training(name)
    from_run = training["from_run"]
    if debias is None:
        debias = run_debias(store, from_run) if store.find_run(from_run) else "none"
    if bank is None:
        chosen = training["config"].get("config", {}).get("bank", "auto")
        source = store.find_run(from_run)
        bank = chosen if chosen != "auto" else store.run_bank(source["id"]) if source else "fairpp"
    scorer = load_adapter(store, name, device, batch_size)
    config = SimulationConfig(backend="transformers", model=name, respondent="model", split=split,
                              limit=limit, run=eval_run_name(name), mode="logprob",
                              debias=debias, batch_size=batch_size, device=scorer.device, bank=bank)
    return run_simulation(store, config, personas, listener=listener, cancel=cancel, backend=scorer)


def evaluate_base(store: Store, personas: list[Persona], base: str | None = None, *,
                  split: str = "test", limit: int | None = None, device: str = "auto",
                  batch_size: int = 8, debias: str = "none",
                  listener: Callable[[Event], None] | None = None,
                  cancel: threading.Event | None = None, bank: str | None = None):
    """Run the untrained base model as a ``model`` respondent (the report's 'base' row)."""
    from fairpp_app.backends.hf_models import model_display_name
    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.jobs.simulation import run_simulation

    config = SimulationConfig(backend="transformers", model=base, respondent="model", split=split,
                              limit=limit, run=base_run_name(model_display_name(base), debias),
                              mode="logprob", debias=debias, batch_size=batch_size, device=device,
                              bank=bank or "fairpp")
    return run_simulation(store, config, personas, listener=listener, cancel=cancel)

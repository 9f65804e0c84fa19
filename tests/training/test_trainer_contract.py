"""What every trainer promises, stated once and run against each: torch and MLX, on the CPU.

A training's row, events, checkpoints, adapter files and metadata must not tell which
framework trained it, and both must stop the same way: a diverged loss or an exhausted
device becomes a message naming what to change, a crash or a kill leaves a run that
``--resume`` continues at the step after its last checkpoint. Only public behaviour is
checked (outcomes, rows, events, files), so a third trainer would be one more parameter.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from fairpp_app.core.personas import resolve
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import build_training_set
from fairpp_app.training.failures import TrainingDiverged, TrainingOutOfMemory
from fairpp_app.training.methods import METHODS
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.jobs import kill_when
from tests.support.training_data import (
    N_TEST,
    PERSONA_RUN,
    SCORED_RUN,
    TARGET_SLUG,
    add_scored_run,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Trainer:
    name: str
    device: str
    framework: str | None  # what the adapter metadata says (the torch trainer says nothing)

    def config(self, tiny_dir, method: str, **kw) -> TrainingConfig:
        options = dict(method=method, from_run=PERSONA_RUN, base=str(tiny_dir),
                       name=f"{self.name}-{method}", device=self.device, batch_size=4,
                       grad_accum=2, max_steps=2, eval_every=0, save_every=50, lr=5e-3)
        options.update(kw)
        return TrainingConfig(**options)

    def run_out_of_memory(self, monkeypatch) -> None:
        """The device's own out-of-memory error, raised where training would meet it."""
        if self.name == "torch":
            import torch

            from fairpp_app.training.torch_trainer import WeightedAlignmentTrainer

            def oom(self, *a, **kw):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

            monkeypatch.setattr(WeightedAlignmentTrainer, "train", oom)
        else:
            from fairpp_app.training.mlx_trainer import MLXTrainer

            def oom(self, *a, **kw):
                raise RuntimeError("[metal::malloc] Attempting to allocate 2147483648 bytes "
                                   "which is greater than the maximum allowed buffer size")

            monkeypatch.setattr(MLXTrainer, "train_step", oom)


@pytest.fixture(params=["torch", "mlx"])
def trainer(request) -> Trainer:
    if request.param == "mlx":
        pytest.importorskip("mlx_lm")
        return Trainer("mlx", "mlx", "mlx")
    return Trainer("torch", "cpu", None)


def _events(store, name: str, after: int = 0) -> list[dict]:
    return store.events(training_id=store.get_training(name)["id"], after_id=after)


def _steps(store, name: str) -> list[dict]:
    return [e["payload"] for e in _events(store, name) if e["kind"] == "train_step"]


def _adapter_weights(adapter_path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(adapter_path) / "adapter_model.safetensors"))


# ---- a finished run ---------------------------------------------------------------------------

def test_every_method_finishes_with_the_same_row_events_and_metadata(trainer, persona_store,
                                                                     personas, tiny_dir, slugs):
    store = persona_store
    add_scored_run(store, slugs)  # the soft methods learn probabilities: the same answers, scored
    for method in METHODS.values():
        source = SCORED_RUN if method.soft else PERSONA_RUN
        outcome = run_training(store, personas, trainer.config(tiny_dir, method.name,
                                                               from_run=source))
        name = f"{trainer.name}-{method.name}"
        assert outcome.status == "finished" and outcome.step == 2
        row = store.get_training(name)
        assert row["status"] == "finished" and row["adapter_path"] == outcome.adapter_path
        meta = read_metadata(outcome.adapter_path)
        assert meta["method"] == method.name and meta["target"]["slug"] == TARGET_SLUG
        assert meta["base_model"] == str(tiny_dir)
        assert meta["data_hash"] == row["config"]["data"]["data_hash"]
        assert meta["weights"]["weighted"] == method.name.startswith("w")
        assert meta["skipped_unparsed"] == 1 and meta["questions"] == 39
        assert meta["steps"] == 2 and meta.get("framework") == trainer.framework
        assert (Path(outcome.adapter_path) / "adapter_model.safetensors").is_file()
        steps = _steps(store, name)
        assert [s["step"] for s in steps] == [1, 2]
        assert all(math.isfinite(s["loss"]) for s in steps)
        if method.preference:
            assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference
            assert steps[-1]["reward_accuracy"] is not None
        kinds = [e["kind"] for e in _events(store, name)]
        assert kinds[0] == "train_started" and kinds[-1] == "train_ended"


def test_eval_events_are_stored_with_similarity_to_every_persona(trainer, persona_store, personas,
                                                                 tiny_dir):
    events = []
    run_training(persona_store, personas,
                 trainer.config(tiny_dir, "wdpo", max_steps=4, eval_every=2, eval_limit=N_TEST,
                                grad_accum=1),
                 listener=events.append)
    stored = _events(persona_store, f"{trainer.name}-wdpo")
    evals = [e["payload"] for e in stored if e["kind"] == "train_eval"]
    assert [e["step"] for e in evals] == [0, 2, 4]
    slugs = {p.slug for p in personas}
    for e in evals:
        assert set(e["similarity"]) == slugs and set(e["agreement"]) == slugs
        others = [v for k, v in e["similarity"].items() if k != TARGET_SLUG]
        assert e["margin"] == pytest.approx(e["similarity"][TARGET_SLUG] - sum(others) / 6)
    assert evals[0]["loss"] is None and evals[1]["loss"] is not None
    kinds = [e["kind"] for e in stored]
    assert kinds[0] == "train_started" and kinds[-1] == "train_ended"
    assert [e.kind for e in events] == kinds  # the listener saw what the table holds


# ---- the loss ---------------------------------------------------------------------------------

@dataclass
class Gradients:
    """One micro-batch's LoRA gradients through a trainer's own loss, on an adapter moved off zero."""

    examples: list        # the trainer's examples: a test may change one's weight
    of_rows: object       # rows (indices into examples) -> {parameter name: gradient}
    pair: tuple[int, int]  # two weighted questions the trainer batches without padding
    atol: float


def _torch_gradients(config, data, tiny_dir, output_dir) -> Gradients:
    from types import SimpleNamespace

    import torch

    from fairpp_app.training.torch_trainer import LastTokenCollator, build_trainer, prepare_model

    model, tokenizer, _ = prepare_model(config, "cpu", str(tiny_dir))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero (policy == reference); give it values
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    session = SimpleNamespace(config=config, name=config.name, data=lambda: data)
    trainer = build_trainer(session, model, tokenizer, "cpu", output_dir=output_dir)
    dataset = trainer.train_dataset
    collate = LastTokenCollator(trainer.scorer.pad_id)

    def of_rows(rows):
        model.zero_grad()
        trainer.compute_loss(model, collate([dataset[i] for i in rows])).backward()
        return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy().copy()
                for n, p in model.named_parameters() if p.requires_grad}

    # Prompts of one length, so batching them adds no padding noise.
    by_length: dict[int, list[int]] = {}
    for i, e in enumerate(data.examples):
        if e.weight > 0:
            by_length.setdefault(len(dataset[i]["prompt_ids"]), []).append(i)
    pair = next(rows for rows in by_length.values() if len(rows) >= 2)[:2]
    return Gradients(dataset.examples, of_rows, tuple(pair), atol=1e-6)


def _mlx_gradients(config, data, tiny_dir) -> Gradients:
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map

    from fairpp_app.training.mlx_trainer import MLXTrainer, add_lora, load_backend

    backend = load_backend(str(tiny_dir))
    add_lora(backend.model, config)
    key = mx.random.key(1)  # LoRA B starts at zero (policy == reference); give it values
    backend.model.update(tree_map(lambda p: mx.random.normal(p.shape, key=key) * 0.5,
                                  backend.model.trainable_parameters()))
    trainer = MLXTrainer(backend, data.examples, config)

    def of_rows(rows):
        return {k: np.array(v) for k, v in tree_flatten(trainer.gradients(rows)[1])}

    # Prompts of different lengths run in separate passes: any two weighted questions do.
    first = next(i for i, e in enumerate(data.examples) if e.weight > 0)
    second = next(i for i, e in enumerate(data.examples) if e.weight > 0 and i > first)
    return Gradients(trainer.examples, of_rows, (first, second), atol=1e-7)


@pytest.mark.parametrize("method", ["wdpo", "wsft"])
def test_a_zero_weight_question_adds_no_gradient(trainer, method, persona_store, personas,
                                                 tiny_dir, tmp_path):
    config = trainer.config(tiny_dir, method, batch_size=4, grad_accum=1)
    data = build_training_set(persona_store, PERSONA_RUN, resolve(TARGET_SLUG, personas),
                              personas, method, save_weights=False)
    grads = (_torch_gradients(config, data, tiny_dir, tmp_path / method) if trainer.name == "torch"
             else _mlx_gradients(config, data, tiny_dir))
    zero, other = grads.pair
    grads.examples[zero] = replace(grads.examples[zero], weight=0.0)
    both, alone, only_zero = grads.of_rows([zero, other]), grads.of_rows([other]), grads.of_rows([zero])
    assert set(both) == set(alone) and all("lora" in k for k in alone)
    for k in alone:
        assert np.allclose(both[k], alone[k], rtol=1e-5, atol=grads.atol), k
    assert all(float(np.abs(g).max()) == 0.0 for g in only_zero.values())
    assert sum(float(np.abs(g).sum()) for g in alone.values()) > 0


# ---- runs that must stop with a message -------------------------------------------------------

def test_nan_loss_stops_the_run_with_a_clear_message(trainer, persona_store, personas, tiny_dir):
    """Caused for real: a learning rate of 1e30 blows the adapter up after the first step."""
    config = trainer.config(tiny_dir, "wdpo", lr=1e30, max_steps=6, batch_size=2, grad_accum=1)
    with pytest.raises(TrainingDiverged, match=r"the loss became (nan|inf|-inf) at step \d.*--lr"):
        run_training(persona_store, personas, config)
    row = persona_store.get_training(f"{trainer.name}-wdpo")
    assert row["status"] == "failed"
    ended = persona_store.events(training_id=row["id"])[-1]
    assert ended["kind"] == "train_ended" and "loss became" in ended["payload"]["message"]


def test_out_of_memory_names_the_flags_to_change(trainer, persona_store, personas, tiny_dir,
                                                 monkeypatch):
    """A device OOM (simulated: there is no GPU here) becomes advice, and the run is marked failed."""
    trainer.run_out_of_memory(monkeypatch)
    with pytest.raises(TrainingOutOfMemory,
                       match=r"--batch-size 4 and --grad-accum 2; try --batch-size 2 --grad-accum 4"):
        run_training(persona_store, personas, trainer.config(tiny_dir, "sft"))
    row = persona_store.get_training(f"{trainer.name}-sft")
    assert row["status"] == "failed"
    ended = persona_store.events(training_id=row["id"])[-1]
    assert ended["kind"] == "train_ended" and "--batch-size 2" in ended["payload"]["message"]


# ---- resuming ---------------------------------------------------------------------------------

def test_resume_after_a_crash_reaches_the_unbroken_runs_weights(trainer, persona_store, personas,
                                                                tiny_dir):
    store = persona_store
    options = dict(max_steps=4, grad_accum=1, batch_size=3, save_every=2)
    whole = run_training(store, personas, trainer.config(tiny_dir, "wdpo", name="whole", **options))

    def crash_at_3(event):
        if event.kind == "train_step" and event.step == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_training(store, personas, trainer.config(tiny_dir, "wdpo", name="broken", **options),
                     listener=crash_at_3)
    assert store.get_training("broken")["status"] == "failed"
    last = _events(store, "broken")[-1]["id"]
    resumed = run_training(store, personas, resume="broken")
    assert resumed.status == "finished" and resumed.step == 4
    after = _events(store, "broken", after=last)
    assert after[0]["kind"] == "train_started" and after[0]["payload"]["start_step"] == 2
    assert [e["payload"]["step"] for e in after if e["kind"] == "train_step"] == [3, 4]
    assert [s["loss"] for s in _steps(store, "broken")][-2:] == pytest.approx(
        [s["loss"] for s in _steps(store, "whole")][-2:], abs=1e-6)
    a, b = _adapter_weights(whole.adapter_path), _adapter_weights(resumed.adapter_path)
    assert set(a) == set(b) and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert read_metadata(resumed.adapter_path)["steps"] == 4


def _checkpoint(home: Path, name: str) -> Path | None:
    folder = home / "trainings" / name / "checkpoints"
    for ckpt in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        if (ckpt / "trainer_state.json").is_file():
            return ckpt
    return None


def test_resume_after_kill_9_continues_the_step_count(trainer, persona_store, tiny_dir, db_path,
                                                      isolated_home):
    max_steps = 16
    cmd = [sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "train",
           "--method", "wsft", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
           "--device", trainer.device, "--name", "killed", "--batch-size", "2", "--grad-accum",
           "1", "--max-steps", str(max_steps), "--save-every", "4", "--eval-every", "0",
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: _checkpoint(isolated_home, "killed") is not None, "a checkpoint", timeout=120)
    row = persona_store.get_training("killed")
    assert row["status"] == "interrupted"  # its owner vanished unseen: nobody wrote an ending
    killed_steps = [e["payload"]["step"] for e in persona_store.events(training_id=row["id"])
                    if e["kind"] == "train_step"]
    assert killed_steps and max(killed_steps) < max_steps
    last_event = persona_store.events(training_id=row["id"])[-1]["id"]

    done = subprocess.run([sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "train",
                           "--resume", "killed", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "finished" and outcome["step"] == max_steps
    after = persona_store.events(training_id=row["id"], after_id=last_event)
    started = after[0]["payload"]
    assert after[0]["kind"] == "train_started" and started["start_step"] >= 4
    assert started["start_step"] % 4 == 0 and started["start_step"] <= max(killed_steps)
    resumed_steps = [e["payload"]["step"] for e in after if e["kind"] == "train_step"]
    assert resumed_steps == list(range(started["start_step"] + 1, max_steps + 1))
    assert persona_store.get_training("killed")["status"] == "finished"
    assert read_metadata(outcome["adapter_path"])["steps"] == max_steps

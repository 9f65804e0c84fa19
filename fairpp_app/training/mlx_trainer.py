"""The MLX trainer: the registry's methods with mlx-lm's LoRA layers, for Apple silicon.

It takes the same :class:`~fairpp_app.training.session.TrainingSession` as the torch trainer,
so the row, the events, the checkpoints folder and ``fairpp_adapter.json`` look the same
whichever framework trained; only the loop is MLX's. Nothing here needs torch (mlx-lm's
tokenizer import loads transformers, which loads torch where it is installed).

The model is loaded by the mlx backend itself (:class:`MLXBackend`: the folder or GGUF
resolution, the transformers-5 config fixes, Gemma's final-logit softcap, the prompt
rendering and BOS rule), then ``mlx_lm.tuner.utils.linear_to_lora_layers`` puts LoRA on
the same projections the torch trainer targets, in every layer, with the base frozen.
Live evaluation is that backend's own ``score_options`` on the model being trained, so
the similarity it reports is what ``fairpp simulate --backend mlx`` would record; its
prompt cache is emptied before each evaluation, as the weights changed since the last.

One letter per completion, so a question's log-probs come from the last prompt position
only: the prompt minus its last token fills a KV cache and the last token is run on top
of it, which sends a single row through the output projection (mlx is lazy and the
prefix's logits feed nothing, so they are never computed) and gradients flow through the
cache. The letter token trained on is the torch trainer's (``"A"`` as the first assistant
token under a chat template, ``" A"`` after "Answer:" in plain text). Prompts of one
length in a micro-batch share a forward pass; nothing is padded, as mlx-lm's models take
no padding mask outside their batch caches.

The paper's recipe (``recipes``) scores the letter followed by EOS: each of the three
letters becomes its own row (prompt + letter), its prefix fills a cache, and the last two
positions alone reach the output projection (the letter's log-prob, then EOS's after it).
Unlike the torch trainer, the prompt runs once per letter: mlx-lm's caches are not
repeated along the batch here.

The reference of DPO is the same model with every LoRA layer's scale set to 0 (the
branch then adds exactly 0), computed once per question and kept: the base never
changes. That also holds on resume, when the adapter loaded from a checkpoint is no
longer at its zero start. (LoRA's B matrix starts at zero, so at step 1 policy and
reference are equal and the WDPO loss is exactly ln 2.)

The loss is :mod:`losses`' arithmetic with ``softplus(x) = logaddexp(0, x)``. Like the
Trainer, each micro-batch's weighted mean is averaged over the step's micro-batches,
gradients are clipped to norm 1, there is no weight decay, and the learning rate warms up
linearly over ``--warmup-steps`` and then decays linearly to 0. ``--lora-dropout`` acts
on the LoRA branch while training, as in the torch trainer. The data order is a
seeded permutation per epoch, so step N always sees the same questions and a resume
continues with the step after its checkpoint. A checkpoint (``checkpoint-N``: adapter
weights, the optimizer's state flattened with ``tree_flatten``, ``trainer_state.json``)
is written to a temporary folder and renamed, so a kill mid-save leaves no half of one.

The finished adapter is written twice: mlx-lm's layout in ``adapter/mlx``
(``mlx_lm.load(base, adapter_path=...)`` reads it) and peft's at the top of ``adapter/``,
so ``fairpp evaluate --adapter NAME`` runs it through transformers like any other
training. The peft copy is skipped (and the metadata says so) when mlx-lm names a layer
differently from the base folder's weights.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten
from mlx_lm.models import cache as cache_lib
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.utils import linear_to_lora_layers, load_adapters

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.mlx_backend import MLXBackend
from fairpp_app.core.errors import UsageError
from fairpp_app.training import checkpoints, ending, lora, losses, recipes
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import Example, by_batch
from fairpp_app.training.failures import TrainingDiverged, TrainingOutOfMemory
from fairpp_app.training.live_eval import LiveEvaluator
from fairpp_app.training.methods import method as method_of
from fairpp_app.training.schedule import learning_rate, steps_per_epoch, total_steps
from fairpp_app.training.session import TrainingOutcome, TrainingSession, base_spec

MLX_ADAPTER = "mlx"
ADAPTER_WEIGHTS = "adapters.safetensors"
OPTIMIZER_STATE = "optimizer.safetensors"
CHECKPOINT_FILES = (ADAPTER_WEIGHTS, OPTIMIZER_STATE)
MAX_GRAD_NORM = 1.0


def softplus(x):
    return mx.logaddexp(0.0, x)


# ---- model ----------------------------------------------------------------------------------

def load_backend(spec: str | None) -> MLXBackend:
    """The mlx backend around ``spec``; its model is the one to train."""
    return MLXBackend(BackendOptions(model=spec, device="auto", n_ctx=4096))


def lora_keys(model) -> list[str]:
    """Paths inside a decoder layer of the linear projections LoRA goes on."""
    keys = {name for name, module in model.layers[0].named_modules()
            if isinstance(module, (nn.Linear, nn.QuantizedLinear))
            and lora.is_target(name)}
    return sorted(keys)


def lora_parameters(config: TrainingConfig, keys: list[str]) -> dict:
    # mlx-lm multiplies the branch by ``scale``; peft by lora_alpha / r.
    return {"rank": config.lora_r, "scale": config.lora_alpha / config.lora_r,
            "dropout": config.lora_dropout, "keys": keys or None}


def add_lora(model, config: TrainingConfig) -> dict:
    """Freeze the base and put LoRA on every layer's projections; returns mlx-lm's LoRA config."""
    params = lora_parameters(config, lora_keys(model))
    model.freeze()
    mx.random.seed(config.seed)  # LoRA A's init
    linear_to_lora_layers(model, len(model.layers), params)
    return params


def merge_adapters(model, chain) -> None:
    """Fuse each MLX adapter of ``chain`` (training folders, in order) into ``model``'s weights."""
    for folder in chain:
        mlx_dir = Path(folder) / MLX_ADAPTER
        if not (mlx_dir / ADAPTER_WEIGHTS).is_file():
            raise UsageError(f"{folder} holds no MLX adapter to start from (a torch training); "
                             "start the MLX trainer from an MLX training")
        load_adapters(model, str(mlx_dir))
        fused = [(name, m.fuse()) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
        model.update_modules(tree_unflatten(fused))


def lora_layers(model) -> list[tuple[str, LoRALinear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


@contextmanager
def adapter_disabled(model):
    """The base model: every LoRA branch scaled by 0, so it adds exactly nothing."""
    layers = [m for _, m in lora_layers(model)]
    scales = [m.scale for m in layers]
    for m in layers:
        m.scale = 0.0
    try:
        yield model
    finally:
        for m, s in zip(layers, scales):
            m.scale = s


def last_logprobs(model, tokens: mx.array, softcap: float | None = None, keep: int = 1) -> mx.array:
    """Log-softmax at the last ``keep`` positions of equal-length rows ``tokens`` (B, L):
    (B, vocab) for one position, (B, keep, vocab) for more."""
    cache = cache_lib.make_prompt_cache(model)
    if tokens.shape[1] > keep:
        model(tokens[:, :-keep], cache=cache)  # fills the cache; its logits are never evaluated
    logits = model(tokens[:, -keep:], cache=cache).astype(mx.float32)
    if softcap:
        logits = mx.tanh(logits / softcap) * softcap
    logps = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return logps[:, -1] if keep == 1 else logps


def _letter_eos(model, prompts: list[list[int]], letters: mx.array, eos: int,
                softcap: float | None) -> mx.array:
    """(B, 3) log p(letter, EOS | prompt) for equal-length prompts: a row per letter."""
    n, k = letters.shape
    letter_list = letters.tolist()
    rows = mx.array([p + [letter_list[i][j]] for i, p in enumerate(prompts) for j in range(k)])
    lp = last_logprobs(model, rows, softcap, keep=2)                  # (n*k, 2, vocab)
    first = mx.take_along_axis(lp[:, 0], letters.reshape(n * k, 1), axis=1)[:, 0]
    return (first + lp[:, 1, eos]).reshape(n, k)


def letter_logprobs(model, prompts: list[list[int]], letters: mx.array,
                    softcap: float | None = None, eos: int | None = None) -> mx.array:
    """(B, 3) log-probs of each row's letter ids ``letters`` after its prompt, in order
    (each followed by ``eos`` when given)."""
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    parts, order = [], []
    for rows in groups.values():
        chosen = letters[mx.array(rows)]
        if eos is None:
            lp = last_logprobs(model, mx.array([prompts[i] for i in rows]), softcap)
            parts.append(mx.take_along_axis(lp, chosen, axis=1))
        else:
            parts.append(_letter_eos(model, [prompts[i] for i in rows], chosen, eos, softcap))
        order.extend(rows)
    out = mx.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    if order != sorted(order):
        out = out[mx.array(np.argsort(order))]
    return out


# ---- data -----------------------------------------------------------------------------------

class Batches:
    """The questions of each optimizer step: a seeded permutation per epoch, cut into steps."""

    def __init__(self, n: int, config: TrainingConfig) -> None:
        self.n = n
        self.batch_size = config.batch_size
        self.grad_accum = config.grad_accum
        self.seed = config.seed
        self.steps_per_epoch = steps_per_epoch(config, n)
        self.total = total_steps(config, n)

    def step(self, step: int) -> list[list[int]]:
        """The micro-batches (lists of example indices) of optimizer step ``step`` (1-based)."""
        epoch, k = divmod(step - 1, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n).tolist()
        per_step = self.batch_size * self.grad_accum
        chunk = order[k * per_step:(k + 1) * per_step]
        return [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]


def make_optimizer(config: TrainingConfig) -> optim.Optimizer:
    if config.optim == "rmsprop":
        return optim.RMSprop(learning_rate=config.lr)
    if config.optim == "sgd":
        return optim.SGD(learning_rate=config.lr)
    return optim.AdamW(learning_rate=config.lr, weight_decay=0.0)


# ---- the trainer ----------------------------------------------------------------------------

class MLXTrainer:
    """The loss, the reference cache and the optimizer step over one mlx-lm model with LoRA."""

    def __init__(self, backend: MLXBackend, examples: list[Example], config: TrainingConfig) -> None:
        self.backend = backend
        self.model = backend.model
        self.examples = examples
        self.config = config
        self.method = config.method
        self.spec = method_of(config.method)
        self.softcap = backend.logit_softcap
        self.letter_ids = recipes.letter_ids(backend, config.prompt_format)
        self.eos = recipes.eos_id(backend) if config.completion == "letter-eos" else None
        self.by_batch = by_batch(config.weighting)
        self._prompts: dict[int, list[int]] = {}
        self._reference: dict[int, mx.array] = {}
        self.optimizer = make_optimizer(config)
        self.step = 0
        self._loss_and_grad = nn.value_and_grad(self.model, self._loss)

    def prompts(self, rows: list[int]) -> list[list[int]]:
        for i in rows:
            if i not in self._prompts:
                ex = self.examples[i]
                self._prompts[i] = recipes.prompt_ids(self.backend, ex.prompt(), ex.question,
                                                      ex.swapped, self.config.prompt_format)
        return [self._prompts[i] for i in rows]

    def letters(self, rows: list[int]) -> mx.array:
        return mx.array([[self.letter_ids[e.chosen]] + [self.letter_ids[r] for r in e.rejected]
                         for e in (self.examples[i] for i in rows)], dtype=mx.int32)

    def weights(self, rows: list[int]) -> mx.array:
        return mx.array([self.examples[i].weight for i in rows], dtype=mx.float32)

    def soft(self, rows: list[int]) -> mx.array | None:
        """The soft methods' (B, 3) target distribution in the letter columns; None otherwise."""
        if not self.spec.soft:
            return None
        return mx.array([self.examples[i].soft_columns() for i in rows], dtype=mx.float32)

    def policy(self, rows: list[int]) -> mx.array:
        return letter_logprobs(self.model, self.prompts(rows), self.letters(rows), self.softcap,
                               self.eos)

    def reference(self, rows: list[int]) -> mx.array:
        """The base model's (B, 3) log-probs, computed once per question."""
        missing = [i for i in rows if i not in self._reference]
        if missing:
            with adapter_disabled(self.model):
                ref = mx.stop_gradient(self.policy(missing))
                mx.eval(ref)
            for i, row in zip(missing, ref):
                self._reference[i] = row
        return mx.stack([self._reference[i] for i in rows])

    def _loss(self, rows: list[int], reference: mx.array | None):
        policy = self.policy(rows)
        loss = self.spec.loss(policy, reference, self.weights(rows), self.config.dpo_beta, softplus,
                              pairs=self.config.pairs, by_batch=self.by_batch, soft=self.soft(rows))
        return loss, policy

    def loss(self, rows: list[int]) -> mx.array:
        reference = self.reference(rows) if self.spec.preference else None
        return self._loss(rows, reference)[0]

    def gradients(self, rows: list[int]) -> tuple[mx.array, dict, dict]:
        """Loss, gradients on the LoRA parameters, and the step's DPO metrics for one micro-batch."""
        reference = self.reference(rows) if self.spec.preference else None
        (loss, policy), grads = self._loss_and_grad(rows, reference)
        metrics = {}
        if reference is not None:
            # A pair's logit is its implicit reward margin (chosen reward minus rejected).
            margins = mx.concatenate([p.reshape(-1) for p in losses.pair_logits(
                policy, reference, self.config.dpo_beta, self.config.pairs)])
            metrics = {"reward_margin": margins.mean(),
                       "reward_accuracy": (margins > 0).astype(mx.float32).mean()}
        mx.eval(loss, grads, metrics)
        return loss, grads, metrics

    def train_step(self, micro_batches: list[list[int]], lr: float) -> dict:
        """One optimizer step over its micro-batches; the mean loss and metrics it logs."""
        total, logged, n = None, {"loss": 0.0}, len(micro_batches)
        for rows in micro_batches:
            loss, grads, metrics = self.gradients(rows)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged.at(value, self.step + 1, lr, self.config.lr)
            total = grads if total is None else tree_map(mx.add, total, grads)
            mx.eval(total)
            logged["loss"] += value / n
            for k, v in metrics.items():
                logged[k] = logged.get(k, 0.0) + v.item() / n
        grads = tree_map(lambda g: g / n, total)
        grads, _ = optim.clip_grad_norm(grads, MAX_GRAD_NORM)
        self.optimizer.learning_rate = lr
        self.optimizer.update(self.model, grads)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state)
        self.step += 1
        return logged

    # ---- checkpoints ------------------------------------------------------------------------

    def adapter_weights(self) -> dict[str, mx.array]:
        return dict(tree_flatten(self.model.trainable_parameters()))

    def save_checkpoint(self, folder: Path, extra: dict | None = None) -> Path:
        final = folder / f"checkpoint-{self.step}"
        tmp = folder / f".checkpoint-{self.step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        mx.save_safetensors(str(tmp / ADAPTER_WEIGHTS), self.adapter_weights())
        mx.save_safetensors(str(tmp / OPTIMIZER_STATE), dict(tree_flatten(self.optimizer.state)))
        (tmp / checkpoints.STATE_FILE).write_text(json.dumps(
            {"global_step": self.step, "framework": "mlx", **(extra or {})}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        checkpoints.prune(folder)
        return final

    def load_checkpoint(self, folder: Path) -> None:
        self.model.load_weights(list(mx.load(str(folder / ADAPTER_WEIGHTS)).items()), strict=False)
        state = mx.load(str(folder / OPTIMIZER_STATE))
        self.optimizer.state = tree_unflatten(list(state.items()))
        self.step = json.loads((folder / checkpoints.STATE_FILE).read_text())["global_step"]
        mx.eval(self.model.parameters(), self.optimizer.state)


# ---- the finished adapter -------------------------------------------------------------------

def _safetensors_names(path: Path) -> set[str]:
    names: set[str] = set()
    for file in path.glob("*.safetensors"):
        with open(file, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            names.update(k for k in json.loads(fh.read(size)) if k != "__metadata__")
    return names


def save_adapter(trainer: MLXTrainer, folder: Path, lora_config: dict, base_path: Path) -> bool:
    """mlx-lm's adapter in ``folder/mlx``, peft's in ``folder``; False when peft's is skipped."""
    config = trainer.config
    mlx_dir = folder / MLX_ADAPTER
    mlx_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(mlx_dir / ADAPTER_WEIGHTS), trainer.adapter_weights())
    (mlx_dir / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": len(trainer.model.layers),
         "lora_parameters": lora_config, "model": str(base_path)}, indent=2))
    trainer.backend.tokenizer.save_pretrained(str(folder))
    layers = lora_layers(trainer.model)
    base_names = _safetensors_names(base_path)
    if not layers or any(f"{name}.weight" not in base_names for name, _ in layers):
        return False
    tensors = {}
    for name, m in layers:
        tensors[f"base_model.model.{name}.lora_A.weight"] = m.lora_a.T.astype(mx.float32)
        tensors[f"base_model.model.{name}.lora_B.weight"] = m.lora_b.T.astype(mx.float32)
    mx.save_safetensors(str(folder / "adapter_model.safetensors"), tensors,
                        metadata={"format": "pt"})
    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in layers})
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_path),
         "r": config.lora_r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
         "target_modules": targets, "bias": "none", "fan_in_fan_out": False,
         "inference_mode": True, "init_lora_weights": True}, indent=2))
    return True


# ---- the run --------------------------------------------------------------------------------

def train_mlx(session: TrainingSession) -> TrainingOutcome:
    """Train (or resume) ``session`` with MLX; the row and the events end as the torch ones do."""
    with ending.on_failure(session):
        return _train(session)


def _train(session: TrainingSession) -> TrainingOutcome:
    config = session.config
    data = session.data()
    base = session.row["base_model"] if session.row else config.base
    backend = load_backend(base)
    merge_adapters(backend.model, session.init_chain)
    lora_config = add_lora(backend.model, config)
    device = f"mlx-{backend.describe()['device']}"
    session.open_row(base_spec(base), {"base_path": str(backend.path), "framework": "mlx"})
    trainer = MLXTrainer(backend, data.schedule(config.weighting, config.seed), config)
    resume_from = (checkpoints.last(session.checkpoint_dir, CHECKPOINT_FILES)
                   if session.resumed else None)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    batches = Batches(len(data.examples), config)
    start = trainer.step
    session.emit(session.started(device, batches.total, start))
    evaluator = LiveEvaluator(session, backend)
    evaluator.begin(start)
    backend.model.train()
    saved_at = start
    while trainer.step < batches.total and not session.cancel.is_set():
        step = trainer.step + 1
        lr = learning_rate(config, batches.total, trainer.step)
        mx.random.seed(config.seed + step)  # LoRA dropout: the same masks on a resumed run
        try:
            logged = trainer.train_step(batches.step(step), lr)
        except (RuntimeError, ValueError) as exc:
            # Metal says "Insufficient Memory" or that a buffer is too large to allocate.
            if any(w in str(exc).lower() for w in ("memory", "allocate")):
                raise TrainingOutOfMemory.on("mlx", config.batch_size, config.grad_accum) from None
            raise
        session.record_step(step, logged["loss"], learning_rate=lr,
                            reward_margin=logged.get("reward_margin"),
                            reward_accuracy=logged.get("reward_accuracy"))
        evaluator.after_step(step)
        if step % config.save_every == 0 and session.main:
            trainer.save_checkpoint(session.checkpoint_dir, {"data_hash": data.data_hash})
            saved_at = step
    step = trainer.step
    evaluator.end(step)
    if session.cancel.is_set() and step < batches.total:
        if saved_at != step and session.main:
            trainer.save_checkpoint(session.checkpoint_dir, {"data_hash": data.data_hash})
        return ending.cancelled(session, step)
    adapter = session.adapter_dir
    if session.main:
        peft = save_adapter(trainer, adapter, lora_config, backend.path)
        session.write_metadata(adapter, step, {
            "base_path": str(backend.path), "device": device, "framework": "mlx",
            "mlx_adapter": MLX_ADAPTER, "peft_adapter": peft,
            "completion": {"chat_template": backend.uses_chat_template,
                           "letter_ids": trainer.letter_ids, "eos_id": trainer.eos,
                           "prompt_format": config.prompt_format}})
    return ending.finished(session, step, str(adapter))

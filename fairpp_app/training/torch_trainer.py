"""The torch trainer: transformers' Trainer with TRL's pieces, LoRA through peft.

Every completion here is one letter, so the fast path (the default) scores a question in
ONE forward pass of its prompt: the prompts are left-padded, the model is asked for the
logits of the last position only (``logits_to_keep=1``, which runs the decoder to its
hidden states and projects just that row, through the model's own head so softcapping
and logit scaling stay right), one log-softmax over the vocabulary is taken for that
single row, and the preferred and both rejected letters are read from it. A DPO
question's two pairs therefore share one policy pass and one reference pass, where the
stock DPO trainer runs four full sequences per pair (policy and reference, chosen and
rejected). The reference is the same peft model with its adapter disabled (no second
copy), and each question's reference log-probs are kept after their first computation,
since the base never changes.

The paper's recipe (``recipes``) scores the letter followed by EOS, two tokens. Its fast
path still runs each prompt once: that pass keeps its KV cache and gives the letter's
log-prob from the last position; the cache is then repeated three times along the batch
and the three letters go through the model as one more position each, whose single row
gives log p(EOS | prompt, letter). Gradients flow through the cache. Only completion
positions are ever projected onto the vocabulary.

``--generic-path`` computes the same quantities the TRL way instead: prompt+completion
sequences right-padded by TRL's ``DataCollatorForPreference``, the full per-position
logits, per-token log-probs of the completion summed. Both feed the same weighted losses
(``losses``); tests hold them equal within 1e-4.

The weight column travels through the collators into ``compute_loss``, which applies the
method's own loss (from the registry in ``methods``); ``log`` adds the DPO reward margin
and accuracy to what the Trainer logs, which is where the ``TrainingStep`` events come
from (``callbacks``). Checkpoints are the Trainer's own (adapter, optimizer, scheduler,
RNG and trainer state) every ``--save-every`` steps, found on resume by ``checkpoints``,
so ``--resume`` continues a killed run at the step it last saved with the same data order.

Across processes (``accelerate launch --num_processes N -m fairpp_app.cli train ...``, one
per GPU, or several on the CPU with gloo) the Trainer runs DDP: ``--batch-size`` is the
global micro-batch, each rank takes its N-th of it from the same (seeded) order, and
``collectives`` makes the loss the one-process loss and rank 0 the only writer (see
``distributed``). The reference pass runs on the unwrapped model, so no rank waits on
another's cache miss.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import disable_dropout_in_model, pad, selective_log_softmax

from fairpp_app.backends import hf_models
from fairpp_app.core.errors import UsageError
from fairpp_app.training import checkpoints, collectives, distributed, ending, lora, losses, recipes
from fairpp_app.training.callbacks import CancelCallback, EventCallback, LiveEvalCallback
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import Example, by_batch
from fairpp_app.training.failures import TrainingDiverged, TrainingOutOfMemory
from fairpp_app.training.live_eval import LiveEvaluator
from fairpp_app.training.methods import method as method_of
from fairpp_app.training.schedule import total_steps
from fairpp_app.training.scoring import ModelScorer
from fairpp_app.training.session import TrainingOutcome, TrainingSession, base_spec

#: The Trainer's files in a checkpoint besides trainer_state.json.
CHECKPOINT_FILES = ("optimizer.pt", "scheduler.pt")
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# ---- model ----------------------------------------------------------------------------------

def load_base(spec: str | None, device: str):
    """(model, tokenizer, folder) for a base model spec, in the device's training dtype."""
    path = hf_models.resolve_model(spec)
    tokenizer = hf_models.load_tokenizer(path)
    model = hf_models.load_causal_lm(path, device, hf_models.default_dtype(device))
    return model, tokenizer, path


def lora_targets(model) -> list[str] | str:
    found = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and lora.is_target(name)})
    return found or "all-linear"


def add_lora(model, config: TrainingConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=lora_targets(model),
                      bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


# ---- data -----------------------------------------------------------------------------------

class QuestionDataset(Dataset):
    """One row per question: prompt ids, the letter ids (preferred first), the weight."""

    def __init__(self, examples: list[Example], scorer: ModelScorer,
                 prompt_format: str = "fairpp", fillers: int = 0) -> None:
        self.examples = examples
        self.fillers = fillers  # rows of weight 0 after the questions (``EvenEpochSampler``)
        self.scorer = scorer
        self.prompt_format = prompt_format
        self.letter_ids = recipes.letter_ids(scorer, prompt_format)
        self._ids: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples) + self.fillers

    def __getitem__(self, i: int) -> dict:
        if i >= len(self.examples):  # a filler: the first question, weighing nothing
            return {**self[0], "weight": 0.0, "index": i}
        ex = self.examples[i]
        if i not in self._ids:
            self._ids[i] = recipes.prompt_ids(self.scorer, ex.prompt(), ex.question, ex.swapped,
                                              self.prompt_format)
        letters = [self.letter_ids[ex.chosen]] + [self.letter_ids[r] for r in ex.rejected]
        row = {"prompt_ids": self._ids[i], "letter_ids": letters, "weight": ex.weight, "index": i}
        if ex.soft is not None:  # the soft methods' target distribution, in the letter columns
            row["soft"] = ex.soft_columns()
        return row


def _extras(features: list[dict]) -> dict:
    extras = {"letter_ids": torch.tensor([f["letter_ids"] for f in features], dtype=torch.long),
              "weight": torch.tensor([f["weight"] for f in features], dtype=torch.float32),
              "index": torch.tensor([f["index"] for f in features], dtype=torch.long)}
    if "soft" in features[0]:
        extras["soft"] = torch.tensor([f["soft"] for f in features], dtype=torch.float32)
    return extras


@dataclass
class LastTokenCollator:
    """Left padding, as the transformers backend batches: every row's last position is real."""

    pad_id: int
    positions: bool = True

    def __call__(self, features: list[dict]) -> dict:
        rows = [torch.tensor(f["prompt_ids"], dtype=torch.long) for f in features]
        ids = pad(rows, padding_value=self.pad_id, padding_side="left")
        mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left")
        batch = {"input_ids": ids, "attention_mask": mask, **_extras(features)}
        if self.positions:
            batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return batch


@dataclass
class PairSequenceCollator:
    """TRL's preference layout: per pair, prompt+chosen and prompt+rejected, right-padded."""

    pad_id: int
    eos_id: int | None = None  # appended to every completion (the paper's letter + EOS)

    def __call__(self, features: list[dict]) -> dict:
        tail = [] if self.eos_id is None else [self.eos_id]
        pairs = [{"prompt_ids": f["prompt_ids"], "chosen_ids": [f["letter_ids"][0]] + tail,
                  "rejected_ids": [f["letter_ids"][k]] + tail}
                 for f in features for k in (1, 2)]
        batch = DataCollatorForPreference(pad_token_id=self.pad_id)(pairs)
        return {**batch, **_extras(features)}


# ---- log-probabilities -----------------------------------------------------------------------

def last_token_logprobs(model, batch: dict, keeps_logits: bool = True) -> torch.Tensor:
    """(B, 3) log-probs of the letters in ``letter_ids`` after each prompt, one pass, one row each."""
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "use_cache": False}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    if keeps_logits:
        kwargs["logits_to_keep"] = 1
    logits = model(**kwargs).logits[:, -1, :].float()
    return torch.log_softmax(logits, dim=-1).gather(1, batch["letter_ids"])


def letter_eos_logprobs(model, batch: dict, eos_id: int, cache_arg: str,
                        keeps_logits: bool = True) -> torch.Tensor:
    """(B, 3) log p(letter, EOS | prompt) for each letter: one prompt pass, one token per letter."""
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "use_cache": True}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    if keeps_logits:
        kwargs["logits_to_keep"] = 1
    out = model(**kwargs)
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).gather(1, batch["letter_ids"])
    cache = getattr(out, "cache", None) or out.past_key_values
    n, k = batch["letter_ids"].shape
    cache.batch_repeat_interleave(k)
    mask = batch["attention_mask"].repeat_interleave(k, dim=0)
    step = {"input_ids": batch["letter_ids"].reshape(n * k, 1),
            "attention_mask": torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1),
            "use_cache": True, cache_arg: cache}
    if "position_ids" in batch:
        step["position_ids"] = mask.sum(-1, keepdim=True)  # the position after the last real token
    logits = model(**step).logits[:, -1, :].float()
    second = torch.log_softmax(logits, dim=-1)[:, eos_id].view(n, k)
    return first + second


def sequence_logprobs(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
    """Sum of the completion tokens' log-probs per sequence, from the full logits (TRL's way)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    per_token = selective_log_softmax(logits[:, :-1].float(), input_ids[:, 1:])
    return (per_token * completion_mask[:, 1:]).sum(-1)


def pair_sequence_logprobs(model, batch: dict, chosen_only: bool = False) -> torch.Tensor:
    """(B, 3) like ``last_token_logprobs``, from TRL-layout sequences (rows: 2B chosen, 2B rejected)."""
    n = batch["weight"].shape[0]
    rows = slice(0, 2 * n) if chosen_only else slice(None)
    logps = sequence_logprobs(model, batch["input_ids"][rows], batch["attention_mask"][rows],
                              batch["completion_mask"][rows])
    chosen = logps[: 2 * n].view(n, 2)[:, :1]
    if chosen_only:
        return torch.cat([chosen, torch.zeros(n, 2, device=chosen.device)], dim=1)
    return torch.cat([chosen, logps[2 * n:].view(n, 2)], dim=1)


# ---- trainer --------------------------------------------------------------------------------

class WeightedAlignmentTrainer(Trainer):
    """Trainer whose loss is the paper's weighted SFT / DPO over one-letter completions."""

    def __init__(self, *args, method: str, dpo_beta: float, scorer: ModelScorer,
                 generic: bool = False, pairs: int = 2, by_batch: bool = True,
                 eos_id: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scorer = scorer  # the live evaluation and the adapter's metadata read it
        self.keeps_logits = scorer.keeps_logits
        self.method = method
        self.spec = method_of(method)
        self.dpo_beta = dpo_beta
        self.generic = generic
        self.pairs = pairs
        self.by_batch = by_batch
        self.eos_id = eos_id
        # compute_loss returns a per-micro-batch mean: the Trainer divides by the accumulation.
        self.loss_is_scaled_for_ga = False
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._reference_cache: dict[int, torch.Tensor] = {}

    def letter_logprobs(self, model, inputs: dict) -> torch.Tensor:
        if self.generic:
            return pair_sequence_logprobs(model, inputs, chosen_only=not (self.spec.preference
                                                                          or self.spec.soft))
        if self.eos_id is not None:
            return letter_eos_logprobs(model, inputs, self.eos_id, self.scorer.cache_arg,
                                       self.keeps_logits)
        return last_token_logprobs(model, inputs, self.keeps_logits)

    def reference_logprobs(self, model, inputs: dict) -> torch.Tensor:
        """The base model's log-probs (adapter disabled), computed once per question."""
        keys = inputs["index"].tolist()
        if any(k not in self._reference_cache for k in keys):
            # The unwrapped model: under DDP each forward of the wrapper is a collective, and
            # the ranks' caches fill at different moments.
            peft_model = self.accelerator.unwrap_model(model)
            with torch.no_grad(), peft_model.disable_adapter():
                ref = self.letter_logprobs(peft_model, inputs).detach()
            for k, row in zip(keys, ref):
                self._reference_cache[k] = row
        return torch.stack([self._reference_cache[k] for k in keys])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs["weight"]
        policy = self.letter_logprobs(model, inputs)
        reference = self.reference_logprobs(model, inputs) if self.spec.preference else None
        loss = self.spec.loss(policy, reference, weights, self.dpo_beta, F.softplus,
                              pairs=self.pairs, by_batch=self.by_batch, soft=inputs.get("soft"))
        if reference is not None:
            # A pair's logit is its implicit reward margin (chosen reward minus rejected).
            margins = torch.cat([p.flatten() for p in losses.pair_logits(
                policy.detach(), reference, self.dpo_beta, self.pairs)])
            self._metrics["reward_margin"].append(margins.mean().item())
            self._metrics["reward_accuracy"].append((margins > 0).float().mean().item())
        self._metrics["logp_chosen"].append(policy[:, 0].detach().mean().item())
        real = inputs["index"] < len(self.train_dataset.examples)  # not a filler row
        loss, value = collectives.shared_loss(loss, weights, self.by_batch, real)
        if not math.isfinite(value):
            lr = self.lr_scheduler.get_last_lr()[0] if self.lr_scheduler else self.args.learning_rate
            raise TrainingDiverged.at(value, self.state.global_step + 1, lr, self.args.learning_rate)
        return (loss, {"logps": policy}) if return_outputs else loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:
            logs.update(collectives.mean_over_ranks(
                {k: sum(v) / len(v) for k, v in self._metrics.items() if v}))
            self._metrics.clear()
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        if distributed.world().spread:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return EvenEpochSampler(len(dataset.examples), len(dataset), self.args.data_seed)
        return super()._get_train_sampler(train_dataset)

    def _save_rng_state(self, output_dir: str) -> None:
        if distributed.world().spread:
            save_rng_states(output_dir)
        else:
            super()._save_rng_state(output_dir)


class EvenEpochSampler(torch.utils.data.Sampler):
    """Under a launch: each epoch's questions in the one-process order, then the fillers.

    The one-process sampler (accelerate's seedable one) draws epoch e as ``torch.randperm``
    seeded with the data seed plus e; drawing the same here keeps every global micro-batch
    the one a single process would take. The filler rows (weight 0, never counted) bring
    the epoch to whole global micro-batches, so accelerate never tops up a short one with
    questions from the epoch's start, which would make that step differ.
    """

    def __init__(self, questions: int, total: int, seed: int) -> None:
        self.questions, self.total, self.seed, self.epoch = questions, total, seed, 0

    def __len__(self) -> int:
        return self.total

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.questions, generator=generator).tolist()
        yield from range(self.questions, self.total)
        self.epoch += 1


def save_rng_states(output_dir: str) -> None:
    """Every rank's random state, written by rank 0 in the Trainer's per-rank files.

    The Trainer would have each rank write its own file; gathering them keeps rank 0 the
    only writer, and they land before ``trainer_state.json``, which marks the checkpoint
    whole. The states are the ones the Trainer's ``_load_rng_state`` restores per rank.
    """
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.random.get_rng_state_all()
    states = collectives.gather_to_main(state)
    if states is None:
        return
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for rank, one in enumerate(states):
        torch.save(one, folder / f"rng_state_{rank}.pth")


# ---- the run --------------------------------------------------------------------------------

def training_arguments(config: TrainingConfig, device: str, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=distributed.per_process_batch(config),
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_steps, lr_scheduler_type="linear", optim=config.optim,
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="steps",
        save_steps=config.save_every, save_total_limit=checkpoints.KEEP, report_to=[], disable_tqdm=True,
        seed=config.seed, data_seed=config.seed, bf16=device.startswith("cuda"),
        use_cpu=device == "cpu", remove_unused_columns=False, dataloader_num_workers=0,
        # Every LoRA weight takes part in each forward (the reference pass, adapter off,
        # runs outside DDP): DDP need not search the graph for unused ones.
        ddp_find_unused_parameters=False,
        save_only_model=False)


def build_trainer(session: TrainingSession, model, tokenizer, device: str, *,
                  output_dir: Path, callbacks: list | None = None) -> WeightedAlignmentTrainer:
    """The peft model's trainer over the session's examples (also used by tests and the bench)."""
    config = session.config
    scorer = ModelScorer(model, tokenizer, device, name=session.name)
    data = session.data()
    examples = collectives.agree_on_examples(data.schedule(config.weighting, config.seed),
                                             data.data_hash)
    dataset = QuestionDataset(examples, scorer, config.prompt_format,
                              fillers=distributed.fillers(len(examples), config))
    eos = recipes.eos_id(scorer) if config.completion == "letter-eos" else None
    collator = (PairSequenceCollator(scorer.pad_id, eos) if config.generic_path else
                LastTokenCollator(scorer.pad_id, positions=scorer.takes_positions))
    trainer = WeightedAlignmentTrainer(
        model=model, args=training_arguments(config, device, output_dir), train_dataset=dataset,
        data_collator=collator, processing_class=tokenizer, callbacks=callbacks or [],
        method=config.method, dpo_beta=config.dpo_beta, generic=config.generic_path,
        scorer=scorer, pairs=config.pairs, by_batch=by_batch(config.weighting), eos_id=eos)
    # stdout is data: the Trainer's own printing of every log dict goes.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def merge_adapters(model, chain):
    """``model`` with each adapter of ``chain`` (folders, in order) merged into its weights."""
    from peft import PeftModel

    for folder in chain:
        if not (Path(folder) / "adapter_model.safetensors").is_file():
            raise UsageError(f"{folder} holds no peft adapter to start from (an MLX training "
                             "whose layers peft cannot name); start from a torch training")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    return model


def prepare_model(config: TrainingConfig, device: str, base: str | None, chain=()):
    """The base model (with ``chain`` merged into it: --init-from) and a fresh LoRA adapter."""
    from transformers import set_seed

    model, tokenizer, path = load_base(base, device)
    model = merge_adapters(model, chain)
    # The base model's dropout goes (TRL's default: the policy and the reference must see the
    # same network), before the adapter is added, so --lora-dropout still acts on the LoRA
    # branch, which the reference (adapter disabled) never runs.
    disable_dropout_in_model(model)
    set_seed(config.seed)  # the LoRA init
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft reads a deprecated property
        model = add_lora(model, config)
    return model, tokenizer, path


def train_torch(session: TrainingSession) -> TrainingOutcome:
    # Deprecation notes from transformers/peft/trl are for their callers' authors, not the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _train(session)


def _train(session: TrainingSession) -> TrainingOutcome:
    from transformers.utils import logging as hf_logging

    config = session.config
    # The device first: a missing GPU should fail before minutes of loading.
    device = hf_models.pick_device(distributed.requested_device(config.device))
    distributed.check_device(device)
    device = distributed.process_device(device)
    collectives.join(device)
    data = session.data()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with ending.on_failure(session):
            base = session.row["base_model"] if session.row else config.base
            model, tokenizer, path = prepare_model(config, device, base, session.init_chain)
            session.open_row(base_spec(base), {"base_path": str(path)})
            # Rank 0 picks (and removes half-written checkpoints); the others follow.
            resume_from = collectives.from_main(
                lambda: checkpoints.last(session.checkpoint_dir, CHECKPOINT_FILES)
                if session.resumed else None)
            callbacks = [EventCallback(session), CancelCallback(session.cancel)]
            trainer = build_trainer(session, model, tokenizer, device,
                                    output_dir=session.checkpoint_dir, callbacks=callbacks)
            evaluator = LiveEvaluator(session, trainer.scorer)
            if evaluator.active:
                trainer.add_callback(LiveEvalCallback(evaluator))
            start = checkpoints.step_of(resume_from) if resume_from else 0
            session.emit(session.started(device, total_steps(config, len(data.examples)), start))
            try:
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            except _OOM:
                raise TrainingOutOfMemory.on(device, config.batch_size, config.grad_accum) from None
            except RuntimeError as exc:
                if "out of memory" in str(exc).lower():
                    raise TrainingOutOfMemory.on(device, config.batch_size,
                                                 config.grad_accum) from None
                raise
            step = trainer.state.global_step
            if session.cancel.is_set():
                return ending.cancelled(session, step)
            adapter = session.adapter_dir
            trainer.save_model(str(adapter))  # every rank calls it; the Trainer writes on rank 0
            if session.main:
                tokenizer.save_pretrained(str(adapter))
                session.write_metadata(adapter, step, {
                    "base_path": str(path), "device": device,
                    "completion": {"chat_template": trainer.scorer.chat,
                                   "letter_ids": trainer.train_dataset.letter_ids,
                                   "eos_id": trainer.eos_id,
                                   "prompt_format": config.prompt_format}})
            return ending.finished(session, step, str(adapter))
    finally:
        hf_logging.set_verbosity(verbosity)

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

``--generic-path`` computes the same quantities the TRL way instead: prompt+completion
sequences right-padded by TRL's ``DataCollatorForPreference``, the full per-position
logits, per-token log-probs of the completion summed. Both feed the same weighted losses
(``losses``); tests hold them equal within 1e-4.

The weight column travels through the collators into ``compute_loss``; ``log`` adds the
DPO reward margin and accuracy to what the Trainer logs, which is where the
``TrainingStep`` events come from (``callbacks``). Checkpoints are the Trainer's own
(adapter, optimizer, scheduler, RNG and trainer state) every ``--save-every`` steps, so
``--resume`` continues a killed run at the step it last saved with the same data order.

Several GPUs: ``accelerate launch -m fairpp_app.cli train ...`` runs one process per GPU
under DDP; only rank 0 writes the database and the files.
"""

from __future__ import annotations

import json
import math
import shutil
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
from fairpp_app.core.errors import FairppError, UsageError
from fairpp_app.core.events import TrainingEnded
from fairpp_app.training import losses
from fairpp_app.training.callbacks import CancelCallback, EventCallback, LiveEvalCallback
from fairpp_app.training.config import TrainingConfig, is_preference
from fairpp_app.training.data import Example
from fairpp_app.training.failures import TrainingDiverged, TrainingOutOfMemory
from fairpp_app.training.runner import TrainingOutcome, TrainingSession
from fairpp_app.training.scoring import ModelScorer

#: Attention and MLP projections across the common architectures; the LoRA targets.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "query_key_value", "c_attn", "c_proj", "c_fc", "W_pack", "fc1", "fc2",
               "dense", "dense_h_to_4h", "dense_4h_to_h", "qkv_proj", "gate_up_proj")
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# ---- model ----------------------------------------------------------------------------------

def load_base(spec: str | None, device: str):
    """(model, tokenizer, folder) for a base model spec, in the device's training dtype."""
    path = hf_models.resolve_model(spec)
    tokenizer = hf_models.load_tokenizer(path)
    model = hf_models.load_causal_lm(path, device, hf_models.default_dtype(device))
    return model, tokenizer, path


def lora_targets(model) -> list[str] | str:
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear)}
    found = sorted(names & set(PROJECTIONS))
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

    def __init__(self, examples: list[Example], scorer: ModelScorer) -> None:
        self.examples = examples
        self.scorer = scorer
        self._ids: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        ex = self.examples[i]
        if i not in self._ids:
            self._ids[i] = self.scorer.prompt_ids(ex.prompt())
        letters = [self.scorer.completion_id(ex.chosen)] + [self.scorer.completion_id(r)
                                                            for r in ex.rejected]
        return {"prompt_ids": self._ids[i], "letter_ids": letters, "weight": ex.weight, "index": i}


def _extras(features: list[dict]) -> dict:
    return {"letter_ids": torch.tensor([f["letter_ids"] for f in features], dtype=torch.long),
            "weight": torch.tensor([f["weight"] for f in features], dtype=torch.float32),
            "index": torch.tensor([f["index"] for f in features], dtype=torch.long)}


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

    def __call__(self, features: list[dict]) -> dict:
        pairs = [{"prompt_ids": f["prompt_ids"], "chosen_ids": [f["letter_ids"][0]],
                  "rejected_ids": [f["letter_ids"][k]]}
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

    def __init__(self, *args, method: str, dpo_beta: float, generic: bool = False,
                 keeps_logits: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.dpo_beta = dpo_beta
        self.generic = generic
        self.keeps_logits = keeps_logits
        # compute_loss returns a per-micro-batch mean: the Trainer divides by the accumulation.
        self.loss_is_scaled_for_ga = False
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._reference_cache: dict[int, torch.Tensor] = {}

    def letter_logprobs(self, model, inputs: dict) -> torch.Tensor:
        if self.generic:
            return pair_sequence_logprobs(model, inputs, chosen_only=not is_preference(self.method))
        return last_token_logprobs(model, inputs, self.keeps_logits)

    def reference_logprobs(self, model, inputs: dict) -> torch.Tensor:
        """The base model's log-probs (adapter disabled), computed once per question."""
        keys = inputs["index"].tolist()
        if any(k not in self._reference_cache for k in keys):
            peft_model = self.accelerator.unwrap_model(model)
            with torch.no_grad(), peft_model.disable_adapter():
                ref = self.letter_logprobs(model, inputs).detach()
            for k, row in zip(keys, ref):
                self._reference_cache[k] = row
        return torch.stack([self._reference_cache[k] for k in keys])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs["weight"]
        policy = self.letter_logprobs(model, inputs)
        if is_preference(self.method):
            reference = self.reference_logprobs(model, inputs)
            loss = losses.wdpo_loss(policy, reference, weights, self.dpo_beta, F.softplus)
            chosen, rejected = losses.dpo_rewards(policy.detach(), reference, self.dpo_beta)
            self._metrics["reward_margin"].append((chosen - rejected).mean().item())
            self._metrics["reward_accuracy"].append((chosen > rejected).float().mean().item())
        else:
            loss = losses.wsft_loss(policy, weights)
        self._metrics["logp_chosen"].append(policy[:, 0].detach().mean().item())
        value = loss.detach().float().item()
        if not math.isfinite(value):
            raise TrainingDiverged(self._divergence_message(value))
        return (loss, {"logps": policy}) if return_outputs else loss

    def _divergence_message(self, value: float) -> str:
        step = self.state.global_step + 1
        lr = self.args.learning_rate
        if self.lr_scheduler is not None:
            lr = self.lr_scheduler.get_last_lr()[0]
        return (f"the loss became {value} at step {step} (learning rate {lr:.3g}); training "
                f"stopped rather than train on garbage. Lower --lr (it was {self.args.learning_rate:g}) "
                "and start again; the checkpoints so far hold the last good state")

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
            self._metrics.clear()
        super().log(logs, start_time)


# ---- checkpoints ----------------------------------------------------------------------------

def _step_of(folder: Path) -> int:
    try:
        return int(folder.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def complete_checkpoint(folder: Path) -> bool:
    """The Trainer writes trainer_state.json last: with it (and the rest) a checkpoint is whole."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return all((folder / f).is_file() for f in ("optimizer.pt", "scheduler.pt"))


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest whole checkpoint; newer half-written ones (a kill mid-save) are removed."""
    if not checkpoint_dir.is_dir():
        return None
    folders = sorted((p for p in checkpoint_dir.glob("checkpoint-*") if p.is_dir()),
                     key=_step_of, reverse=True)
    for folder in folders:
        if complete_checkpoint(folder):
            return folder
        shutil.rmtree(folder, ignore_errors=True)
    return None


# ---- the run --------------------------------------------------------------------------------

def training_arguments(config: TrainingConfig, device: str, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_steps, lr_scheduler_type="linear", optim=config.optim,
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="steps",
        save_steps=config.save_every, save_total_limit=2, report_to=[], disable_tqdm=True,
        seed=config.seed, data_seed=config.seed, bf16=device.startswith("cuda"),
        use_cpu=device == "cpu", remove_unused_columns=False, dataloader_num_workers=0,
        save_only_model=False)


def total_steps(config: TrainingConfig, n_examples: int) -> int:
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(n_examples / config.batch_size)
    return max(1, math.ceil(batches / config.grad_accum)) * config.epochs


def _oom_message(device: str, config: TrainingConfig) -> str:
    smaller = max(1, config.batch_size // 2)
    return (f"out of memory on {device} with --batch-size {config.batch_size} and --grad-accum "
            f"{config.grad_accum}; try --batch-size {smaller} --grad-accum "
            f"{config.grad_accum * config.batch_size // smaller} (same questions per step)")


def build_trainer(session: TrainingSession, model, tokenizer, device: str, *,
                  output_dir: Path, callbacks: list | None = None) -> WeightedAlignmentTrainer:
    """The peft model's trainer over the session's examples (also used by tests and the bench)."""
    config = session.config
    scorer = ModelScorer(model, tokenizer, device, name=session.name)
    dataset = QuestionDataset(session.data().examples, scorer)
    collator = (PairSequenceCollator(scorer.pad_id) if config.generic_path else
                LastTokenCollator(scorer.pad_id, positions=scorer.takes_positions))
    trainer = WeightedAlignmentTrainer(
        model=model, args=training_arguments(config, device, output_dir), train_dataset=dataset,
        data_collator=collator, processing_class=tokenizer, callbacks=callbacks or [],
        method=config.method, dpo_beta=config.dpo_beta, generic=config.generic_path,
        keeps_logits=scorer.keeps_logits)
    # stdout is data: the Trainer's own printing of every log dict goes.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.scorer = scorer  # type: ignore[attr-defined]
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
    device = hf_models.pick_device("auto" if config.device == "mlx" else config.device)
    data = session.data()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        base = session.row["base_model"] if session.row else config.base
        model, tokenizer, path = prepare_model(config, device, base, session.init_chain)
        from fairpp_app.training.runner import base_spec

        session.open_row(base_spec(base), {"base_path": str(path)})
        resume_from = last_checkpoint(session.checkpoint_dir) if session.resumed else None
        callbacks = [EventCallback(session), CancelCallback(session.cancel)]
        trainer = build_trainer(session, model, tokenizer, device,
                                output_dir=session.checkpoint_dir, callbacks=callbacks)
        if config.eval_every > 0:
            questions, answers = session.eval_set()
            if questions:
                trainer.add_callback(LiveEvalCallback(session, trainer.scorer, questions, answers))
        start = _step_of(resume_from) if resume_from else 0
        steps = total_steps(config, len(data.examples))
        session.emit(session.started(device, steps, start))
        status, message = "finished", ""
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except _OOM:
            raise TrainingOutOfMemory(_oom_message(device, config)) from None
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise TrainingOutOfMemory(_oom_message(device, config)) from None
            raise
        step = trainer.state.global_step
        if session.cancel.is_set():
            status, message = "cancelled", f"cancelled at step {step}; resume with --resume {session.name}"
            session.mark(status)
            session.emit(TrainingEnded(session.name, status, step, message))
            return TrainingOutcome(session.name, status, step, None, message, data.summary())
        adapter = session.adapter_dir
        trainer.save_model(str(adapter))  # every rank calls it; the Trainer writes on rank 0
        if session.main:
            tokenizer.save_pretrained(str(adapter))
            session.write_metadata(adapter, step, {
                "base_path": str(path), "device": device,
                "completion": {"chat_template": trainer.scorer.chat,
                               "letter_ids": trainer.scorer._completion_ids}})
        session.mark(status, str(adapter))
        session.emit(TrainingEnded(session.name, status, step, message, str(adapter)))
        return TrainingOutcome(session.name, status, step, str(adapter), message, data.summary())
    except KeyboardInterrupt:
        session.mark("interrupted")
        session.emit(TrainingEnded(session.name, "interrupted", _current_step(locals()),
                                   f"interrupted; resume with --resume {session.name}"))
        raise
    except FairppError as exc:
        session.mark("failed")
        session.emit(TrainingEnded(session.name, "failed", _current_step(locals()), str(exc)))
        raise
    except BaseException as exc:
        session.mark("failed")
        session.emit(TrainingEnded(session.name, "failed", _current_step(locals()), repr(exc)))
        raise
    finally:
        hf_logging.set_verbosity(verbosity)


def _current_step(scope: dict) -> int:
    trainer = scope.get("trainer")
    return trainer.state.global_step if trainer is not None else 0

"""What defines a training run; the CLI flags and the TUI form are generated from it.

Defaults follow the paper where it fits a laptop (DPO beta 0.1, alpha = beta = 1 for the
weights, one epoch, 32 questions per optimizer step as 8 x 4 accumulation) and LoRA where
the authors fine-tuned every weight. The learning rate is LoRA's usual order (1e-4), not
the paper's 5e-7 for a full fine-tune. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from fairpp_app.core import questions
from fairpp_app.core.errors import UsageError
from fairpp_app.training import methods, recipes

DEVICES = ("auto", "cuda", "cpu", "mps", "mlx")
BANKS = ("auto", *questions.BANKS)
OPTIMIZERS = ("adamw_torch", "rmsprop", "sgd")
WEIGHTINGS = ("batch", "dataset", "sample")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _help(text: str, **kw) -> dict:
    return {"help": text, **kw}


@dataclass
class TrainingConfig:
    """Everything that defines a training run (stored with it, so --resume needs only the name)."""

    method: str = field(default=methods.NAMES[0], metadata=_help(
        "wdpo / dpo: preference pairs (target's option over each other option); wsft / sft: the "
        "target's option as the completion; wdsft / dsft: cross-entropy to the target's whole "
        "A/B/C distribution (needs a run scored with probabilities). The w-methods weight each "
        "question by the paper's tiers",
        choices=methods.NAMES))
    target: str = field(default="6", metadata=_help(
        "target: a persona (number or slug) or a group, '3,6' for an equal mix or '3:0.7,6:0.3' "
        "for given shares (the mix of its members' A/B/C distributions; its answer the mix's "
        "argmax, weighed against the personas outside it)"))
    from_run: str | None = field(default=None, metadata=_help(
        "run holding the personas' answers (required for a new training)"))
    base: str | None = field(default=None, metadata=_help(
        "base model: a Hugging Face model folder or a .gguf file (default: the embedded Gemma 3 270M)"))
    name: str | None = field(default=None, metadata=_help(
        "training name (default: METHOD-pTARGET); its files go to DATA_DIR/trainings/NAME"))
    init_from: str | None = field(default=None, metadata=_help(
        "start from a finished training's model (its adapter merged into the base), as the "
        "paper starts DPO from SFT and WDPO from WSFT; that model is also the DPO reference"))
    device: str = field(default="auto", metadata=_help(
        "auto picks cuda, then mps, then cpu; mlx uses the MLX trainer", choices=DEVICES))
    limit: int | None = field(default=None, metadata=_help(
        "train on the first N train questions only (quick runs)"))
    lora_r: int = field(default=16, metadata=_help("LoRA rank"))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling alpha"))
    lora_dropout: float = field(default=0.0, metadata=_help("dropout on the LoRA branch"))
    lr: float = field(default=1e-4, metadata=_help("peak learning rate"))
    optim: str = field(default="adamw_torch", metadata=_help(
        "optimizer (the paper used rmsprop for a full fine-tune)", choices=OPTIMIZERS))
    warmup_steps: int = field(default=0, metadata=_help("linear warm-up steps"))
    epochs: int = field(default=1, metadata=_help("passes over the training questions"))
    batch_size: int = field(default=8, metadata=_help(
        "questions per micro-batch (a DPO question is two pairs sharing one prompt)"))
    grad_accum: int = field(default=4, metadata=_help("micro-batches per optimizer step"))
    max_steps: int | None = field(default=None, metadata=_help(
        "stop after N optimizer steps (overrides --epochs)"))
    dpo_beta: float = field(default=0.1, metadata=_help("DPO temperature beta"))
    alpha: float = field(default=1.0, metadata=_help("weight tier exponent alpha (w-methods)"))
    beta: float = field(default=1.0, metadata=_help("weight tier-size exponent beta (w-methods)"))
    weighting: str = field(default="batch", metadata=_help(
        "how the w-methods use the weights: batch = sum w*loss / sum w per micro-batch (the "
        "paper's); dataset = weights normalised over the whole training set, so a heavy question "
        "cannot own a step; sample = questions drawn in proportion to their weight (with "
        "replacement, from --seed), plain mean loss", choices=WEIGHTINGS))
    recipe: str = field(default="fairpp", metadata=_help(
        "fairpp: the prompt `fairpp simulate` uses, the letter alone, two pairs per question; "
        "paper: the authors' trainer: '\\n\\nHuman: QUESTION+OPTIONS\\n\\nAssistant:', the letter "
        "then EOS, three pairs (the third: the two other letters in a random order from --seed); "
        "the paper starts DPO from SFT: add --init-from", choices=recipes.NAMES))
    prompt_format: str | None = field(default=None, metadata=_help(
        "fairpp or paper (default: the recipe's)"))
    completion: str | None = field(default=None, metadata=_help(
        "letter or letter-eos, the letter followed by the tokenizer's EOS (default: the recipe's)"))
    pairs: int | None = field(default=None, metadata=_help(
        "preference pairs per question, 2 or 3 (default: the recipe's)"))
    save_every: int = field(default=50, metadata=_help(
        "checkpoint (adapter, optimizer, scheduler) every N steps; --resume continues from the last"))
    eval_every: int = field(default=50, metadata=_help(
        "answer the held-out questions every N steps and report similarity to each persona (0: never)"))
    eval_limit: int = field(default=100, metadata=_help("held-out test questions used by --eval-every"))
    seed: int = field(default=42, metadata=_help(
        "seed of every random choice: the LoRA init, the data order, weighted sampling and the "
        "paper recipe's third pair"))
    generic_path: bool = field(default=False, metadata=_help(
        "score completions the generic TRL way (whole prompt+completion sequences, chosen and "
        "rejected separately); same loss, several times slower"))
    bank: str = field(default="auto", metadata=_help(
        "question bank to train and evaluate on: fairpp (this app's wording) or official (the "
        "imported release's); auto: the bank of the from-run's answers", choices=BANKS))

    def __post_init__(self) -> None:
        spec = methods.method(self.method)  # refuses an unknown name, listing the known ones
        self._resolve_recipe()
        if self.weighting not in WEIGHTINGS:
            raise UsageError(f"--weighting must be one of {', '.join(WEIGHTINGS)}, not "
                             f"'{self.weighting}'")
        if self.weighting != "batch" and not spec.weighted:
            raise UsageError(f"--weighting {self.weighting} applies to the weighted methods "
                             f"({', '.join(methods.names_where(weighted=True))}); {self.method} "
                             "gives every question weight 1")
        if self.device not in DEVICES:
            raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not '{self.device}'")
        if self.optim not in OPTIMIZERS:
            raise UsageError(f"--optim must be one of {', '.join(OPTIMIZERS)}, not '{self.optim}'")
        if self.init_from is not None and not NAME_RE.match(self.init_from):
            raise UsageError(f"--init-from '{self.init_from}' is not a training name")
        if self.name is not None and not NAME_RE.match(self.name):
            raise UsageError(f"--name '{self.name}' must be letters, digits, '.', '_' or '-' "
                             "(it names a folder)")
        positive_ints = {"lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "epochs": self.epochs,
                         "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                         "save_every": self.save_every, "eval_limit": self.eval_limit}
        for key, value in positive_ints.items():
            if value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
        for key in ("max_steps", "limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
        if self.eval_every < 0 or self.warmup_steps < 0:
            raise UsageError("--eval-every and --warmup-steps must not be negative")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError("--lr must be a positive number")
        if not (self.dpo_beta > 0 and math.isfinite(self.dpo_beta)):
            raise UsageError("--dpo-beta must be a positive number")
        if self.alpha < 0 or self.beta < 0:
            raise UsageError("--alpha and --beta must be zero or positive")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError("--lora-dropout must be in [0, 1)")

    def _resolve_recipe(self) -> None:
        """Switches left unset take the recipe's value, so the stored config says what ran."""
        base = recipes.recipe(self.recipe)
        if self.prompt_format is None:
            self.prompt_format = base.prompt_format
        if self.completion is None:
            self.completion = base.completion
        if self.pairs is None:
            self.pairs = base.pairs
        if self.prompt_format not in recipes.PROMPT_FORMATS:
            raise UsageError(f"--prompt-format must be one of {', '.join(recipes.PROMPT_FORMATS)}, "
                             f"not '{self.prompt_format}'")
        if self.completion not in recipes.COMPLETIONS:
            raise UsageError(f"--completion must be one of {', '.join(recipes.COMPLETIONS)}, "
                             f"not '{self.completion}'")
        if self.pairs not in recipes.PAIRS:
            raise UsageError(f"--pairs must be 2 or 3, not {self.pairs}")

    def recipe_parts(self) -> dict:
        """The parts of the recipe that differ from fairpp's own (empty for the default)."""
        base = recipes.RECIPES["fairpp"]
        parts = {"prompt_format": self.prompt_format, "completion": self.completion,
                 "pairs": self.pairs}
        return {k: v for k, v in parts.items() if getattr(base, k) != v}

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def default_name(self, target_tag: int | str) -> str:
        """``target_tag``: a target's ``tag`` (``p6``, ``p3-6``); a bare number means ``p``+it."""
        tag = target_tag if isinstance(target_tag, str) else f"p{target_tag}"
        return self.name or f"{self.method}-{tag}"

    def require_source(self) -> None:
        if not self.from_run:
            raise UsageError("--from-run is required: the run holding the personas' answers "
                             "(see `fairpp runs`)")

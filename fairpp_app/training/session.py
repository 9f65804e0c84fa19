"""The half of a training that no framework needs, shared by both trainers.

A :class:`TrainingSession` is the row in the trainings table, the configuration, the
examples, the held-out set, the files and the events. The runner opens it and hands it
to the trainer for the device (the torch one or the MLX one), so a run's row, files,
events and adapter metadata look the same whichever framework trained it. It lives apart
from the runner so that the trainers import it without importing the runner that picks
them.

A training is named and lives in ``DATA_DIR/trainings/NAME``: ``checkpoints/`` while it
runs, ``adapter/`` when it is done (with ``fairpp_adapter.json`` saying what it is). Its
configuration is stored with the row, so ``--resume NAME`` needs nothing else, and the
data hash is stored too, so a resume whose answers changed underneath it refuses.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core.child import crash_point
from fairpp_app.core.errors import UsageError
from fairpp_app.core.events import Event, TrainingStarted, TrainingStep
from fairpp_app.core.paths import data_dir
from fairpp_app.core.personas import Persona
from fairpp_app.core.prompts import template_hash
from fairpp_app.core.targets import parse_target
from fairpp_app.store.database import Store
from fairpp_app.training import distributed
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.data import TrainingSet, build_training_set, eval_subset, run_debias
from fairpp_app.training.methods import method

METADATA_FILE = "fairpp_adapter.json"
#: The statuses a training resumes from (``running`` only once its owner is gone: a living
#: owner refuses the claim). The same statuses as a run's (README, "Run statuses").
RESUMABLE = ("created", "running", "paused", "cancelled", "failed", "crashed", "interrupted")
#: At most one heartbeat write per this many seconds (each step event may bring one).
HEARTBEAT_S = 0.5


def trainings_root() -> Path:
    return data_dir() / "trainings"


def base_spec(base: str | None) -> str:
    """How a base model is stored: the embedded name, or an absolute path (resumable from anywhere)."""
    from fairpp_app.backends.hf_models import EMBEDDED_MODEL, is_embedded

    if base is None or is_embedded(base):
        return EMBEDDED_MODEL
    return str(Path(base).expanduser().resolve())


@dataclass
class TrainingOutcome:
    name: str
    status: str
    step: int
    adapter_path: str | None = None
    message: str = ""
    summary: dict = field(default_factory=dict)


class TrainingSession:
    """The framework-neutral half of a training: its row, its data, its files and its events."""

    def __init__(self, store: Store, personas: list[Persona], config: TrainingConfig | None = None,
                 resume: str | None = None, listener: Callable[[Event], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.store = store
        self.personas = personas
        self.listener = listener or (lambda e: None)
        self.cancel = cancel or threading.Event()
        self.resumed = resume is not None
        # Under `accelerate launch` only rank 0 writes the row, events and files (``distributed``).
        self.main = distributed.world().main
        if resume is not None:
            row = store.get_training(resume)
            if row["status"] == "finished":
                raise UsageError(f"training '{resume}' already finished; its adapter is at "
                                 f"{row['adapter_path']}")
            if row["status"] not in RESUMABLE:
                raise UsageError(f"training '{resume}' has status '{row['status']}' and cannot resume")
            if self.main:
                refuse_if_owned(store, resume)
            config = TrainingConfig.from_json(row["config"].get("config", {}))
            self.row: dict | None = row
        elif config is None:
            raise UsageError("give a training configuration or --resume NAME")
        else:
            config.require_source()
            self.row = None
        self.config = config
        self.target = parse_target(config.target, personas)  # a persona or a group
        if self.row is None and self.target.is_group:
            # Stored as its canonical spec, so '3:7,6:3' and '3:0.7,6:0.3' are one target to
            # the report's seed groups, and a resume reads back exactly the shares it began with.
            config.target = self.target.spec
            self.target = parse_target(config.target, personas)
        self.name = resume or config.default_name(self.target.tag)
        if self.row is None and self.main:  # other ranks would find rank 0's fresh row
            existing = store.find_training(self.name)
            if existing is not None:
                hint = ("choose another --name" if existing["status"] == "finished" else
                        f"continue it with `fairpp train --resume {self.name}` or choose another --name")
                raise UsageError(f"training '{self.name}' already exists (status {existing['status']}); "
                                 + hint)
        self._data: TrainingSet | None = None
        self._eval: tuple | None = None
        self.last_loss: float | None = None
        self.step = 0  # the last finished optimizer step: what an ending reports
        self._beat = 0.0
        self.init_chain = adapter_chain(store, config.init_from)
        if config.init_from is not None and self.row is None:
            start = store.get_training(config.init_from)
            if start["base_model"] != base_spec(config.base):
                raise UsageError(f"--init-from '{config.init_from}' was trained on "
                                 f"{start['base_model']}, not on {base_spec(config.base)}; give "
                                 "the same --base")

    # ---- files ---------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return trainings_root() / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.directory / "adapter"

    # ---- data ----------------------------------------------------------------------------

    def data(self) -> TrainingSet:
        if self._data is None:
            cfg = self.config
            self._data = build_training_set(self.store, cfg.from_run, self.target, self.personas,
                                            cfg.method, cfg.alpha, cfg.beta, cfg.limit,
                                            save_weights=self.main, bank=self.bank,
                                            pairs=cfg.pairs, seed=cfg.seed,
                                            recipe=cfg.recipe_parts())
            if self.row is not None:
                stored = self.row["config"].get("data", {}).get("data_hash")
                if stored and stored != self._data.data_hash:
                    raise UsageError(
                        f"the training data of '{self.name}' changed since it started (the answers "
                        f"in run '{cfg.from_run}' differ); start a new training with another --name")
        return self._data

    @property
    def bank(self) -> str | None:
        """The question bank chosen; None lets the source run's answers decide."""
        return None if self.config.bank == "auto" else self.config.bank

    @property
    def debias(self) -> str:
        """The source run's debiasing; the live similarity answers the same way."""
        return run_debias(self.store, self.config.from_run)

    def eval_set(self) -> tuple[list, dict]:
        """The fixed held-out questions of the live similarity, with every persona's answers."""
        if self._eval is None:
            self._eval = eval_subset(self.store, self.config.from_run, self.personas, self.target,
                                     self.config.eval_limit, "test", self.bank)
        return self._eval

    # ---- the row -------------------------------------------------------------------------

    def open_row(self, base_model: str, extra: dict | None = None) -> dict:
        """Create the training's row (or mark a resumed one running)."""
        if not self.main:
            return self.row or {"id": None, "name": self.name}
        if self.row is None:
            self.config.base = base_model
            stored = {"config": self.config.as_json(), "data": self.data().summary(),
                      "template": template_hash(), **(extra or {})}
            self.row = self.store.create_training(
                self.name, self.config.method, self.target.slug, base_model, self.config.from_run,
                stored, status="created")
        self.store.claim_training(self.row["id"])
        self._beat = time.monotonic()
        return self.row

    def started(self, device: str, total_steps: int, start_step: int) -> TrainingStarted:
        """The event that opens a training (or its resumption) on ``device``."""
        data = self.data()
        self.step = start_step
        weighted = method(self.config.method).weighted
        return TrainingStarted(
            self.name, self.config.method, self.target.slug, self.config.base or "", device,
            data.n_questions, data.n_pairs, total_steps, start_step, len(data.skipped),
            letters=data.letter_shares(),
            weighted_letters=data.letter_shares(True) if weighted else None)

    def owned_elsewhere(self) -> bool:
        """Whether another living process works on this training now (so this one must not end it)."""
        if not self.main or self.row is None:
            return False
        owner = self.store.live_owner("trainings", self.name)
        return owner is not None and owner.get("pid") != os.getpid()

    def mark(self, status: str, adapter_path: str | None = None) -> None:
        if self.main and self.row is not None and self.row.get("id") is not None:
            self.store.update_training(self.row["id"], status=status, adapter_path=adapter_path)

    def emit(self, event: Event) -> None:
        if not self.main:
            return
        if self.row is not None and self.row.get("id") is not None:
            self.store.add_event(event.kind, event.payload(), training_id=self.row["id"])
        self.listener(event)

    def record_step(self, step: int, loss: float, learning_rate: float | None = None,
                    reward_margin: float | None = None, reward_accuracy: float | None = None) -> None:
        """A finished optimizer step: its event, and the loss the next live evaluation reports."""
        crash_point("training-step")
        self.step = step
        self.last_loss = loss
        if self.main and self.row is not None and time.monotonic() - self._beat >= HEARTBEAT_S:
            self.store.heartbeat_training(self.row["id"])
            self._beat = time.monotonic()
        self.emit(TrainingStep(self.name, step, loss, learning_rate=learning_rate,
                               reward_margin=reward_margin, reward_accuracy=reward_accuracy))

    def metadata(self, steps: int, extra: dict | None = None) -> dict:
        data = self.data()
        return {
            "format": 1, "name": self.name, "base_model": self.config.base,
            "method": self.config.method,
            "target": {"number": self.target.number, "slug": self.target.slug,
                       "name": self.target.name,
                       **({"members": {p.slug: share for p, share in zip(self.target.members,
                                                                          self.target.shares)}}
                          if self.target.is_group else {})},
            "from_run": self.config.from_run,
            "weights": {"weighted": method(self.config.method).weighted, "alpha": self.config.alpha,
                        "beta": self.config.beta, "tiers": data.tiers},
            "data_hash": data.data_hash, "questions": data.n_questions, "pairs": data.n_pairs,
            "both_orders": data.permute, "init_from": self.config.init_from,
            "init_chain": [str(p) for p in self.init_chain],
            "skipped_unparsed": len(data.skipped), "steps": steps,
            "prompt_template": template_hash(), "config": self.config.as_json(),
            "saved_at": time.time(), **(extra or {}),
        }

    def write_metadata(self, folder: Path, steps: int, extra: dict | None = None) -> None:
        (folder / METADATA_FILE).write_text(json.dumps(self.metadata(steps, extra), indent=2))


def refuse_if_owned(store: Store, name: str) -> None:
    """Refuse (UsageError, naming the pid) to work on a training another living process owns."""
    from fairpp_app.core.ownership import describe

    owner = store.live_owner("trainings", name)
    if owner is not None and owner.get("pid") != os.getpid():
        raise UsageError(f"training '{name}' is being worked on by {describe(owner)}; wait for it "
                         f"to end, or stop it (`fairpp jobs stop {name}`), then resume it")


def adapter_chain(store: Store, name: str | None) -> list[Path]:
    """The adapter folders to merge, in order, to rebuild the model training ``name`` ended with.

    A training started ``--init-from`` another one sits on that one's merged model, which may
    itself have started from a third: the chain runs from the first training to ``name``.
    Empty for ``None``.
    """
    chain: list[Path] = []
    seen: set[str] = set()
    while name is not None:
        if name in seen:
            raise UsageError(f"trainings started from each other in a loop at '{name}'")
        seen.add(name)
        row, folder = finished_adapter(store, name)
        chain.append(folder)
        name = TrainingConfig.from_json(row["config"].get("config", {})).init_from
    return chain[::-1]


def finished_adapter(store: Store, name: str) -> tuple[dict, Path]:
    """The row and adapter folder of the finished training ``name``, or a clear error."""
    row = store.get_training(name)
    if row["status"] != "finished" or not row["adapter_path"]:
        raise UsageError(f"training '{name}' has not finished (status {row['status']}), so it has "
                         f"no adapter yet; finish it with `fairpp train --resume {name}`")
    folder = Path(row["adapter_path"])
    if not folder.is_dir():
        raise UsageError(f"the adapter of training '{name}' is missing from {folder}")
    return row, folder


def read_metadata(adapter_dir: Path | str) -> dict:
    path = Path(adapter_dir) / METADATA_FILE
    if not path.is_file():
        raise UsageError(f"{adapter_dir} holds no fairpp adapter ({METADATA_FILE} is missing)")
    return json.loads(path.read_text())

"""``fairpp sweep``: a grid of trainings, each evaluated, run unattended and resumable, then the report.

A sweep is one or more grids (methods x recipes x weighting x alpha x beta x seeds) over
settings shared by every cell. Each cell is an ordinary training, named after its place in
the grid (``SWEEP-METHOD-RECIPE[-WEIGHTING-aALPHA-bBETA]-sSEED``), followed by its ordinary
evaluation (``eval-NAME``); the untrained base model is evaluated once first, for the
report's base row. Nothing about the sweep is stored besides those trainings and runs: the
same command (or config file) names the same cells, so a rerun after ``kill -9`` skips a
finished cell, resumes a half-done training through ``--resume`` (from its last checkpoint)
and a half-done evaluation the way ``fairpp evaluate`` resumes it. A cell whose stored
settings differ from the grid's is refused rather than silently reused.

Settings that a method ignores do not multiply its cells: a method without weights gets
one cell per recipe and seed, whatever the weighting and alpha/beta lists. With the
paper's recipe a preference cell starts from the SFT cell of the same recipe and seed (WDPO
from WSFT with its weights), as the authors started DPO from SFT; that cell is added to
the sweep when the grid lacks it.

Everything runs in this one process, cell after cell, so a kill stops all of it at once
and nothing is left running for a rerun to trip over. A cell that fails (a diverged loss,
say) is reported and the sweep goes on without the cells that start from it.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core.errors import FairppError, UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.store.database import Store
from fairpp_app.training import methods, recipes
from fairpp_app.training.compare import base_run_name, eval_run_name
from fairpp_app.training.config import NAME_RE, WEIGHTINGS, TrainingConfig

#: The grid's axes: the config file's keys (also the CLI's flags) and the field each sets.
AXES = {"methods": "method", "recipes": "recipe", "weighting": "weighting", "alpha": "alpha",
        "beta": "beta", "seeds": "seed"}
#: Settings the cells' stored configs may differ in without being other cells.
IGNORED = ("name", "base", "device", "save_every", "eval_every", "eval_limit")


@dataclass
class Grid:
    methods: list[str] = field(default_factory=lambda: ["dpo", "wdpo"])
    recipes: list[str] = field(default_factory=lambda: ["fairpp"])
    weighting: list[str] = field(default_factory=lambda: ["batch"])
    alpha: list[float] = field(default_factory=lambda: [1.0])
    beta: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        for name in self.methods:
            methods.method(name)
        for name in self.recipes:
            recipes.recipe(name)
        for name in self.weighting:
            if name not in WEIGHTINGS:
                raise UsageError(f"weighting must be among {', '.join(WEIGHTINGS)}, not '{name}'")
        for key in AXES:
            if not getattr(self, key):
                raise UsageError(f"the grid's {key} list is empty")


@dataclass
class Sweep:
    """The grids, the settings every cell shares, and how the cells are evaluated."""

    name: str = "sweep"
    grids: list[Grid] = field(default_factory=lambda: [Grid()])
    train: dict = field(default_factory=dict)   # TrainingConfig fields shared by every cell
    split: str = "test"
    eval_limit: int | None = None
    eval_device: str = "auto"
    eval_base: bool = True

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise UsageError(f"sweep name '{self.name}' must be letters, digits, '.', '_' or '-'")
        clash = sorted(set(self.train) & (set(AXES.values()) | {"name", "init_from"}))
        if clash:
            raise UsageError(f"{', '.join(clash)} are set by the grid or the sweep, not per training")
        TrainingConfig(**self.train).require_source()  # the shared settings' own checks
        if self.split not in ("test", "scenario", "train", "all"):
            raise UsageError(f"the evaluation split must be test, scenario, train or all, not "
                             f"'{self.split}'")
        if self.eval_limit is not None and (not isinstance(self.eval_limit, int) or self.eval_limit < 1):
            raise UsageError("the evaluation limit must be a whole number of at least 1")
        if self.eval_device not in ("auto", "cpu", "cuda", "mps"):
            raise UsageError(f"the evaluation device must be auto, cpu, cuda or mps, not "
                             f"'{self.eval_device}'")


@dataclass(frozen=True)
class Cell:
    name: str
    config: TrainingConfig


@dataclass
class SweepOutcome:
    cells: list[dict]        # {"name", "status", "message"} in order
    report: dict | None = None

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.cells if c["status"] not in ("finished", "skipped")]


def _number(value: float) -> str:
    return f"{value:g}"


def cell_name(sweep: str, values: dict) -> str:
    spec = methods.method(values["method"])
    parts = [sweep, values["method"], values["recipe"]]
    if spec.weighted:
        parts += [values["weighting"], f"a{_number(values['alpha'])}", f"b{_number(values['beta'])}"]
    parts.append(f"s{values['seed']}")
    name = "-".join(parts)
    if not NAME_RE.match(name):
        raise UsageError(f"cell name '{name}' is too long or has odd characters; use a shorter "
                         "sweep --name")
    return name


def cells(sweep: Sweep) -> list[Cell]:
    """Every cell of every grid, each once, a cell's starting SFT cell before it."""
    out: dict[str, Cell] = {}

    def add(values: dict) -> str:
        spec = methods.method(values["method"])
        if not spec.weighted:  # settings the method ignores take their defaults
            values = {**values, "weighting": "batch", "alpha": 1.0, "beta": 1.0}
        name = cell_name(sweep.name, values)
        if name in out:
            return name
        start = None
        if values["recipe"] == "paper" and spec.preference:
            start = add({**values, "method": "wsft" if spec.weighted else "sft"})
        config = TrainingConfig(**{**sweep.train, **values, "name": name, "init_from": start})
        out[name] = Cell(name, config)
        return name

    for grid in sweep.grids:
        axes = [getattr(grid, key) for key in AXES]
        for combo in itertools.product(*axes):
            add(dict(zip(AXES.values(), combo)))
    return list(out.values())


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in IGNORED}


def load_file(path: Path) -> dict:
    """A sweep file: TOML (``.toml``) or JSON."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the sweep file {path}: {exc.strerror}") from None
    try:
        if Path(path).suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as exc:
        kind = "TOML" if Path(path).suffix.lower() == ".toml" else "JSON"
        raise UsageError(f"the sweep file {path} is not valid {kind}: {exc}") from None


def from_mapping(data: dict) -> Sweep:
    """A Sweep from a config file's contents: ``name``, ``grid`` (a table or a list of
    tables of the axes), ``train`` (shared training settings), ``evaluate`` (split, limit,
    device, base)."""
    known = {"name", "grid", "train", "evaluate"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"unknown sweep keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    grids = data.get("grid", {})
    grids = grids if isinstance(grids, list) else [grids]
    built = []
    for g in grids:
        bad = sorted(set(g) - set(AXES))
        if bad:
            raise UsageError(f"unknown grid keys: {', '.join(bad)} (known: {', '.join(AXES)})")
        built.append(Grid(**{k: list(v) if isinstance(v, list) else [v] for k, v in g.items()}))
    evaluate = data.get("evaluate", {})
    bad = sorted(set(evaluate) - {"split", "limit", "device", "base"})
    if bad:
        raise UsageError(f"unknown evaluate keys: {', '.join(bad)} (known: split, limit, device, base)")
    return Sweep(name=data.get("name", "sweep"), grids=built or [Grid()],
                 train=dict(data.get("train", {})), split=evaluate.get("split", "test"),
                 eval_limit=evaluate.get("limit"), eval_device=evaluate.get("device", "auto"),
                 eval_base=bool(evaluate.get("base", True)))


def run_sweep(store: Store, personas: list[Persona], sweep: Sweep, *,
              listener: Callable | None = None, say: Callable[[str], None] = lambda s: None,
              cancel: threading.Event | None = None) -> SweepOutcome:
    """Run (or continue) every cell, then build the report over the sweep's trainings."""
    from fairpp_app.training.data import run_debias
    from fairpp_app.training.evaluate import evaluate_adapter, evaluate_base
    from fairpp_app.training.report import build_report
    from fairpp_app.training.runner import run_training
    from fairpp_app.training.session import base_spec

    cancel = cancel or threading.Event()
    plan = cells(sweep)
    first = plan[0].config
    store.get_run(first.from_run)  # a clear error before any work
    debias = run_debias(store, first.from_run)
    evaluation = dict(split=sweep.split, limit=sweep.eval_limit, device=sweep.eval_device,
                      listener=listener, cancel=cancel)
    for cell in plan:  # refuse a stale cell before any work
        row = store.find_training(cell.name)
        if row is not None:
            stored = _comparable(TrainingConfig.from_json(row["config"].get("config", {})).as_json())
            wanted = _comparable(cell.config.as_json())
            differ = [f"{k} {stored.get(k)} (now {wanted.get(k)})" for k in wanted
                      if stored.get(k) != wanted.get(k)]
            if row["base_model"] != base_spec(cell.config.base):
                differ.append(f"base {row['base_model']} (now {base_spec(cell.config.base)})")
            if differ:
                raise UsageError(f"training '{cell.name}' exists with other settings than this "
                                 f"sweep's: {', '.join(differ)}; give the sweep another --name")
    if sweep.eval_base:
        from fairpp_app.backends.hf_models import model_display_name

        run = store.find_run(base_run_name(model_display_name(first.base), debias))
        if run is None or run["status"] != "finished":
            say("evaluating the base model")
            evaluate_base(store, personas, first.base, debias=debias, **evaluation)
    done: list[dict] = []
    failed: set[str] = set()
    for i, cell in enumerate(plan, start=1):
        if cancel.is_set():
            break
        where = f"[{i}/{len(plan)}] {cell.name}"
        if cell.config.init_from in failed:
            done.append({"name": cell.name, "status": "skipped-start-failed",
                         "message": f"its start {cell.config.init_from} failed"})
            failed.add(cell.name)
            continue
        try:
            status = _run_cell(store, personas, cell, where, say, listener, cancel, run_training)
            if status == "finished":
                run = store.find_run(eval_run_name(cell.name))
                if run is None or run["status"] != "finished":
                    say(f"{where}: evaluating")
                    ended = evaluate_adapter(store, personas, cell.name, **evaluation)
                    status = "finished" if ended.status == "finished" else f"evaluation {ended.status}"
            done.append({"name": cell.name, "status": status, "message": ""})
        except FairppError as exc:
            say(f"{where}: failed: {exc}")
            done.append({"name": cell.name, "status": "failed", "message": str(exc)})
        if done[-1]["status"] != "finished":
            failed.add(cell.name)
    outcome = SweepOutcome(done)
    if not cancel.is_set():
        from fairpp_app.core.targets import parse_target

        outcome.report = build_report(store, personas, parse_target(first.target, personas),
                                      first.from_run, sweep.split, variants=True,
                                      only=[c.name for c in plan])
    return outcome


def _run_cell(store, personas, cell: Cell, where: str, say, listener, cancel, run_training) -> str:
    row = store.find_training(cell.name)
    if row is not None and row["status"] == "finished":
        say(f"{where}: trained already")
        return "finished"
    if row is None:
        say(f"{where}: training")
        outcome = run_training(store, personas, cell.config, listener=listener, cancel=cancel)
    else:
        say(f"{where}: resuming ({row['status']})")
        outcome = run_training(store, personas, resume=cell.name, listener=listener, cancel=cancel)
    return outcome.status

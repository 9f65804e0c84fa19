"""Events shared by the CLI, the TUI and the trainers.

Long work (simulation, training) reports through these plain dataclasses: they are stored
in the events table, so a later session can replay a run's history, and handed to a
listener callback, so a progress bar or a chart can draw them as they happen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Event:
    kind = "event"

    def payload(self) -> dict:
        return asdict(self)


@dataclass
class RunStarted(Event):
    kind = "run_started"
    run: str
    planned: int
    already_done: int
    backend: str
    model: str
    mode: str


@dataclass
class Progress(Event):
    kind = "progress"
    run: str
    done: int
    total: int
    rate: float  # records per second in this session
    eta_s: float | None
    errors: int = 0
    unparsed: int = 0


@dataclass
class RetryScheduled(Event):
    kind = "retry"
    run: str
    attempt: int
    delay_s: float
    error: str


@dataclass
class RunEnded(Event):
    kind = "run_ended"
    run: str
    status: str  # finished, stopped, failed, cancelled
    done: int
    total: int
    message: str = ""


@dataclass
class RunCrashed(Event):
    """The supervisor saw the process working on a run die without ending it: by a signal
    (SIGKILL is how the kernel's OOM killer ends a process) or by a non-zero exit."""

    kind = "run_crashed"
    run: str
    signal: str | None
    exit_code: int | None
    stderr_tail: list[str] = field(default_factory=list)

    def describe(self) -> str:
        how = self.signal or f"exit code {self.exit_code}"
        return f"crashed ({how})"


@dataclass
class TrainingStarted(Event):
    kind = "train_started"
    training: str
    method: str
    target: str
    base_model: str
    device: str
    questions: int
    pairs: int
    total_steps: int
    start_step: int = 0
    skipped: int = 0  # questions whose target answer is unparsed
    letters: dict[str, float] = field(default_factory=dict)  # target's answers, share per letter
    weighted_letters: dict[str, float] | None = None  # the same by sample weight (w-methods)


@dataclass
class TrainingStep(Event):
    kind = "train_step"
    training: str
    step: int
    loss: float
    learning_rate: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None


@dataclass
class TrainingEval(Event):
    kind = "train_eval"
    training: str
    step: int
    target: str
    similarity: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    margin: float | None = None
    loss: float | None = None


@dataclass
class TrainingEnded(Event):
    kind = "train_ended"
    training: str
    status: str  # finished, failed, cancelled, interrupted
    step: int
    message: str = ""
    adapter_path: str | None = None



#: Every event class by its stored ``kind``, for readers of the events table.
EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (
    RunStarted, Progress, RetryScheduled, RunEnded, RunCrashed,
    TrainingStarted, TrainingStep, TrainingEval, TrainingEnded)}


def event_from(kind: str, payload: dict) -> Event | None:
    """The event a stored ``(kind, payload)`` row was written from; None for an unknown kind
    (a newer version's event), so that an older reader skips it instead of failing.
    Fields the class does not know are dropped for the same reason."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in names})

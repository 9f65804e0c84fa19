"""How a training ends: finished, paused, cancelled or failed, written once.

Whatever stops a run, its row gets the status, a ``TrainingEnded`` event says why (with
the command that continues it where there is one), and the caller gets a
:class:`TrainingOutcome` or the exception. Both trainers end through here, so a run
stopped by Ctrl-C, a diverged loss or a crash reads the same whichever framework trained
it. The step reported is the session's last finished step, which the trainers keep up to
date through ``TrainingSession.record_step``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fairpp_app.core.errors import FairppError
from fairpp_app.core.events import TrainingEnded
from fairpp_app.training.session import TrainingOutcome, TrainingSession


def end(session: TrainingSession, status: str, step: int, message: str = "",
        adapter: str | None = None) -> TrainingOutcome:
    session.mark(status, adapter)
    session.emit(TrainingEnded(session.name, status, step, message, adapter))
    return TrainingOutcome(session.name, status, step, adapter, message, session.data().summary())


def finished(session: TrainingSession, step: int, adapter: str) -> TrainingOutcome:
    return end(session, "finished", step, "", adapter)


def cancelled(session: TrainingSession, step: int) -> TrainingOutcome:
    """Stopped early on request: ``paused`` when the stop asked for a pause (the supervisor's
    SIGUSR1), ``cancelled`` otherwise; either way a checkpoint was saved and it resumes."""
    status = getattr(session.cancel, "status", "cancelled")
    return end(session, status, step,
               f"{status} at step {step}; resume with --resume {session.name}")


@contextmanager
def on_failure(session: TrainingSession) -> Iterator[None]:
    """Marks the training cancelled (Ctrl-C) or failed, with an event, and lets the exception go on.

    ``interrupted`` is never written here: it means the owner vanished unseen (``kill -9``, a
    closed terminal), which the store finds out when trainings are next read."""
    try:
        yield
    except KeyboardInterrupt:
        _stop(session, "cancelled", f"cancelled; resume with --resume {session.name}")
        raise
    except FairppError as exc:
        _stop(session, "failed", str(exc))
        raise
    except BaseException as exc:
        _stop(session, "failed", repr(exc))
        raise


def _stop(session: TrainingSession, status: str, message: str) -> None:
    if session.owned_elsewhere():
        return  # refused because another process works on it: its row is not ours to end
    session.mark(status)
    session.emit(TrainingEnded(session.name, status, session.step, message))

"""How a training ends: finished, cancelled, interrupted or failed, written once.

Whatever stops a run, its row gets the status, a ``TrainingEnded`` event says why (with
the command that continues it where there is one), and the caller gets a
:class:`TrainingOutcome` or the exception. Both trainers end through here, so a run
killed by Ctrl-C, a diverged loss or a crash reads the same whichever framework trained
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
    return end(session, "cancelled", step,
               f"cancelled at step {step}; resume with --resume {session.name}")


@contextmanager
def on_failure(session: TrainingSession) -> Iterator[None]:
    """Marks the run interrupted (Ctrl-C) or failed, with an event, and lets the exception go on."""
    try:
        yield
    except KeyboardInterrupt:
        _stop(session, "interrupted", f"interrupted; resume with --resume {session.name}")
        raise
    except FairppError as exc:
        _stop(session, "failed", str(exc))
        raise
    except BaseException as exc:
        _stop(session, "failed", repr(exc))
        raise


def _stop(session: TrainingSession, status: str, message: str) -> None:
    session.mark(status)
    session.emit(TrainingEnded(session.name, status, session.step, message))

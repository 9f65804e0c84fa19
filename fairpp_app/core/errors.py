"""Errors a user may see.

Every exception deriving from :class:`FairppError` carries a message written for the
person at the keyboard; the CLI prints it without a traceback and the TUI shows it as a
notification. Anything else escaping is a bug.
"""

from __future__ import annotations


class FairppError(Exception):
    """An error with a message meant for the user."""

    exit_code = 1


class UsageError(FairppError):
    exit_code = 2


class ConfigError(FairppError):
    exit_code = 2


class PersonaFileError(FairppError):
    exit_code = 2


class UnknownPersonaError(FairppError):
    exit_code = 2


class DatabaseError(FairppError):
    """The file at the database path is not one fairpp can use."""

    exit_code = 3


class NotFoundError(FairppError):
    exit_code = 4


class ImportFileError(FairppError):
    exit_code = 2


class BackendError(FairppError):
    """A backend failed; ``transient`` says whether retrying may help."""

    transient = False
    #: The HTTP status a server answered with, when one did (a 404 on the model list means
    #: "no such endpoint", not "no such model").
    status: int | None = None


class TransientBackendError(BackendError):
    """Connection refused, timeout, HTTP 429 or 5xx: worth retrying."""

    transient = True


class PermanentBackendError(BackendError):
    """Unknown model, bad key, unsupported request: retrying will not help."""

    exit_code = 2


class UnscorableOutput(BackendError):
    """The model answered, but none of the option letters can be read from its output.

    This is a property of one answer, not a fault of the backend: the engine records the
    prompt as unparsed and goes on. ``key`` is the prompt's (question id, respondent),
    ``top`` the tokens the model preferred instead.
    """

    transient = False

    def __init__(self, message: str, key: tuple[str, str] = ("", ""),
                 top: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.top = top or {}


def user_message(error: BaseException) -> str:
    """What the user reads about a failure: a FairppError's own message; anything else is
    a bug, named as unexpected with its exception type so that it can be reported."""
    if isinstance(error, FairppError):
        return str(error)
    return f"unexpected error ({type(error).__name__}): {error}"

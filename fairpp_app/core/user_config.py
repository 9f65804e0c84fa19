"""The user's config file (TOML): defaults for commands and, optionally, API keys.

    [simulate]                 # any `fairpp simulate` option, by its field name
    backend = "openai"
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "MY_SERVER_KEY"

    [keys]                     # used only when the environment lacks the variable
    MY_SERVER_KEY = "sk-..."

    [app]
    max_jobs = 1               # heavy jobs (simulations, trainings) the app runs at once;
                               # more wait in its queue. $FAIRPP_MAX_JOBS overrides it.

Precedence: built-in defaults < this file < command-line flags. Keys are looked up by the
variable *name* a run stores; the value is handed to the client and never stored, logged or
exported. The file lives where `fairpp info` says (``$FAIRPP_CONFIG`` overrides it) and
should be readable by its owner only.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from functools import lru_cache
from pathlib import Path

from fairpp_app.core.errors import ConfigError
from fairpp_app.core.paths import config_path

SECTIONS = ("simulate", "keys", "app")
APP_OPTIONS = {"max_jobs": "a whole number of 1 or more"}
MAX_JOBS_ENV = "FAIRPP_MAX_JOBS"


def _check_section(cls, section: dict, source: str, name: str) -> dict:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{source}: [{name}] has no option '{key}' "
                              f"(known: {', '.join(sorted(known))})")
        expected = hints[key]
        allowed = typing.get_args(expected) or (expected,)
        allowed = tuple(float if t is float else t for t in allowed if t is not type(None))
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            names = " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"{source}: [{name}] {key} must be {names}, got {value!r}")
    return dict(section)


@lru_cache(maxsize=4)
def _load(path_text: str, mtime: float) -> dict:
    path = Path(path_text)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    from fairpp_app.core.simulation_config import SimulationConfig

    out = {"simulate": _check_section(SimulationConfig, data.get("simulate", {}), str(path), "simulate"),
           "keys": data.get("keys", {}), "app": _check_app(data.get("app", {}), str(path))}
    for name, value in out["keys"].items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: [keys] {name} must be a string")
    return out


def _check_app(section: dict, source: str) -> dict:
    for key in section:
        if key not in APP_OPTIONS:
            raise ConfigError(f"{source}: [app] has no option '{key}' "
                              f"(known: {', '.join(sorted(APP_OPTIONS))})")
    jobs = section.get("max_jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"{source}: [app] max_jobs must be {APP_OPTIONS['max_jobs']}, "
                          f"got {jobs!r}")
    return dict(section)


def load_config(path: Path | None = None) -> dict:
    path = path or config_path()
    if not path.exists():
        return {"simulate": {}, "keys": {}, "app": {}}
    return _load(str(path), path.stat().st_mtime)


def secret(name: str) -> str | None:
    """The value of an API-key variable: the environment first, then the config file."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    value = load_config()["keys"].get(name, "").strip()
    return value or None


def max_jobs(path: Path | None = None) -> int:
    """Heavy jobs the app runs at once: ``$FAIRPP_MAX_JOBS``, else ``[app] max_jobs``, else 1."""
    text = os.environ.get(MAX_JOBS_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"${MAX_JOBS_ENV} must be {APP_OPTIONS['max_jobs']}, got {text!r}")
        return value
    return load_config(path)["app"].get("max_jobs", 1)

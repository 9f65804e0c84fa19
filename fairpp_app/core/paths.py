"""Where fairpp keeps its files.

Everything the application writes lives under one data directory: the platform's user
data dir by default, or ``$FAIRPP_HOME`` when set (tests point it at a temporary folder).
The package itself is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "fairpp"
HOME_ENV = "FAIRPP_HOME"
DB_FILENAME = "fairpp.db"


def data_dir() -> Path:
    override = os.environ.get(HOME_ENV)
    base = Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP_NAME))
    return base


def ensure_data_dir() -> Path:
    path = data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_path() -> Path:
    return data_dir() / DB_FILENAME


def user_personas_path() -> Path:
    """The user's own persona file; it adds to or overrides the shipped personas."""
    override = os.environ.get("FAIRPP_PERSONAS")
    return Path(override).expanduser() if override else data_dir() / "personas.toml"


def config_path() -> Path:
    override = os.environ.get("FAIRPP_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def cache_dir() -> Path:
    """Converted model weights and other re-creatable files."""
    return data_dir() / "cache"


def logs_dir() -> Path:
    """One log file per job the app started in a child process (its stderr)."""
    return data_dir() / "logs"

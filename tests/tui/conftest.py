"""Fixtures for the TUI tests: a real database file with a synthetic run in it."""

from __future__ import annotations

import pytest

from fairpp_app.tui.app import FairppApp
from tests.support.tui_data import insert_synthetic_run


@pytest.fixture
def synthetic(store):
    """``(store, run, questions)`` with the synthetic run inserted."""
    run, questions = insert_synthetic_run(store)
    return store, run, questions


@pytest.fixture
def make_app(db_path):
    """``make_app(path=db_path)``: a FairppApp on a real database file."""
    apps = []

    def make(path=None) -> FairppApp:
        app = FairppApp(path or db_path)
        apps.append(app)
        return app

    yield make
    for app in apps:
        try:
            app.store.close()
        except Exception:
            pass

"""Fixtures of the training tests: a tiny random model and a small synthetic persona run.

The model is the session's tiny Llama (``tiny_dir`` in tests/conftest.py): a BPE
tokenizer trained here on the bank's wording, two layers, random weights; it loads in a
second, so the four methods run end to end on the CPU in seconds. The persona run has the
seven personas answering 40 train and 10 test questions with seeded, varied answers (the
target disagrees with a varying number of others, so every weight tier shows up), plus one
train question whose target answer is unparsed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("trl")

from tests.support.training_data import N_TEST, N_TRAIN, PERSONA_RUN, persona_records


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny matrices gain nothing from threads, and idle OpenMP threads spin on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the CLI subprocesses
    yield before
    torch.set_num_threads(before)


@pytest.fixture
def persona_store(store, slugs):
    """The store with run 'personas': 7 personas over 40 train + 10 test questions."""
    train = store.questions("train", limit=N_TRAIN)
    test = store.questions("test", limit=N_TEST)
    run = store.create_run(PERSONA_RUN, "import", status="finished")
    store.upsert_records(persona_records(store, run["id"], train + test, slugs))
    return store


@pytest.fixture
def personas():
    from fairpp_app.core.personas import builtin_personas

    return builtin_personas()

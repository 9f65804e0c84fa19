"""Fixtures of the training tests: a tiny random model and a small synthetic persona run.

The model is the session's tiny Llama (``tiny_dir`` in tests/conftest.py): a BPE
tokenizer trained here on the bank's wording, two layers, random weights; it loads in a
second, so the four methods run end to end on the CPU in seconds. The persona run has the
seven personas answering 40 train and 10 test questions with seeded, varied answers (the
target disagrees with a varying number of others, so every weight tier shows up), plus one
train question whose target answer is unparsed.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("trl")


PERSONA_RUN = "personas"
N_TRAIN, N_TEST = 40, 10
TARGET_SLUG = "disengaged-traditionalists"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny matrices gain nothing from threads, and idle OpenMP threads spin on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the CLI subprocesses
    yield before
    torch.set_num_threads(before)


def persona_records(store, run_id: int, questions, slugs, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i, q in enumerate(questions):
        target = rng.choice("ABC")
        n_differ = i % 7  # 0..6 others differ from the target: tiers 1..7
        others = [s for s in slugs if s != TARGET_SLUG]
        differ = set(rng.sample(others, n_differ))
        for slug in slugs:
            if slug == TARGET_SLUG:
                letter = None if i == 3 else target
            elif slug in differ:
                letter = rng.choice([x for x in "ABC" if x != target])
            else:
                letter = target
            rows.append({"run_id": run_id, "question_id": q.id, "respondent": slug,
                         "raw_text": letter or "no idea", "answer": letter,
                         "method": "text", "respondent_kind": "persona"})
    return rows


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
    from fairpp_app.personas import builtin_personas

    return builtin_personas()

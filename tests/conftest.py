"""Shared fixtures: every test runs against its own data directory and real SQLite files.

The question bank is built once per session into a template database; tests that need a
store get a copy of that file, so building 28,420 questions is paid for once.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from fairpp_app.core import questions as qb
from fairpp_app.core.personas import builtin_personas
from fairpp_app.store.database import Store

PERSONA_SOURCE = "gpt-4o-mini"
DEFAULT_MODELS = ("Qwen2.5-7B-Instruct",)
SLUGS = ("progressive-activists", "civic-pragmatists", "disengaged-battlers",
         "established-liberals", "loyal-nationals", "disengaged-traditionalists",
         "backbone-conservatives")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Point every fairpp path at tmp_path and drop anything that could reach a server."""
    home = tmp_path / "home"
    monkeypatch.setenv("FAIRPP_HOME", str(home))
    monkeypatch.setenv("FAIRPP_PERSONAS", str(tmp_path / "absent" / "personas.toml"))
    monkeypatch.setenv("FAIRPP_CONFIG", str(tmp_path / "absent" / "config.toml"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    return home


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory) -> Path:
    """One data dir shared by every test that needs the embedded model converted to HF
    format, so the GGUF is assembled and converted (about a minute, 1 GB) once per session."""
    return tmp_path_factory.mktemp("embedded-home")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random Llama folder (tests/backends/tiny_models.py), built once per session."""
    from tests.support.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    """Gemma 3 layout with a sliding window shorter than the prompts and logit softcapping."""
    from tests.support.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-gemma", arch="gemma3",
                            sliding_window=8, softcap=2.0)


@pytest.fixture(scope="session")
def bank() -> list[qb.Question]:
    """The full template bank (built once; treat as read-only)."""
    return qb.build_bank()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory, bank) -> Path:
    """A closed database file holding the bank and the built-in personas."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    with Store(path) as s:
        s.upsert_questions(bank)
        s.sync_personas(builtin_personas())
    # Closing the last connection checkpoints the WAL, so the file alone is complete.
    assert not Path(str(path) + "-wal").exists()
    return path


@pytest.fixture
def db_path(tmp_path, template_db) -> Path:
    """A fresh copy of the template database (closed), for tests that open it themselves."""
    path = tmp_path / "t.db"
    shutil.copyfile(template_db, path)
    return path


@pytest.fixture
def store(db_path):
    """A Store on tmp_path/'t.db' with the bank built and the personas synced."""
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def slugs() -> tuple[str, ...]:
    """The built-in persona slugs in persona-number order."""
    return SLUGS


@pytest.fixture(scope="session")
def sample(bank):
    """``sample(n, seed=0)``: seeded questions from the bank, in bank order."""

    def pick(n: int, seed: int = 0) -> list[qb.Question]:
        rng = random.Random(seed)
        return [bank[i] for i in sorted(rng.sample(range(len(bank)), n))]

    return pick


def fairpp_frame(questions: list[qb.Question], *, seed: int = 0,
                 models: tuple[str, ...] = DEFAULT_MODELS, float_perspective: bool = False,
                 framing_column: bool = False, scenario: bool = False,
                 index_column: bool = False):
    """The official Fair-PP layout (question fields, then ``{source}_role_{N}_answer`` per
    persona and ``{model}_answer`` per model) with seeded random answers.

    Returns ``(frame, answers)`` where ``answers[qid][respondent]`` is the letter each
    respondent was given (persona respondents by slug, models by name).
    """
    import pandas as pd

    rng = random.Random(seed)
    rows, answers = [], {}
    for q in questions:
        topic_no = qb.topic_index(q.topic)
        row = {
            "Topic": q.topic, "Problem Category": q.category, "Specific Problem": q.problem,
            "Group Type": q.group_type, "Group": q.group_name,
            "Perspective": (topic_no + q.dimension / 10) if float_perspective
            else f"{topic_no}.{q.dimension}",
            "Option": qb.dimension_poles(q.dimension)[q.framing - 1],
            "Question": qb.render(q.topic, q.problem, q.group_name, q.dimension, q.framing)[0],
        }
        if framing_column:
            row["Framing"] = q.framing
        if scenario:
            for letter in "ABC":
                row[f"Option_{letter}"] = (f"Scenario {letter} for {q.group_name} and "
                                           f"{q.problem}: someone receives it for a reason.")
            row["simulation_question"] = (f"Which scenario about {q.group_name} and "
                                          f"{q.problem} do you favour?")
        given = {}
        for i, slug in enumerate(SLUGS, start=1):
            k = rng.randrange(3)
            row[f"{PERSONA_SOURCE}_role_{i}"] = f"{'ABC'[k]}. because reasons {i}"
            row[f"{PERSONA_SOURCE}_role_{i}_answer"] = k
            given[slug] = "ABC"[k]
        for model in models:
            k = rng.randrange(3)
            row[f"{model}_answer"] = k
            given[model] = "ABC"[k]
        answers[scenario_or_template_id(q, scenario)] = given
        rows.append(row)
    frame = pd.DataFrame(rows)
    if index_column:
        frame.insert(0, "", range(len(frame)))
    return frame, answers


def scenario_or_template_id(q: qb.Question, scenario: bool) -> str:
    return qb.scenario_id(q.id) if scenario else q.id


@pytest.fixture(scope="session")
def make_fairpp_frame():
    """``fairpp_frame`` as a fixture, for tests that want the table without a file."""
    return fairpp_frame


@pytest.fixture
def write_fairpp_file(tmp_path):
    """``write(questions, name="fairpp.csv", **fairpp_frame options) -> (path, answers)``.

    The suffix picks the format (.csv or .parquet); ``index_column=True`` writes the
    unnamed leading index column some official exports have.
    """

    def write(questions, name: str = "fairpp.csv", **options):
        frame, answers = fairpp_frame(questions, **options)
        path = tmp_path / name
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path, answers

    return write

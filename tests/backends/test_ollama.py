"""The ollama backend against a loopback Ollama stand-in that runs the real embedded model.

One fake server (tests/backends/ollama_server.py) serves the whole module; the model is
loaded once. Tests that stop the server start it again before they return.
"""

from __future__ import annotations

import math
import socket

import pytest

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.ollama_backend import OllamaBackend, UnscorableOutput, scores_from_top
from fairpp_app.backends.registry import create
from fairpp_app.core.errors import BackendError, PermanentBackendError, TransientBackendError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import Prompt
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from tests.support.ollama_server import MODEL, Engine, FakeOllama

pytestmark = pytest.mark.model

PROMPT = Prompt(
    system="Answer the survey question below as the following person would.\n\n"
           "A retired teacher who values fairness above all.",
    user="Question: Should people who work harder earn more?\n\nA. Yes, effort should be "
         "rewarded\nB. No, everyone should earn the same\nC. It depends on the job\n\n"
         "Reply with the letter of one option only (A, B or C).")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRPP_HOME", str(tmp_path_factory.mktemp("ollama-home")))  # the GGUF goes here
        # One llama.cpp thread: the server shares the cores with the client and the engine's
        # pool, and a multi-threaded decode stalls at its barriers when a core is taken.
        mp.setenv("FAIRPP_THREADS", "1")
        engine = Engine()
    server = FakeOllama(engine).start()
    yield server
    server.stop()
    engine.backend.close()


@pytest.fixture
def server(fake):
    """The module's server, running and un-rigged at the start and end of each test."""
    fake.reset()
    fake.start()
    yield fake
    fake.reset()
    fake.start()


def backend(server, **extra) -> OllamaBackend:
    return OllamaBackend(BackendOptions(model=MODEL, base_url=server.url, extra=extra))


def config(server, **overrides) -> SimulationConfig:
    values = dict(backend="ollama", base_url=server.url, model=MODEL, split="test", limit=3,
                  personas="1,6", max_retries=1, retry_delay=0.01)
    return SimulationConfig(**{**values, **overrides})


def counts(store) -> tuple[int, int]:
    return tuple(store.db.execute(
        "SELECT count(*), count(DISTINCT question_id || '|' || respondent) FROM records").fetchone())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_creates_the_ollama_backend(server):
    b = create("ollama", BackendOptions(model=MODEL, base_url=server.url))
    assert isinstance(b, OllamaBackend)
    assert b.SUPPORTS_LOGPROBS and b.SUPPORTS_CONCURRENCY
    assert b.describe() == {"backend": "ollama", "model": MODEL, "host": server.url, "api": "generate"}
    b.close()
    b.close()  # twice is fine


def test_logprob_scores_are_a_distribution_matching_llama_cpp(server):
    with backend(server) as b:
        [scores] = b.score_options([PROMPT])
    assert math.isclose(sum(scores.probs), 1.0, abs_tol=1e-9)
    assert all(0.0 <= p <= 1.0 for p in scores.probs)
    assert scores.other_mass is not None and 0.0 <= scores.other_mass < 1.0
    # What went over the wire: the field names of Ollama's API as ollama-python sends them.
    body = server.bodies[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["raw"] is True and body["stream"] is False
    assert body["prompt"] == PROMPT.as_text()
    assert body["options"]["num_predict"] == 1 and body["options"]["temperature"] == 0
    # The same model in-process must give the same distribution (top-20 cut aside).
    with server.engine.lock:
        [direct] = server.engine.backend.score_options([PROMPT])
    assert scores.answer == direct.answer
    for ours, theirs in zip(scores.probs, direct.probs):
        assert ours == pytest.approx(theirs, abs=0.02)


def test_old_clients_get_logprobs_through_raw_http(server):
    with backend(server) as b:
        [through_client] = b.score_options([PROMPT])
        b._client_sends_logprobs = False  # as with ollama-python < 0.6.1
        [through_httpx] = b.score_options([PROMPT])
    assert through_httpx.probs == pytest.approx(through_client.probs)
    assert server.bodies[-1]["top_logprobs"] == 20 and server.bodies[-1]["stream"] is False


def test_chat_api_scores_and_generates(server):
    with backend(server, api="chat") as b:
        [scores] = b.score_options([PROMPT])
        assert math.isclose(sum(scores.probs), 1.0, abs_tol=1e-9)
        assert server.bodies[-1]["messages"] == PROMPT.messages()
        [text] = b.generate([PROMPT], max_tokens=4)
    assert isinstance(text, str) and text
    assert server.bodies[-1]["options"]["num_predict"] == 4
    assert "logprobs" not in server.bodies[-1]


def test_text_mode_generates_greedily(server):
    with backend(server) as b:
        first = b.generate([PROMPT], max_tokens=8)
        again = b.generate([PROMPT], max_tokens=8)
    assert first == again and isinstance(first[0], str) and first[0]
    body = server.bodies[-1]
    assert body["options"] == {"temperature": 0.0, "num_predict": 8, "seed": 0}
    assert body["raw"] is True and "logprobs" not in body


def test_list_models(server):
    with backend(server) as b:
        assert b.list_models() == [MODEL]


def test_ollama_host_env_is_used_without_base_url(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")  # the form users export
    with OllamaBackend(BackendOptions(model=MODEL)) as b:
        assert b.host == f"127.0.0.1:{server.port}"
        assert b.list_models() == [MODEL]
        assert b.describe()["host"] == server.url


def test_base_url_wins_over_ollama_host(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with backend(server) as b:
        assert b.list_models() == [MODEL]


def test_unknown_model_is_permanent_and_says_what_to_do(server):
    with OllamaBackend(BackendOptions(model="llama9:70b", base_url=server.url)) as b:
        with pytest.raises(PermanentBackendError) as info:
            b.score_options([PROMPT])
    message = str(info.value)
    assert "no model 'llama9:70b'" in message
    assert f"installed: {MODEL}" in message
    assert "ollama pull llama9:70b" in message


def test_unknown_model_fails_the_run(server, store):
    outcome = run_simulation(store, config(server, model="llama9:70b"), builtin_personas())
    assert outcome.status == "failed" and "ollama pull llama9:70b" in outcome.message
    assert counts(store) == (0, 0)


def test_missing_model_name_is_permanent(server):
    with OllamaBackend(BackendOptions(base_url=server.url)) as b:
        with pytest.raises(PermanentBackendError, match="needs --model"):
            b.generate([PROMPT])


def test_unreachable_server_is_transient():
    with OllamaBackend(BackendOptions(model=MODEL, base_url=f"http://127.0.0.1:{free_port()}",
                                      timeout=5)) as b:
        with pytest.raises(TransientBackendError, match="unreachable"):
            b.score_options([PROMPT])


@pytest.mark.parametrize("status", [429, 500, 503])
def test_busy_or_broken_server_is_transient(server, status):
    server.fail_next(status)
    with backend(server) as b:
        with pytest.raises(TransientBackendError, match=str(status)):
            b.score_options([PROMPT])


def test_other_client_errors_are_permanent(server):
    server.fail_next(400)
    with backend(server) as b:
        with pytest.raises(PermanentBackendError, match="refused the request"):
            b.generate([PROMPT])


def test_a_run_rides_out_a_busy_server(server, store):
    server.fail_next(503, times=2)
    events = []
    outcome = run_simulation(store, config(server, personas="1", limit=1, max_retries=3),
                             builtin_personas(), listener=events.append)
    assert outcome.status == "finished" and counts(store) == (1, 1)
    assert [e.kind for e in events].count("retry") == 2


def test_letters_are_summed_over_spellings_and_other_mass_kept():
    top = [{"token": " A", "logprob": math.log(0.4)}, {"token": "A", "logprob": math.log(0.1)},
           {"token": " B", "logprob": math.log(0.25)}, {"token": " The", "logprob": math.log(0.2)},
           {"token": "A.", "logprob": math.log(0.05)}]
    scores = scores_from_top(top)
    assert scores.probs == pytest.approx((0.5 / 0.75, 0.25 / 0.75, 0.0))
    assert scores.other_mass == pytest.approx(0.25)


def test_no_letter_in_the_top_tokens_is_unscorable():
    with pytest.raises(UnscorableOutput, match="none of the options") as info:
        scores_from_top([{"token": " The", "logprob": -0.5}, {"token": "\n\n", "logprob": -1.5}])
    assert isinstance(info.value, BackendError) and not info.value.transient
    assert not isinstance(info.value, (TransientBackendError, PermanentBackendError))


def test_full_run_writes_every_record(server, store):
    outcome = run_simulation(store, config(server), builtin_personas())
    assert (outcome.status, outcome.written, outcome.total) == ("finished", 6, 6)
    assert counts(store) == (6, 6)
    for p_a, p_b, p_c in store.db.execute("SELECT p_a, p_b, p_c FROM records"):
        assert p_a + p_b + p_c == pytest.approx(1.0)


def test_server_goes_away_mid_run_and_the_rerun_completes(server, store):
    server.go_away_after(4)
    first = run_simulation(store, config(server), builtin_personas())
    assert first.status == "stopped", first.message
    assert "Run the same command again" in first.message
    assert server.gone.wait(5) and not server.running
    assert counts(store) == (4, 4)  # every answer that arrived was saved

    server.start()  # same port: the backend comes back
    second = run_simulation(store, config(server), builtin_personas())
    assert second.status == "finished", second.message
    assert (second.written, second.done, second.total) == (2, 6, 6)
    assert counts(store) == (6, 6)
    assert [r["status"] for r in store.list_runs()] == ["finished"]

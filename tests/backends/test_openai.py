"""The openai backend against a real llama.cpp server and small loopback fault servers.

One ``python -m llama_cpp.server`` on the embedded Gemma 3 270M GGUF serves the module.
The llama.cpp server answers with its one model whatever name a request carries, so the
unknown-model checks use it for the backend's own /models check and a fault server for
the server-side 404. Faults (401, 429, 503, a server going away) come from stdlib HTTP
servers on 127.0.0.1 that this file starts; nothing else is reached.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.registry import create
from fairpp_app.core.answers import LETTERS, parse_letter
from fairpp_app.core.errors import PermanentBackendError, TransientBackendError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import Prompt, build_prompt
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from tests.support.llama_server import llama_server as start_llama_server

pytestmark = [pytest.mark.model, pytest.mark.timeout(120)]

ALIAS = "gemma-3-270m"
SECRET = "sk-secret-xyz-0123456789abcdefFAIRPP"


# ---- servers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    """The embedded GGUF, assembled into a temporary data dir (not the user's)."""
    from fairpp_app.backends.llamacpp import embedded_model_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRPP_HOME", str(tmp_path_factory.mktemp("model-home")))
        return embedded_model_path()


@pytest.fixture(scope="module")
def llama_server(gguf, tmp_path_factory) -> str:
    """Base URL (…/v1) of a real llama.cpp server on a free loopback port."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    try:
        with start_llama_server(gguf, log, ALIAS) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 that can stop and start again on the same port."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, bytes], None]) -> None:
        self.handle = handle
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> _Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.handle(self, body)

            do_GET = do_POST = _any

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self.httpd = self.httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def fault_server():
    """``fault_server(handle)`` -> a started loopback server; ``handle(handler, body)`` answers."""
    started = []

    def start(handle):
        server = _Server(handle).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Proxy:
    """Forwards to the llama server; can fail the first requests, or go away after a budget.

    ``fail`` holds HTTP statuses answered instead of forwarding, one per request, in order.
    After ``budget`` forwarded POSTs the proxy drops the next connection unanswered and
    closes its port, as a crashed server would.
    """

    def __init__(self, upstream: str, fail: list[int] | None = None, budget: int | None = None) -> None:
        self.upstream = upstream.split("//", 1)[1].split("/", 1)[0]
        self.fail = list(fail or [])
        self.budget = budget
        self.forwarded = 0
        self.failed = 0
        self.auth_seen: set[str] = set()
        self.lock = threading.Lock()
        self.server = _Server(self._handle)

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.auth_seen.add(handler.headers.get("Authorization", ""))
        with self.lock:
            status = self.fail.pop(0) if self.fail else None
            going_away = (status is None and handler.command == "POST" and self.budget is not None
                          and self.forwarded >= self.budget)
            if status is not None:
                self.failed += 1
            elif handler.command == "POST" and not going_away:
                self.forwarded += 1
        if going_away:
            threading.Thread(target=self.server.stop, daemon=True).start()
            return  # no response: the client sees the connection close
        if status is not None:
            send_json(handler, status, {"error": {"message": f"injected {status}", "type": "fault"}})
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() in ("content-type", "authorization", "accept")}
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        handler.send_response(resp.status)
        handler.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Proxy:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def proxy(llama_server):
    made = []

    def make(**kw) -> Proxy:
        p = Proxy(llama_server, **kw).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# ---- helpers ---------------------------------------------------------------------------------

def backend(base_url: str, model: str | None = ALIAS, **extra):
    key_env = extra.pop("api_key_env", None)
    return create("openai", BackendOptions(model=model, base_url=base_url, api_key_env=key_env,
                                           timeout=30, extra=extra))


def prompts(store, n: int = 3) -> list[Prompt]:
    persona = builtin_personas()[0]
    return [build_prompt(q, persona) for q in store.questions("all", limit=n)]


def config(base_url: str, **kw) -> SimulationConfig:
    base = dict(backend="openai", model=ALIAS, base_url=base_url, personas="1,2", limit=3,
                mode="logprob", concurrency=4, retry_delay=0.02, max_retries=6)
    return SimulationConfig(**{**base, **kw})


def record_stats(store, run_name: str) -> tuple[int, int]:
    run = store.get_run(run_name)
    total, distinct = store.db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT question_id || '|' || respondent) FROM records "
        "WHERE run_id = ?", [run["id"]]).fetchone()
    return total, distinct


def completion_payload(top: dict[str, float]) -> dict:
    token = max(top, key=top.get)
    return {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "text": token, "finish_reason": "length",
                         "logprobs": {"tokens": [token], "token_logprobs": [top[token]],
                                      "top_logprobs": [top], "text_offset": [0]}}]}


def models_payload(*ids: str) -> dict:
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "x"}
                                       for i in ids]}


# ---- against the real llama.cpp server -------------------------------------------------------
# That server computes logits for every prompt token when asked for logprobs (Gemma has a
# 262k vocabulary), so each new prompt costs seconds on CPU: these tests ask for few.

def test_logprob_scores_match_in_process_llama(llama_server, store):
    """Top-20 letter probabilities from the server agree with the full-vocabulary ones."""
    from fairpp_app.backends.llamacpp import EmbeddedBackend

    ps = prompts(store, 1)
    with backend(llama_server) as b:
        assert b.describe()["model"] == ALIAS
        remote = b.score_options(ps)
    with EmbeddedBackend(BackendOptions(extra={"chat": "off"})) as local_backend:
        local = local_backend.score_options(ps)
    for r, loc in zip(remote, local):
        assert math.isclose(sum(r.probs), 1.0, abs_tol=1e-9)
        assert 0.0 <= r.other_mass <= 1.0
        assert r.raw["top_k"] == 20
        assert r.answer in LETTERS and r.probs[LETTERS.index(r.answer)] == max(r.probs)
        assert r.answer == loc.answer
        if all(r.raw[L] is not None for L in LETTERS):  # all three in the top 20
            # Not bit-equal: the server evaluates the prompt in other batch shapes.
            assert r.probs == pytest.approx(loc.probs, abs=0.01)
            assert r.other_mass == pytest.approx(loc.other_mass, abs=0.01)


def test_text_mode_generates_and_parses(llama_server, store):
    out = run_simulation(store, config(llama_server, run="txt", mode="text", limit=1, max_tokens=3),
                         builtin_personas())
    assert (out.status, out.written) == ("finished", 2)
    frame = store.record_frame(store.get_run("txt")["id"])
    assert len(frame) == 2
    for raw, answer in zip(frame["raw_text"], frame["answer"]):
        assert isinstance(raw, str) and raw
        assert (None if answer != answer else answer) == parse_letter(raw)  # NaN for unparsed


def test_list_models_and_default_model(llama_server):
    with backend(llama_server, model=None) as b:
        assert b.list_models() == [ALIAS]
        assert b.model_name == ALIAS  # the server's only model
        assert b.describe() == {"backend": "openai", "model": ALIAS, "base_url": llama_server,
                                "api_key_env": "OPENAI_API_KEY", "api": "completions"}


def test_unknown_model_is_refused_though_llama_server_would_ignore_it(llama_server, store):
    """llama.cpp's server answers any model name with its own model; the backend checks /models."""
    with backend(llama_server, model="gpt-9") as b:
        with pytest.raises(PermanentBackendError,
                           match=r"does not know model 'gpt-9' \(models: gemma-3-270m\)"):
            b.score_options(prompts(store, 1))
    out = run_simulation(store, config(llama_server, model="gpt-9", run="bad-model"), builtin_personas())
    assert out.status == "failed" and "gpt-9" in out.message and out.written == 0


def test_chat_api_against_llama_server(llama_server, store):
    with backend(llama_server, api="chat") as b:
        assert isinstance(b.generate(prompts(store, 1), max_tokens=1)[0], str)


# ---- faults ----------------------------------------------------------------------------------

def test_logprob_run_retries_429_and_503(proxy, store):
    p = proxy(fail=[429, 503, 429, 503])
    out = run_simulation(store, config(p.url, run="retry", limit=1), builtin_personas())
    assert (out.status, out.done, out.total) == ("finished", 2, 2)
    assert record_stats(store, "retry") == (2, 2)
    frame = store.record_frame(store.get_run("retry")["id"])
    assert ((frame[["p_a", "p_b", "p_c"]].sum(axis=1) - 1).abs() < 1e-9).all()
    assert set(frame["answer"]) <= set(LETTERS) and set(frame["method"]) == {"logprob"}
    retries = [e["payload"] for e in store.events(run_id=store.get_run("retry")["id"])
               if e["kind"] == "retry"]
    assert p.failed == 4 and len(retries) == 4
    errors = " ".join(r["error"] for r in retries)
    assert "HTTP 429" in errors and "HTTP 503" in errors


def test_server_going_away_stops_then_resumes_without_duplicates(proxy, store):
    p = proxy(budget=2)
    cfg = config(p.url, run="flaky", mode="text", max_tokens=1, limit=2, max_retries=2)
    out = run_simulation(store, cfg, builtin_personas())
    assert out.status == "stopped" and "Run the same command again" in out.message
    assert record_stats(store, "flaky") == (2, 2) and out.done == 2
    assert store.get_run("flaky")["status"] == "stopped"

    p.budget = None
    p.start()  # same port
    again = run_simulation(store, cfg, builtin_personas())
    assert (again.status, again.done, again.total, again.written) == ("finished", 4, 4, 2)
    assert record_stats(store, "flaky") == (4, 4)


def test_api_key_is_sent_but_never_stored(proxy, store, db_path, monkeypatch):
    monkeypatch.setenv("FAIRPP_TEST_KEY", SECRET)
    p = proxy(fail=[503])  # one retry event, whose message must not carry the key either
    cfg = config(p.url, run="keyed", api_key_env="FAIRPP_TEST_KEY", mode="text", max_tokens=1,
                 limit=1, personas="1")
    out = run_simulation(store, cfg, builtin_personas())
    assert out.status == "finished" and out.written == 1
    assert p.auth_seen == {f"Bearer {SECRET}"}
    assert store.get_run("keyed")["params"]["api_key_env"] == "FAIRPP_TEST_KEY"
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(db_path) + suffix)
        if f.exists():
            assert SECRET.encode() not in f.read_bytes(), f.name
    store.close()
    assert SECRET.encode() not in db_path.read_bytes()


def test_rejected_key_is_permanent_and_not_echoed(fault_server, store, monkeypatch):
    monkeypatch.setenv("FAIRPP_TEST_KEY", SECRET)

    def handle(h, body):  # like OpenAI, the error body quotes the key
        send_json(h, 401, {"error": {"message": f"Incorrect API key provided: {SECRET}",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}})

    server = fault_server(handle)
    with backend(server.url, api_key_env="FAIRPP_TEST_KEY") as b:
        with pytest.raises(PermanentBackendError) as info:
            b.score_options(prompts(store, 1))
        assert "$FAIRPP_TEST_KEY was rejected" in str(info.value) and SECRET not in str(info.value)
        assert SECRET not in json.dumps(b.describe())
    out = run_simulation(store, config(server.url, run="badkey", api_key_env="FAIRPP_TEST_KEY"),
                         builtin_personas())
    assert out.status == "failed" and SECRET not in out.message


def test_server_side_unknown_model_404(fault_server, store):
    def handle(h, body):
        if h.path.endswith("/models") and h.command == "GET":
            return send_json(h, 404, {"error": {"message": "not found"}})  # no /models endpoint
        send_json(h, 404, {"error": {"message": "The model `gpt-9` does not exist",
                                     "code": "model_not_found"}})

    with backend(fault_server(handle).url, model="gpt-9") as b:
        with pytest.raises(PermanentBackendError, match="does not know model 'gpt-9'"):
            b.score_options(prompts(store, 1))


def test_several_models_need_a_choice(fault_server):
    server = fault_server(lambda h, body: send_json(h, 200, models_payload("big", "small")))
    with backend(server.url, model=None) as b:
        with pytest.raises(PermanentBackendError, match=r"offers 2 models \(big, small\); choose one"):
            _ = b.model_name


def test_refused_connection_is_transient(store):
    with backend(f"http://127.0.0.1:{free_port()}/v1") as b:
        with pytest.raises(TransientBackendError, match="cannot reach"):
            b.score_options(prompts(store, 1))


def test_letter_variants_summed_and_unscorable_reported(fault_server, store):
    from fairpp_app.backends.openai_backend import UnscorableOutput

    tops = iter([{"A": -1.0, " A": -2.0, "A.": -0.1, " B": -3.0, "Hello": -0.5},
                 {" No": -0.2, " Yes": -1.0}])
    asked = []

    def handle(h, body):
        if h.command == "GET":
            return send_json(h, 200, models_payload("m"))
        req = json.loads(body)
        asked.append(req["logprobs"])
        if req["logprobs"] > 5:  # a server that caps top-k
            return send_json(h, 400, {"error": {"message": "logprobs must be <= 5"}})
        send_json(h, 200, completion_payload(next(tops)))

    with backend(fault_server(handle).url, model="m") as b:
        s = b.score_options(prompts(store, 1))[0]
        assert asked == [20, 5] and b.top_k == 5
        assert s.raw["A"] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))
        assert s.raw["C"] is None and s.probs[2] == 0.0
        assert s.answer == "A" and s.other_mass == pytest.approx(
            1 - math.exp(-1) - math.exp(-2) - math.exp(-3))
        with pytest.raises(UnscorableOutput) as info:
            b.score_options(prompts(store, 1))
        assert not info.value.transient and "' No'" in str(info.value)


def test_chat_logprobs_shape(fault_server, store):
    def handle(h, body):
        if h.command == "GET":
            return send_json(h, 200, models_payload("chat-model"))
        req = json.loads(body)
        assert req["logprobs"] is True and req["top_logprobs"] == 20 and req["messages"][0]["role"] == "system"
        top = [("B", -0.5), (" B", -2.0), ("A.", -1.5), ("C", -3.0), ("The", -2.5)]
        def entry(t, lp):
            return {"token": t, "logprob": lp, "bytes": None}

        send_json(h, 200, {"id": "c", "object": "chat.completion", "created": 0, "model": "chat-model",
                           "choices": [{"index": 0, "finish_reason": "length",
                                        "message": {"role": "assistant", "content": "B"},
                                        "logprobs": {"content": [{**entry("B", -0.5), "top_logprobs":
                                                                  [entry(t, lp) for t, lp in top]}]}}]})

    with backend(fault_server(handle).url, model="chat-model", api="chat") as b:
        s = b.score_options(prompts(store, 1))[0]
    assert s.raw["A"] is None  # "A." is not the bare letter
    assert s.raw["B"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)))
    assert s.answer == "B"


def test_describe_hides_credentials_and_missing_key_is_clear(monkeypatch):
    b = backend("http://user:pw-hidden@127.0.0.1:9/v1", model="m")
    assert b.describe()["base_url"] == "http://127.0.0.1:9/v1"
    assert "pw-hidden" not in json.dumps(b.describe())
    b.close()
    monkeypatch.delenv("FAIRPP_NO_SUCH_KEY", raising=False)
    with pytest.raises(PermanentBackendError, match=r"\$FAIRPP_NO_SUCH_KEY is not set"):
        backend("http://127.0.0.1:9/v1", api_key_env="FAIRPP_NO_SUCH_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PermanentBackendError, match=r"\$OPENAI_API_KEY is not set"):
        create("openai", BackendOptions(model="gpt-4o-mini"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    b = create("openai", BackendOptions(model="gpt-4o-mini"))
    assert b.api == "chat" and b.describe()["base_url"] == "https://api.openai.com/v1"
    b.close()

"""A loopback stand-in for an Ollama server, answering with the real embedded model.

No Ollama can be installed where the tests run, so this speaks enough of Ollama's HTTP API
for the ``ollama`` Python client: ``GET /api/tags``, ``/api/version`` and ``/``,
``POST /api/generate``, ``/api/chat`` and ``/api/show``. Answers come from Gemma 3 270M
through :class:`fairpp_app.backends.llamacpp.EmbeddedBackend` (llama.cpp), so scores and
text are real model output, not canned strings.

Faithful where the backend depends on it:

* ``"stream"`` defaults to true as in Ollama; streamed answers are NDJSON over chunked
  HTTP/1.1, one object per token and a last one with ``"done": true``.
* ``"logprobs": true`` with ``"top_logprobs": k`` (0..20) adds a ``"logprobs"`` list with
  one ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}``
  per generated token, the log-softmax over the whole vocabulary, as Ollama's
  ``api.Logprob`` has it.
* An unknown model is ``404 {"error": "model 'x' not found"}``; a name without a tag
  means ``:latest``.
* ``options.num_predict`` is honoured; ``options.stop`` ends generation (the stop text
  is not trimmed from the answer).

Simplified, and documented here so nobody mistakes it for Ollama:

* Decoding is always greedy, whatever ``temperature`` or ``seed`` say.
* The base GGUF has no chat template, so prompts are rendered the way
  :meth:`fairpp_app.core.prompts.Prompt.as_text` renders them: ``/api/chat`` joins the system
  messages and the user messages into a Prompt (other roles are ignored) and so does
  ``/api/generate`` without ``raw`` (``system`` + ``prompt``); ``raw: true`` sends the
  prompt text verbatim (fairpp's backend sends ``Prompt.as_text()`` there). All three
  paths end with "Answer:", so the first token is the option letter, as for the
  embedded backend.
* ``num_predict`` defaults to 128 instead of unlimited.

The server can be stopped and started again on the same port (the "backend goes away"
tests). Stopping also cuts the open keep-alive connections, as a dying process would.
``go_away_after(n)`` answers n more model requests, then the server stops by itself;
requests that race in after the nth are cut off unanswered. ``fail_next(status, times)``
answers the next model requests with an HTTP error, as an overloaded Ollama does (503
"server busy") or a proxy in front of it (429). ``hold_after(n)`` answers n more model
requests and keeps the next ones waiting (``waiting`` counts them) until ``release()``, as a
busy model does; ``slow_down(s)`` makes every answer take at least s seconds longer. Tests
use these to catch a client (a ``fairpp simulate`` child) in the middle of a run.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from fairpp_app.backends.base import BackendOptions
from fairpp_app.core.prompts import Prompt

MODEL = "gemma3:270m"
VERSION = "0.13.5"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _canonical(name: str) -> str:
    return name if ":" in name else name + ":latest"


class Engine:
    """The embedded model behind a lock: llama.cpp contexts are not thread-safe."""

    def __init__(self) -> None:
        import llama_cpp

        from fairpp_app.backends.llamacpp import EmbeddedBackend

        self.backend = EmbeddedBackend(BackendOptions())
        self.llm = self.backend.llm
        self.lock = threading.Lock()
        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self._is_eog = lambda tok: bool(llama_cpp.llama_vocab_is_eog(vocab, tok))

    def piece(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", "replace")

    def decode(self, text: str, num_predict: int, top_k: int | None, stop: list[str]) -> tuple[list[dict], str, int]:
        """Greedy steps ``{"token", "logprob"?...}``, the done reason and the prompt size."""
        llm = self.llm
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        with self.lock:
            # Reuses the KV cache of the previous prompt, as Ollama's runner does.
            self.backend._eval_reusing_prefix(tokens)
            steps, reason, produced = [], "length", ""
            for i in range(num_predict):
                logits = self.backend.last_logits().astype(np.float64)
                tok = int(logits.argmax())
                if self._is_eog(tok):
                    reason = "stop"
                    break
                piece = self.piece(tok)
                step = {"id": tok, "token": piece}
                if top_k is not None:
                    top = logits.max()
                    log_probs = logits - (top + np.log(np.exp(logits - top).sum()))
                    step["logprob"] = float(log_probs[tok])
                    best = np.argpartition(-log_probs, top_k)[:top_k] if top_k else []
                    best = sorted(best, key=lambda t: -log_probs[t])
                    step["top"] = [(self.piece(int(t)), float(log_probs[t])) for t in best]
                produced += piece
                steps.append(step)
                hit = next((s for s in stop if s in produced), None)
                if hit is not None:
                    reason = "stop"
                    break
                if i + 1 == num_predict or len(tokens) + i + 1 >= self.backend.options.n_ctx:
                    break
                llm.eval([tok])
        return steps, reason, len(tokens)


class FakeOllama:
    """``start()``/``stop()`` as often as wanted; the port stays the same once chosen."""

    def __init__(self, engine: Engine | None = None, *, models: tuple[str, ...] = (MODEL,),
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._engine = engine
        self.models = tuple(models)
        self.host, self.port = host, port
        self.requests = 0  # model requests received
        self._left: int | None = None  # requests still to answer before going away
        self._owed = 0  # taken on, not yet answered
        self._failures: list[int] = []  # statuses to answer the next requests with
        self.bodies: list[dict] = []  # JSON bodies of model requests, for tests to inspect
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self.gone = threading.Event()  # set once a stop() has finished; cleared by start()
        self._open = threading.Event()  # cleared while model requests are held
        self._open.set()
        self._hold_left: int | None = None  # requests still answered before the gate closes
        self.waiting = 0  # model requests held at the gate now
        self.delay = 0.0  # seconds added to every model answer

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = Engine()
            return self._engine

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> FakeOllama:
        if self._httpd is not None:
            return self
        self.gone.clear()
        httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        httpd.handle_error = lambda request, address: None  # a cut-off client is not news
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-ollama", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.gone.set()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- bookkeeping used by the handler -------------------------------------------------

    def go_away_after(self, n: int | None) -> None:
        """Answer ``n`` more model requests, then stop; None: serve on."""
        with self._lock:
            self._left, self._owed = n, 0

    def reset(self) -> None:
        """Serve every request again: no quota, no injected failures, no gate, no delay."""
        with self._lock:
            self._left, self._owed, self._failures = None, 0, []
        self.release()
        self.delay = 0.0

    def hold_after(self, n: int) -> None:
        """Answer ``n`` more model requests, then hold the next ones until ``release()``."""
        with self._lock:
            self._hold_left = n
            if n == 0:
                self._open.clear()

    def release(self) -> None:
        with self._lock:
            self._hold_left = None
            self._open.set()

    def slow_down(self, seconds: float) -> None:
        self.delay = seconds

    def _gate(self) -> None:
        """Wait here while requests are held (or until the server stops), then the delay."""
        with self._lock:
            if self._hold_left is not None:
                if self._hold_left == 0:
                    self._open.clear()
                else:
                    self._hold_left -= 1
            held = not self._open.is_set()
            self.waiting += held
        while held and not self._open.wait(0.05) and self._httpd is not None:
            pass
        if held:
            with self._lock:
                self.waiting -= 1
        if self.delay:
            time.sleep(self.delay)

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures = [status] * times

    def _failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _admit(self, body: dict) -> bool:
        """Whether to answer this request; once the quota is spent the server is going away."""
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            if self._left is None:
                return True
            if self._left == 0:
                return False
            self._left -= 1
            self._owed += 1
            return True

    def _done(self) -> None:
        """An admitted request is finished (answered, or its client hung up)."""
        with self._lock:
            if self._left is None:
                return
            self._owed -= 1
            last = self._left == 0 and self._owed == 0
            if last:
                self._left = None
        if last:  # fine from a handler thread; only the serving loop's own thread may not
            self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def installed(self, name: str | None) -> str | None:
        if not name:
            return None
        want = _canonical(name)
        return next((m for m in self.models if m == want), None)


def _handler_for(server: FakeOllama):
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Ollama"
    fake: FakeOllama

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        pass

    # ---- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, payload, content_type: str = "application/json; charset=utf-8") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def _stream(self, parts: list[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in parts:
            line = (json.dumps(part) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _cut_off(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "invalid character in request body")
            return None
        if not isinstance(body, dict):
            self._error(400, "json: cannot unmarshal into Go value of type api.Request")
            return None
        return body

    # ---- routes --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, "Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/version":
            self._send(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self._send(200, {"models": [_model_entry(m) for m in self.fake.models]})
        else:
            self._send(404, "404 page not found", "text/plain")

    def do_POST(self) -> None:
        routes = {"/api/generate": self._generate, "/api/chat": self._chat, "/api/show": self._show}
        route = routes.get(self.path)
        if route is None:
            self._send(404, "404 page not found", "text/plain")
            return
        body = self._body()
        if body is not None:
            try:
                route(body)
            except OSError:
                self.close_connection = True  # the client or the stopping server hung up

    def _show(self, body: dict) -> None:
        name = body.get("model") or body.get("name")
        model = self.fake.installed(name)
        if model is None:
            self._error(404, f"model '{name}' not found")
            return
        self._send(200, {"modelfile": f"FROM {model}\n", "parameters": "", "template": "{{ .Prompt }}",
                         "details": _model_entry(model)["details"], "model_info": {
                             "general.architecture": "gemma3", "gemma3.context_length": 32768},
                         "capabilities": ["completion"], "modified_at": _now()})

    def _generate(self, body: dict) -> None:
        if body.get("raw"):
            text = body.get("prompt") or ""
        else:
            text = Prompt(system=body.get("system") or None, user=body.get("prompt") or "").as_text()
        self._answer(body, text, chat=False)

    def _chat(self, body: dict) -> None:
        messages = body.get("messages") or []
        system = "\n\n".join(m.get("content") or "" for m in messages if m.get("role") == "system")
        user = "\n\n".join(m.get("content") or "" for m in messages if m.get("role") == "user")
        self._answer(body, Prompt(system=system or None, user=user).as_text(), chat=True)

    def _answer(self, body: dict, text: str, chat: bool) -> None:
        name = body.get("model")
        if not name:
            self._error(400, "model is required")
            return
        model = self.fake.installed(name)
        if model is None:
            self._error(404, f"model '{name}' not found")
            return
        top_k = body.get("top_logprobs")
        if top_k is not None and not (isinstance(top_k, int) and 0 <= top_k <= 20):
            self._error(400, "top_logprobs must be between 0 and 20")
            return
        status = self.fake._failure()
        if status is not None:
            self._error(status, "server busy, please try again.  maximum pending requests exceeded"
                        if status == 503 else f"injected failure {status}")
            return
        if not self.fake._admit(body):
            self._cut_off()
            return
        try:
            self.fake._gate()
            self._reply(body, name, text, chat, top_k)
        finally:
            self.fake._done()

    def _reply(self, body: dict, name: str, text: str, chat: bool, top_k: int | None) -> None:
        opts = body.get("options") or {}
        num_predict = opts.get("num_predict", 128)
        if num_predict is None or num_predict < 0:
            num_predict = 128
        stop = opts.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        started = time.perf_counter_ns()
        steps, reason, n_prompt = self.fake.engine.decode(
            text, num_predict, (top_k or 0) if body.get("logprobs") else None, stop)
        elapsed = time.perf_counter_ns() - started
        final = {"model": name, "created_at": _now(), "done": True, "done_reason": reason,
                 "total_duration": elapsed, "load_duration": 0, "prompt_eval_count": n_prompt,
                 "prompt_eval_duration": elapsed // 2, "eval_count": len(steps),
                 "eval_duration": elapsed - elapsed // 2}
        if body.get("stream", True):
            parts = [_part(name, step, chat) for step in steps] + [{**_part(name, None, chat), **final}]
            self._stream(parts)
        else:
            whole = "".join(s["token"] for s in steps)
            out = {"model": name, "created_at": _now()}
            out.update({"message": {"role": "assistant", "content": whole}} if chat else {"response": whole})
            out.update(final)
            if body.get("logprobs"):
                out["logprobs"] = [_logprob(s) for s in steps]
            self._send(200, out)


def _logprob(step: dict) -> dict:
    entry = {"token": step["token"], "logprob": step["logprob"], "bytes": list(step["token"].encode())}
    if step["top"]:
        entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                 for t, lp in step["top"]]
    return entry


def _part(model: str, step: dict | None, chat: bool) -> dict:
    piece = step["token"] if step else ""
    out = {"model": model, "created_at": _now()}
    out.update({"message": {"role": "assistant", "content": piece}} if chat else {"response": piece})
    out["done"] = False
    if step is not None and "logprob" in step:
        out["logprobs"] = [_logprob(step)]
    return out


def _model_entry(name: str) -> dict:
    return {"name": name, "model": name, "modified_at": "2025-08-14T10:00:00Z", "size": 291548160,
            "digest": "e7d36fb2c3b3293cfe56d55889867a064b3a2b22e98335f2e6e8a387e081d6be",
            "details": {"parent_model": "", "format": "gguf", "family": "gemma3",
                        "families": ["gemma3"], "parameter_size": "268.10M",
                        "quantization_level": "Q4_K_M"}}


if __name__ == "__main__":  # a manual check: python tests/backends/ollama_server.py
    with FakeOllama() as fake:
        print(f"fake ollama on {fake.url}; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass

"""Plans, runs and resumes persona x question work; emits events.

A run is named and stored. Each invocation plans only the (question, respondent) pairs the
run does not have yet, so rerunning a command continues where it stopped; records are
upserted in small transactions as they complete, so killing the process loses at most the
records in flight and never duplicates one. Work goes persona-major, so local engines
reuse the persona prefix in their KV cache; HTTP backends get a bounded thread pool.

Transient backend faults are retried with exponential backoff and jitter; when the backend
stays down the run stops with status ``stopped`` and a message, ready to resume.
Permanent faults stop it at once (status ``failed``). Neither reaches the user as a
traceback.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from fairpp_app.core import answers as ans
from fairpp_app.core.child import crash_point
from fairpp_app.core.errors import (
    BackendError,
    FairppError,
    TransientBackendError,
    UnscorableOutput,
    UsageError,
)
from fairpp_app.core.events import Event, Progress, RetryScheduled, RunEnded, RunStarted
from fairpp_app.core.personas import Persona, resolve_many
from fairpp_app.core.prompts import Prompt, build_prompt, template_hash
from fairpp_app.core.questions import DEFAULT_BANK, Question
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.store.database import Store


@dataclass
class Task:
    question: Question
    persona: Persona | None
    respondent: str

    def prompt(self, calibrate: bool, swap: bool = False) -> Prompt:
        return build_prompt(self.question, self.persona, calibrate=calibrate, swap_ab=swap,
                            respondent=self.respondent)


@dataclass
class Outcome:
    status: str
    run: str
    done: int
    total: int
    written: int
    unparsed: int
    message: str = ""


def default_run_name(config: SimulationConfig, model_name: str) -> str:
    name = f"{config.backend}-{model_name}-{config.mode}"
    if config.debias != "none":
        name += f"-{config.debias}"
    if config.respondent == "model":
        name += "-model"
    if config.bank != DEFAULT_BANK:  # one run answers one bank (see Store.run_bank)
        name += f"-{config.bank}"
    return re.sub(r"[^A-Za-z0-9._:-]+", "-", name)


#: A run planned to take longer than this asks first in the TUI; the CLI prints its estimate.
LONG_RUN_S = 3600.0


@dataclass
class Estimate:
    """What a config asks for before it starts: records, and the time they will probably take."""

    records: int
    seconds_per_record: float | None
    source: str = ""  # where the speed comes from

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_record is None else self.records * self.seconds_per_record

    def describe(self) -> str:
        text = f"{self.records:,} records"
        if self.seconds is None:
            return text + " (no time estimate yet: no earlier run of this backend and mode)"
        return (f"{text}, about {format_duration(self.seconds)} at "
                f"{1 / self.seconds_per_record:.1f} records/s ({self.source})")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def record_method(config: SimulationConfig) -> str:
    """The ``method`` a record of this config is stored with."""
    if config.mode == "logprob" and config.debias == "permute":
        return "logprob+permute"
    return config.mode


def estimate(store: Store, config: SimulationConfig, personas: Sequence[Persona]) -> Estimate:
    """Records the config plans (before the run's own records are subtracted) and the time
    they take at the median speed of the latest records of the same backend, model and
    method; for the embedded engine without history, the speed `fairpp doctor` measured."""
    split = None if config.split == "all" else config.split
    n_questions = store.question_count(split, bank=config.bank)
    if config.limit is not None:
        n_questions = min(n_questions, config.limit)
    respondents = 1 if config.respondent == "model" else len(resolve_many(config.personas, personas))
    records = n_questions * respondents
    method = record_method(config)
    model = None if config.backend == "embedded" or not config.model else config.model
    latencies = store.recent_latencies(config.backend, method, model)
    if latencies:
        per_record = sorted(latencies)[len(latencies) // 2] / 1000
        return Estimate(records, per_record, f"measured in earlier {config.backend} runs")
    if config.backend == "embedded" and config.mode == "logprob":
        from fairpp_app.jobs.doctor import cached_embedded_verdict

        verdict = cached_embedded_verdict()
        if verdict is not None and verdict.speed:
            passes = 2 if method == "logprob+permute" else 1
            return Estimate(records, passes / verdict.speed, "measured by fairpp doctor")
    return Estimate(records, None)


def backend_options(config: SimulationConfig):
    from fairpp_app.backends.base import BackendOptions

    return BackendOptions(model=config.model, base_url=config.base_url,
                          api_key_env=config.api_key_env, device=config.device,
                          max_tokens=config.max_tokens, batch_size=config.batch_size,
                          timeout=config.timeout,
                          extra={"api": config.api} if config.api else {})


def plan(store: Store, run_id: int, questions: Sequence[Question], personas: Sequence[Persona],
         respondent: str, model_respondent: str) -> list[Task]:
    """The missing (question, respondent) pairs of a run, persona-major."""
    done = store.answered(run_id)
    tasks: list[Task] = []
    if respondent == "model":
        tasks = [Task(q, None, model_respondent) for q in questions
                 if (q.id, model_respondent) not in done]
    else:
        for p in personas:
            tasks.extend(Task(q, p, p.slug) for q in questions if (q.id, p.slug) not in done)
    return tasks


class Stop(threading.Event):
    """A request to end a run early, and the status the run ends with.

    Either way the records in flight are written first and the same command resumes the run:
    ``pause()`` ends it ``paused`` (the user means to come back), ``set()`` (or ``cancel()``)
    ends it ``cancelled``. A plain ``threading.Event`` passed as ``cancel`` still works and
    means cancel.
    """

    status = "cancelled"

    def pause(self) -> None:
        self.status = "paused"
        self.set()

    def cancel(self) -> None:
        self.status = "cancelled"
        self.set()


def stop_status(stop: threading.Event) -> str:
    return stop.status if isinstance(stop, Stop) else "cancelled"


class Simulation:
    """One invocation of a run: open or resume it, plan, execute, record."""

    def __init__(self, store: Store, config: SimulationConfig, personas: list[Persona],
                 backend=None, listener: Callable[[Event], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.store = store
        self.config = config
        self.all_personas = personas
        self.listener = listener or (lambda e: None)
        self.cancel = cancel or threading.Event()
        self._backend = backend
        self.run: dict | None = None
        self.errors = 0

    # ---- set-up ----------------------------------------------------------------------------

    def _open_backend(self):
        if self._backend is None:
            from fairpp_app.backends.registry import create

            self._backend = create(self.config.backend, backend_options(self.config))
        return self._backend

    def _check_modes(self, backend) -> None:
        if self.config.mode == "logprob" and not backend.SUPPORTS_LOGPROBS:
            raise UsageError(f"the {backend.name} backend cannot score options; use --mode text")
        if self.config.mode == "text" and not backend.SUPPORTS_TEXT:
            raise UsageError(f"the {backend.name} backend cannot generate text; use --mode logprob")

    def _open_run(self, backend) -> dict:
        cfg = self.config
        name = cfg.run or default_run_name(cfg, backend.model_name)
        phash = template_hash(cfg.calibrate, cfg.debias == "permute")
        params = {"personas": cfg.personas, "respondent": cfg.respondent, "split": cfg.split,
                  "bank": cfg.bank,
                  "limit": cfg.limit, "debias": cfg.debias, "calibrate": cfg.calibrate,
                  "api_key_env": cfg.api_key_env, "api": cfg.api,
                  # describe() last: it replaces base_url with a copy free of credentials.
                  **{k: v for k, v in backend.describe().items() if k not in ("backend", "model")}}
        run = self.store.find_run(name)
        if run is None:
            return self.store.create_run(name, "simulation", backend=backend.name,
                                         model=backend.model_name, mode=cfg.mode,
                                         prompt_hash=phash, params=params)
        if run["kind"] != "simulation":
            raise UsageError(f"run '{name}' is a {run['kind']} run; choose another --run name")
        if run["params"].get("bank", DEFAULT_BANK) != cfg.bank:
            raise UsageError(f"run '{name}' asked the {run['params'].get('bank', DEFAULT_BANK)} "
                             f"bank, not the {cfg.bank} one; a run answers one bank. Choose "
                             "another --run name")
        if run["prompt_hash"] != phash:
            raise UsageError(
                f"run '{name}' was made with a different prompt template ({run['prompt_hash']}, now "
                f"{phash}); its answers would not be comparable. Start a new run with --run NAME")
        if (run["backend"], run["model"], run["mode"]) != (backend.name, backend.model_name, cfg.mode):
            raise UsageError(
                f"run '{name}' used {run['backend']}/{run['model']}/{run['mode']}, not "
                f"{backend.name}/{backend.model_name}/{cfg.mode}; choose another --run name")
        return run

    def _questions(self) -> list[Question]:
        qs = self.store.questions(self.config.split, limit=self.config.limit,
                                  bank=self.config.bank)
        if not qs:
            hint = (" (import the release with `fairpp import fairpp-csv`)"
                    if self.config.bank != "fairpp" else
                    " (generate them with `fairpp scenarios generate`)" if self.config.split == "scenario"
                    else " (build the bank with `fairpp questions build`)")
            raise UsageError(f"no questions in split '{self.config.split}' of the "
                             f"{self.config.bank} bank{hint}")
        return qs

    # ---- execution -------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self.run is not None:
            self.store.add_event(event.kind, event.payload(), run_id=self.run["id"])
        self.listener(event)

    def _with_retries(self, fn: Callable[[], list]) -> list:
        attempt = 0
        while True:
            try:
                return fn()
            except TransientBackendError as exc:
                attempt += 1
                self.errors += 1
                if attempt > self.config.max_retries:
                    raise
                delay = self.config.retry_delay * (2 ** (attempt - 1))
                delay *= 1 + random.random() * 0.5  # jitter: spread out retries of many workers
                self._emit(RetryScheduled(self.run["name"], attempt, round(delay, 3), str(exc)))
                if self.cancel.wait(delay):
                    raise

    def _answer(self, backend, tasks: Sequence[Task]) -> list[dict]:
        try:
            return self._answer_batch(backend, tasks)
        except UnscorableOutput as exc:
            if len(tasks) > 1:  # find which prompt it was; the others still count
                return [row for t in tasks for row in self._answer(backend, [t])]
            method = record_method(self.config)
            return [self._row(tasks[0], f"unscorable: {exc}", None, None, None, method, 0.0)]

    def _answer_batch(self, backend, tasks: Sequence[Task]) -> list[dict]:
        crash_point("simulation-batch")  # the engine's native code runs from here on
        cfg = self.config
        started = time.perf_counter()
        rows = []
        if cfg.mode == "logprob":
            scores = self._with_retries(lambda: backend.score_options(
                [t.prompt(cfg.calibrate) for t in tasks]))
            method = record_method(cfg)
            orders: list = [None] * len(tasks)
            if cfg.debias == "permute":
                swapped = self._with_retries(lambda: backend.score_options(
                    [t.prompt(cfg.calibrate, swap=True) for t in tasks]))
                # Both orders are kept beside their average: answer consistency reads them.
                orders = [(s.probs, w.swapped_ab().probs) for s, w in zip(scores, swapped)]
                scores = [ans.average(s, w.swapped_ab()) for s, w in zip(scores, swapped)]
            elapsed = (time.perf_counter() - started) * 1000 / len(tasks)
            for t, s, both in zip(tasks, scores, orders):
                rows.append(self._row(t, None, s.answer, s.probs, s.other_mass, method, elapsed,
                                      both))
        else:
            texts = self._with_retries(lambda: backend.generate(
                [t.prompt(cfg.calibrate) for t in tasks], cfg.max_tokens))
            elapsed = (time.perf_counter() - started) * 1000 / len(tasks)
            for t, text in zip(tasks, texts):
                rows.append(self._row(t, text, ans.parse_letter(text), None, None, "text", elapsed))
        return rows

    def _row(self, task: Task, raw, letter, probs, other, method, latency_ms,
             orders: tuple | None = None) -> dict:
        fwd, swap = orders if orders else ((None,) * 3, (None,) * 3)
        return {"run_id": self.run["id"], "question_id": task.question.id,
                "respondent": task.respondent,
                "respondent_kind": "model" if task.persona is None else "persona",
                "raw_text": raw, "answer": letter,
                "p_a": probs[0] if probs else None, "p_b": probs[1] if probs else None,
                "p_c": probs[2] if probs else None, "other_mass": other, "method": method,
                "latency_ms": round(latency_ms, 2),
                **{f"p_{x}_fwd": p for x, p in zip("abc", fwd)},
                **{f"p_{x}_swap": p for x, p in zip("abc", swap)}}

    def execute(self) -> Outcome:
        cfg = self.config
        personas = resolve_many(cfg.personas, self.all_personas)
        questions = self._questions()
        backend = self._open_backend()
        self._check_modes(backend)
        self.run = self._open_run(backend)
        self.store.sync_personas(self.all_personas)
        tasks = plan(self.store, self.run["id"], questions, personas, cfg.respondent,
                     backend.model_name)
        n_respondents = 1 if cfg.respondent == "model" else len(personas)
        total = len(questions) * n_respondents
        done = total - len(tasks)
        self.store.claim_run(self.run["id"])
        self._emit(RunStarted(self.run["name"], len(tasks), done, backend.name,
                              backend.model_name, cfg.mode))
        written = unparsed = 0
        started = time.perf_counter()
        last_progress = 0.0
        status, message = "finished", ""

        def record(rows: list[dict]) -> None:
            nonlocal written, unparsed, done, last_progress
            self.store.upsert_records(rows)
            written += len(rows)
            done += len(rows)
            unparsed += sum(r["answer"] is None for r in rows)
            now = time.perf_counter()
            if now - last_progress >= 0.5 or done == total:
                last_progress = now
                self.store.heartbeat(self.run["id"])
                rate = written / max(now - started, 1e-9)
                eta = (total - done) / rate if rate > 0 else None
                self._emit(Progress(self.run["name"], done, total, round(rate, 3),
                                    None if eta is None else round(eta, 1), self.errors, unparsed))

        try:
            if backend.SUPPORTS_CONCURRENCY and cfg.concurrency > 1:
                self._run_pool(backend, tasks, record)
            else:
                step = cfg.batch_size if backend.SUPPORTS_BATCH else 1
                for i in range(0, len(tasks), step):
                    if self.cancel.is_set():
                        break
                    record(self._answer(backend, tasks[i:i + step]))
            if self.cancel.is_set() and done < total:
                status = stop_status(self.cancel)
                message = f"{status} by the user; {done} of {total} records are saved"
        except TransientBackendError as exc:
            status = "stopped"
            message = (f"the {backend.name} backend kept failing ({exc}); {done} of {total} records "
                       "are saved. Run the same command again to resume")
        except BackendError as exc:
            status, message = "failed", str(exc)
        except BaseException as exc:
            # Interrupted (Ctrl-C) or a bug: the records so far are saved; say so, then re-raise.
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.store.release_run(self.run["id"], status)
            self._emit(RunEnded(self.run["name"], status, done, total, repr(exc)))
            raise
        self.store.release_run(self.run["id"], status)
        self._emit(RunEnded(self.run["name"], status, done, total, message))
        return Outcome(status, self.run["name"], done, total, written, unparsed, message)

    def _run_pool(self, backend, tasks: Sequence[Task], record: Callable[[list[dict]], None]) -> None:
        """Bounded concurrency: at most ``concurrency`` requests in flight, written as they land."""
        pending = set()
        it = iter(tasks)
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            def fill() -> None:
                while len(pending) < self.config.concurrency and not self.cancel.is_set() and failure is None:
                    task = next(it, None)
                    if task is None:
                        return
                    pending.add(pool.submit(self._answer, backend, [task]))

            fill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    try:
                        record(fut.result())
                    except BaseException as exc:  # keep draining: in-flight answers are saved
                        if failure is None:
                            failure = exc
                fill()
        if failure is not None:
            raise failure

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def run_simulation(store: Store, config: SimulationConfig, personas: list[Persona],
                   listener: Callable[[Event], None] | None = None,
                   cancel: threading.Event | None = None, backend=None) -> Outcome:
    sim = Simulation(store, config, personas, backend=backend, listener=listener, cancel=cancel)
    try:
        return sim.execute()
    finally:
        if backend is None:
            sim.close()


__all__ = ["SimulationConfig", "Simulation", "run_simulation", "plan", "estimate", "Estimate",
           "Outcome", "FairppError"]

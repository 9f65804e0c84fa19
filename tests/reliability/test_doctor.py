"""`fairpp doctor`: every engine is loaded in a child process, and a child that dies for
real (a signal it sends itself inside the engine's load, switched on by FAIRPP_TEST_CRASH)
is reported by the signal's name, with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairpp_app.backends.llamacpp import ThreadGovernor
from fairpp_app.core.child import run_in_child
from fairpp_app.jobs import doctor

REPO = Path(__file__).resolve().parents[2]


def fairpp(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fairpp_app.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.model
def test_doctor_passes_every_installed_engine_and_caches_the_embedded_verdict():
    proc = fairpp("doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = {v["engine"]: v for v in json.loads(proc.stdout)}
    assert set(verdicts) == set(doctor.ENGINES)
    assert verdicts["embedded"]["status"] == "ok"
    assert re.search(r"[\d.]+ prompts/s", verdicts["embedded"]["summary"])
    for name in ("transformers", "mlx"):
        assert verdicts[name]["status"] in ("ok", "not installed"), verdicts[name]
    cached = doctor.cached_embedded_verdict()
    assert cached is not None and cached.status == "ok"


@pytest.mark.model
@pytest.mark.parametrize("engine, sig", [("embedded", "SIGILL"), ("transformers", "SIGSEGV")])
def test_a_child_killed_by_a_signal_is_named_and_doctor_exits_non_zero(engine, sig):
    if not doctor.installed(doctor.ENGINES[engine]):
        pytest.skip(f"{engine} is not installed")
    proc = fairpp("doctor", "--engine", engine, env={"FAIRPP_TEST_CRASH": f"engine-load:{sig}"})
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"died by {sig}" in out
    assert "Traceback" not in out
    if engine == "embedded":
        assert "rebuild-llama" in out and doctor.NO_AMX_FLAGS in out
        cached = doctor.cached_embedded_verdict()
        assert cached is not None and cached.status == "failed" and sig in cached.summary


def test_a_python_error_in_the_child_is_a_result_with_its_message():
    result = run_in_child("fairpp_app.core.child:crash_point", {"name": "nowhere", "extra": 1})
    assert not result.ok and result.signal is None
    assert result.error.startswith("TypeError:")
    assert any("Traceback" in line or "TypeError" in line for line in result.stderr_tail)


def test_a_child_that_hangs_is_timed_out_with_what_it_started():
    marker = "fairpp-child-test-sleep"
    result = run_in_child("subprocess:run", {"args": ["bash", "-c", f"exec -a {marker} sleep 60"]},
                          timeout=2)
    assert result.timed_out and not result.ok
    assert "no answer" in result.failure()
    ps = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_a_cached_verdict_of_another_build_is_not_used(isolated_home):
    doctor._store_cached(doctor.Verdict("embedded", "ok", "fine"))
    assert doctor.cached_embedded_verdict() is not None
    path = isolated_home / "cache" / "doctor.json"
    data = json.loads(path.read_text())
    data["build"] = "libllama.so:1:1"
    path.write_text(json.dumps(data))
    assert doctor.cached_embedded_verdict() is None


def test_amx_is_read_from_the_system_info():
    assert doctor.has_amx("AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 |")
    assert not doctor.has_amx("AVX512 = 1 | AMX_INT8 = 0 | OPENMP = 1 |")
    assert not doctor.has_amx("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | OPENMP = 1 |")


def test_the_installed_llama_cpp_has_no_amx():
    from fairpp_app.backends.llamacpp import llama_system_info

    info = llama_system_info()
    assert not doctor.has_amx(info), info


def test_the_set_up_compiles_with_the_flags_the_messages_name():
    script = (REPO / "dev").read_text()
    assert f'x86_64|amd64) echo "{doctor.NO_AMX_FLAGS}"' in script


def test_the_thread_governor_leaves_a_core_to_a_busy_process():
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("needs two cores")
    governor = ThreadGovernor(cores, interval=0.3)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores - 1)]
    try:
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.35)
            seen.append(governor.threads())
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert seen[-1] < cores, seen


@pytest.mark.model
def test_a_build_with_amx_is_refused_until_doctor_has_passed_it(monkeypatch):
    """This machine's CPU has no AMX, so no build here can show it: the system-info string
    is the one stand-in (a fault that cannot be produced otherwise). Everything else is real:
    the embedded model loads once doctor's cached verdict for this build says ok."""
    from fairpp_app.backends import llamacpp
    from fairpp_app.backends.base import BackendOptions
    from fairpp_app.core.errors import PermanentBackendError

    monkeypatch.setattr(llamacpp, "llama_system_info", lambda: "AVX512 = 1 | AMX_INT8 = 1 |")
    with pytest.raises(PermanentBackendError) as err:
        llamacpp.EmbeddedBackend(BackendOptions())
    assert "AMX" in str(err.value) and doctor.NO_AMX_FLAGS in str(err.value)
    doctor._store_cached(doctor.Verdict("embedded", "ok", "8.0 prompts/s", speed=8.0))
    llamacpp.EmbeddedBackend(BackendOptions()).close()

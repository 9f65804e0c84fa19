"""What fairpp knows about the installed llama.cpp build, without loading it.

ggml's AMX code path dies by SIGILL on many Xeons, so a build whose system info shows
AMX is refused at load unless ``fairpp doctor`` has run it safely in a child process and
cached a passing verdict for this very build. Both sides need the same facts (how AMX is
recognised, how a build is named, where the verdict is cached, how to rebuild without
AMX): they live here, below both the llama.cpp backend, which reads the verdict, and the
doctor job, which writes it. Nothing here imports llama_cpp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

from fairpp_app.core.paths import cache_dir

#: The compiler flags the set-up (the ``dev`` script's ``llama_cflags``) builds llama.cpp with
#: on x86-64; a test keeps the two equal.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
REBUILD_HINT = (f"rebuild llama.cpp without AMX: `./dev rebuild-llama` in a fairpp checkout, or "
                f"CFLAGS='{NO_AMX_FLAGS}' CXXFLAGS='{NO_AMX_FLAGS}' pip install --no-cache-dir "
                f"--force-reinstall --no-deps llama-cpp-python")
#: Lets the backend load a build whose system info shows AMX (the probe child sets it).
ALLOW_AMX_ENV = "FAIRPP_ALLOW_AMX"


def has_amx(system_info: str) -> bool:
    return re.search(r"AMX\w* = 1", system_info) is not None


def llama_build_id() -> str | None:
    """Names one build of llama-cpp-python by its native libraries' sizes and times, without
    importing (and so loading) them; None when it is not installed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
             for p in sorted(lib.glob("*")) if p.is_file()]
    return "|".join(parts) or None


def verdict_path() -> Path:
    return cache_dir() / "doctor.json"


def store_verdict(verdict: dict) -> None:
    """Cache the embedded engine's verdict (a dict) for the build installed now."""
    build = llama_build_id()
    if build is None:
        return
    path = verdict_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"build": build, "verdict": verdict}))
    os.replace(tmp, path)


def cached_verdict() -> dict | None:
    """The last probe's verdict when it was made on the llama.cpp build installed now."""
    try:
        data = json.loads(verdict_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("build") != llama_build_id():
        return None
    verdict = data.get("verdict")
    return verdict if isinstance(verdict, dict) else None


def amx_allowed(system_info: str) -> bool:
    """Whether a build with this system info may be loaded in this process."""
    if os.environ.get(ALLOW_AMX_ENV) or not has_amx(system_info):
        return True
    verdict = cached_verdict()
    return verdict is not None and verdict.get("status") == "ok"

"""Hugging Face model folders: where ``--model`` points, and GGUF files converted once.

The transformers backend, the trainers and the mlx backend all want a local folder holding
``config.json``, safetensors weights and a tokenizer. ``resolve_model`` turns whatever the
user named into such a folder: an existing folder is used as it is; a GGUF file (and the
embedded Gemma 3 270M, which ships only as GGUF) is de-quantised by transformers once and
saved under ``cache_dir()/converted``. Nothing is ever fetched from the Hugging Face Hub:
every ``from_pretrained`` here is ``local_files_only``.

The converted weights stay float32. The Q4_K/Q6_K blocks de-quantise to values that fp16
and bf16 cannot hold exactly, and float32 keeps them as llama.cpp sees them; a CUDA run
casts to bf16 when it loads. A conversion is written to a temporary folder and renamed into
place, so an interrupted one never leaves a half-written model that a later run would
trust. The cache key is the GGUF's resolved path, size and modification time: cheap to
compute on every start, and a replaced file gets a fresh conversion.

torch and transformers are imported inside the functions, so importing this module costs
nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from fairpp_app.core.errors import PermanentBackendError

EMBEDDED_NAMES = ("embedded", "gemma-3-270m")
EMBEDDED_MODEL = "gemma-3-270m"


def is_embedded(spec: str | None) -> bool:
    return spec is None or spec in EMBEDDED_NAMES


def model_display_name(spec: str | None) -> str:
    """The short name a run is stored under: the embedded name, the GGUF file or the folder."""
    if spec is None or is_embedded(spec):
        return EMBEDDED_MODEL
    return Path(spec).expanduser().name


def resolve_model(spec: str | None) -> Path:
    """A local Hugging Face model folder for ``spec`` (None, a name, a folder or a .gguf)."""
    if spec is None or is_embedded(spec):
        from fairpp_app.backends.llamacpp import embedded_model_path

        return converted_gguf(embedded_model_path())
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise PermanentBackendError(
            f"{path} is not a Hugging Face model folder (it has no config.json); pass a folder "
            "saved with save_pretrained or a .gguf file")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return converted_gguf(path)
        raise PermanentBackendError(
            f"{path} is a file but not a .gguf; pass a Hugging Face model folder or a .gguf file")
    raise PermanentBackendError(
        f"model not found: {path} is neither a local model folder nor a .gguf file (fairpp "
        "does not download models; save one with save_pretrained and pass its folder)")


def _cache_key(gguf: Path) -> str:
    st = gguf.stat()
    blob = f"{gguf.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def converted_dir(gguf: Path) -> Path:
    """Where the conversion of ``gguf`` lives (whether or not it exists yet)."""
    from fairpp_app.core.paths import cache_dir

    stem = gguf.name[: -len(gguf.suffix)] if gguf.suffix else gguf.name
    return cache_dir() / "converted" / f"{stem}-{_cache_key(gguf)}"


def converted_gguf(gguf: Path) -> Path:
    """The Hugging Face folder converted from ``gguf``, converting it on first use."""
    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise PermanentBackendError(f"GGUF model file not found: {gguf}")
    target = converted_dir(gguf)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"converting {gguf.name} to a Hugging Face model once, about a minute ...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        _convert(gguf, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same conversion first; theirs is as good.
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"converted in {time.perf_counter() - started:.0f} s into {target}",
          file=sys.stderr, flush=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    try:
        import gguf as _gguf  # noqa: F401  transformers reads GGUF through this package
    except ImportError:
        raise PermanentBackendError(
            "converting a GGUF file needs the Python package 'gguf' (pip install gguf)") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                      local_files_only=True)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise PermanentBackendError(f"transformers could not convert {gguf.name}: {exc}") from None
    # The weights are de-quantised in memory, but the GGUF quantizer stays attached and
    # save_pretrained refuses to write a "quantized" model; what we save is plain float32.
    model.hf_quantizer = None
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
    if hasattr(model.config, "_name_or_path"):
        model.config._name_or_path = gguf.name
    out.mkdir(parents=True)
    with _quiet_transformers():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


@contextmanager
def _quiet_transformers():
    """No per-tensor progress bars or advice on stderr: stderr is the user's narration.

    (The GGUF reader's own tqdm bar is not transformers' to silence; it shows once, while
    converting, which is when a progress bar helps.)
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars_were_off = hf_logging.is_progress_bar_enabled() is False
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if not bars_were_off:
            hf_logging.enable_progress_bar()


# ---- loading ---------------------------------------------------------------------------------

def pick_device(requested: str = "auto") -> str:
    """``auto`` means CUDA, then MPS, then CPU; asking for a device that is absent is an error."""
    import torch

    requested = (requested or "auto").lower()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PermanentBackendError("CUDA requested but torch sees no GPU")
        return requested
    if requested == "mps":
        if not has_mps:
            raise PermanentBackendError("MPS requested but torch sees no Apple GPU")
        return requested
    if requested == "cpu":
        return requested
    raise PermanentBackendError(f"unknown device '{requested}'; use auto, cpu, cuda or mps")


def default_dtype(device: str):
    """bf16 on CUDA; float32 elsewhere (Gemma overflows in fp16, and CPUs gain little from bf16)."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_causal_lm(path: Path, device: str = "cpu", dtype=None):
    """The model in ``path`` on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM

    if dtype is None:
        dtype = default_dtype(device)
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype,
                                                         local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise PermanentBackendError(f"transformers could not load the model in {path}: {exc}") from None
    return model.to(device).eval()


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise PermanentBackendError(f"transformers could not load the tokenizer in {path}: {exc}") from None

"""The transformers backend and the model folders behind it.

Most tests run on tiny random models (tiny_models.py) that load in a second; they pin what
the backend must get right whatever the weights: left padding that leaves every prompt's
scores as they are alone, probabilities that sum to one, text generation, the engine
writing records, and errors a user can act on. The ``model`` tests convert the embedded
Gemma 3 270M GGUF once per session and compare it with llama.cpp on the same prompts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fairpp_app.backends import hf_models
from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.registry import create
from fairpp_app.backends.transformers_backend import TransformersBackend
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import build_prompt
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from tests.support.tiny_models import (
    build_tiny_model,
    mixed_prompts,
    split_questions,
)


def backend_for(path: Path, **options) -> TransformersBackend:
    extra = options.pop("extra", {})
    return create("transformers", BackendOptions(model=str(path), extra=extra, **options))


def assert_same_scores(batched, single, tol=1e-5):
    for b, s in zip(batched, single, strict=True):
        assert b.probs == pytest.approx(s.probs, abs=tol)
        assert b.other_mass == pytest.approx(s.other_mass, abs=tol)


# ---- tiny models -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tiny_dir", "tiny_gemma_dir"])
def test_batched_scores_equal_one_at_a_time(which, request):
    path = request.getfixturevalue(which)
    prompts = mixed_prompts()
    with backend_for(path, batch_size=len(prompts)) as backend:
        lengths = {len(backend.prompt_ids(p)) for p in prompts}
        assert len(lengths) > 1, "the prompts must differ in length for padding to matter"
        batched = backend.score_options(prompts)
        single = [backend.score_options([p])[0] for p in prompts]
    assert_same_scores(batched, single)
    for s in batched:
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-9)
        assert 0.0 <= s.other_mass <= 1.0
        assert s.answer in "ABC"
    assert len({s.probs for s in batched}) > 1, "a random model still answers prompts differently"


@pytest.fixture(scope="module")
def tiny_gemma_wide_dir(tmp_path_factory) -> Path:
    """Gemma 3 layout whose sliding window is longer than the prompts (like the real 270M)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-gemma-wide", arch="gemma3",
                            sliding_window=512, softcap=2.0)


def test_short_sliding_window_disables_prefix_reuse(tiny_gemma_dir):
    persona = builtin_personas()[5]
    prompts = [build_prompt(q, persona) for q in split_questions(3)]
    with backend_for(tiny_gemma_dir, batch_size=3) as backend:
        backend.score_options(prompts)
        # Every prompt ran through the model in full: no shared prefix was taken from a cache.
        assert backend.prompt_tokens == sum(len(backend.prompt_ids(p)) for p in prompts)


@pytest.mark.parametrize("which", ["tiny_dir", "tiny_gemma_wide_dir"])
def test_shared_persona_prefix_is_reused_exactly(which, request):
    """Persona-major batches run the shared system prompt once; scores must not change."""
    path = request.getfixturevalue(which)
    persona = builtin_personas()[5]
    prompts = [build_prompt(q, persona) for q in split_questions(6)]
    with backend_for(path, batch_size=3) as backend:
        total = sum(len(backend.prompt_ids(p)) for p in prompts)
        reused = backend.score_options(prompts)
        # The shared prefix (at least 16 tokens) ran once for all six prompts.
        assert backend.prompt_tokens <= total - 5 * 16
    with backend_for(path, batch_size=3, extra={"prefix_cache": False}) as backend:
        plain = backend.score_options(prompts)
        assert backend.prompt_tokens == total
    assert_same_scores(reused, plain)


def test_scores_go_through_the_models_own_head_with_softcapping(tiny_gemma_dir):
    """Gemma's final softcapping is applied: scores match decoder -> lm_head -> tanh cap."""
    prompt = mixed_prompts(1)[0]
    with backend_for(tiny_gemma_dir) as backend:
        assert backend._keeps_logits
        got = backend.last_logits([prompt])[0]
        ids = torch.tensor([backend.prompt_ids(prompt)])
        with torch.inference_mode():
            hidden = backend.model.get_decoder()(input_ids=ids).last_hidden_state[0, -1]
            raw = backend.model.get_output_embeddings()(hidden)
        cap = backend.model.config.final_logit_softcapping
        assert cap == 2.0
        assert got.abs().max() <= cap
        assert torch.allclose(got, torch.tanh(raw / cap) * cap, atol=1e-5)
        assert not torch.allclose(got, raw, atol=1e-2)


def test_split_into_batch_size_chunks(tiny_dir):
    prompts = mixed_prompts()
    with backend_for(tiny_dir, batch_size=4) as backend:
        chunked = backend.score_options(prompts)
        whole = backend_for(tiny_dir, batch_size=64).score_options(prompts)
    assert_same_scores(chunked, whole)


def test_text_mode_generates_only_new_tokens(tiny_dir):
    prompts = mixed_prompts(2)
    with backend_for(tiny_dir, batch_size=len(prompts), max_tokens=5) as backend:
        batched = backend.generate(prompts)
        single = [backend.generate([p])[0] for p in prompts]
    assert len(batched) == len(prompts)
    assert all(isinstance(t, str) and t.strip() for t in batched)
    assert not any("Answer:" in t for t in batched), "the prompt must not be echoed"
    assert batched == single


def test_simulation_writes_a_record_per_persona_and_question(store, tiny_dir):
    personas = builtin_personas()
    config = SimulationConfig(backend="transformers", model=str(tiny_dir), split="test", limit=4,
                              personas="1,6", batch_size=4)
    outcome = run_simulation(store, config, personas)
    assert outcome.status == "finished", outcome.message
    assert outcome.written == 8
    rows = list(store.db.execute(
        "SELECT respondent, answer, p_a + p_b + p_c, other_mass, method FROM records"))
    assert len(rows) == 8
    assert {r[0] for r in rows} == {personas[0].slug, personas[5].slug}
    assert all(r[1] in ("A", "B", "C") and r[2] == pytest.approx(1.0) and r[4] == "logprob"
               for r in rows)
    run = store.find_run(outcome.run)
    assert (run["backend"], run["model"]) == ("transformers", "tiny-llama")


def test_list_models_and_describe(tiny_dir):
    with backend_for(tiny_dir, device="cpu") as backend:
        assert backend.list_models() == ["tiny-llama"]
        assert backend.describe() == {"backend": "transformers", "model": "tiny-llama",
                                      "device": "cpu", "dtype": "float32",
                                      "chat_template": False}
    backend.close()  # twice is fine


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_permanent_error(tiny_dir):
    with pytest.raises(PermanentBackendError, match="CUDA requested but torch sees no GPU"):
        backend_for(tiny_dir, device="cuda")


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(PermanentBackendError, match="no config.json"):
        backend_for(tmp_path)


def test_unknown_dtype_is_refused(tiny_dir):
    with pytest.raises(PermanentBackendError, match="unknown dtype"):
        backend_for(tiny_dir, extra={"dtype": "int3"})


# ---- hf_models: resolving and the conversion cache ----------------------------------------

def test_a_model_folder_resolves_to_itself(tiny_dir):
    assert hf_models.resolve_model(str(tiny_dir)) == tiny_dir


def test_conversion_is_cached_and_atomic(tmp_path, monkeypatch, isolated_home):
    gguf = tmp_path / "toy.gguf"
    gguf.write_bytes(b"GGUF not really")
    calls = []

    def failing(src, out):
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(hf_models, "_convert", failing)
    with pytest.raises(KeyboardInterrupt):
        hf_models.resolve_model(str(gguf))
    converted = isolated_home / "cache" / "converted"
    assert list(converted.iterdir()) == [], "an interrupted conversion leaves nothing behind"

    def working(src, out):
        calls.append(src)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(hf_models, "_convert", working)
    first = hf_models.resolve_model(str(gguf))
    again = hf_models.resolve_model(str(gguf))
    assert first == again and first.parent == converted and first.name.startswith("toy-")
    assert calls == [gguf]
    os.utime(gguf, ns=(time.time_ns(), time.time_ns() + 10**9))  # a replaced file converts anew
    assert hf_models.resolve_model(str(gguf)) != first
    assert len(calls) == 2


def test_a_non_gguf_file_is_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(PermanentBackendError, match="not a .gguf"):
        hf_models.resolve_model(str(path))


def test_importing_hf_models_does_not_import_torch():
    code = ("import sys, fairpp_app.backends.hf_models, fairpp_app.jobs.simulation; "
            "sys.exit(int(any(m in sys.modules for m in ('torch', 'transformers'))))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---- the embedded model, converted, against llama.cpp ------------------------------------

@pytest.fixture
def embedded(embedded_home, monkeypatch):
    monkeypatch.setenv("FAIRPP_HOME", str(embedded_home))
    return embedded_home


def agreement_prompts():
    """About 20 prompts: 3 personas and the bare model on 5 test questions."""
    personas = builtin_personas()
    questions = split_questions(5)
    prompts = []
    for persona in (personas[0], personas[3], personas[6], None):
        prompts.extend(build_prompt(q, persona) for q in questions)
    return prompts


@pytest.mark.model
@pytest.mark.slow
def test_embedded_conversion_agrees_with_llama_cpp(embedded, capsys):
    from fairpp_app.backends.llamacpp import EmbeddedBackend

    prompts = agreement_prompts()
    started = time.perf_counter()
    with backend_for("embedded", batch_size=8) as hf:
        load_s = time.perf_counter() - started
        hf_scores = hf.score_options(prompts)
        assert hf.model_name == "gemma-3-270m"
    with EmbeddedBackend(BackendOptions()) as cpp:
        cpp_scores = cpp.score_options(prompts)
    agree = sum(h.answer == c.answer for h, c in zip(hf_scores, cpp_scores))
    max_diff = max(abs(x - y) for h, c in zip(hf_scores, cpp_scores)
                   for x, y in zip(h.probs, c.probs))
    max_other = max(abs(h.other_mass - c.other_mass) for h, c in zip(hf_scores, cpp_scores))
    with capsys.disabled():
        print(f"\n[transformers vs llama.cpp] argmax agreement {agree}/{len(prompts)}, "
              f"max |dp| {max_diff:.4f}, max |d other_mass| {max_other:.4f}, "
              f"load+convert {load_s:.0f} s")
    assert agree >= 0.8 * len(prompts)
    assert max_diff < 0.1
    for h, c in zip(hf_scores, cpp_scores, strict=True):
        if h.answer != c.answer:  # only near-ties may flip between the two kernels
            assert max(h.probs) - h.probs["ABC".index(c.answer)] < 0.1


@pytest.mark.model
@pytest.mark.slow
def test_embedded_conversion_is_cached_and_batches_exactly(embedded):
    prompts = agreement_prompts()[::3]
    target = hf_models.resolve_model(None)  # converted by the test above, or now
    started = time.perf_counter()
    assert hf_models.resolve_model("gemma-3-270m") == target
    assert time.perf_counter() - started < 1.0
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]
    with backend_for("embedded", batch_size=len(prompts), max_tokens=2) as hf:
        batched = hf.score_options(prompts)
        single = [hf.score_options([p])[0] for p in prompts]
        texts = hf.generate(prompts[:2])
    assert_same_scores(batched, single, tol=1e-4)
    assert len(texts) == 2

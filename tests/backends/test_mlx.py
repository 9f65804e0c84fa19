"""The mlx backend, checked against transformers on the same weights.

Tiny random models (tiny_models.py) pin what must hold whatever the weights: scores equal
to a transformers forward pass of the same folder, a reused prompt cache giving the same
scores as a fresh one (also for a Gemma 3 layout whose sliding window is shorter than the
prompts, where the cache cannot be cut back), greedy text, chat templates, and the engine
writing records. The ``model`` tests run the embedded Gemma 3 270M converted to a model
folder and compare its answers with llama.cpp's.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("mlx_lm")

from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.mlx_backend import MLXBackend, config_overrides
from fairpp_app.backends.registry import create
from fairpp_app.core.errors import PermanentBackendError
from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import build_prompt
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.jobs.simulation import run_simulation
from tests.support.tiny_models import (
    mixed_prompts,
    split_questions,
)


def backend_for(path, **options) -> MLXBackend:
    extra = options.pop("extra", {})
    return create("mlx", BackendOptions(model=str(path), extra=extra, **options))


def torch_letter_probs(model, tokens: list[int], letter_ids) -> tuple[list[float], float]:
    """Reference: transformers' last-position softmax, summed per letter and renormalised."""
    import torch

    with torch.inference_mode():
        logits = model(torch.tensor([tokens])).logits[0, -1].double()
    logprobs = torch.log_softmax(logits, -1)
    mass = [float(logprobs[ids].exp().sum()) for ids in letter_ids]
    return [m / sum(mass) for m in mass], 1.0 - sum(mass)


# ---- tiny models -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tiny_dir", "tiny_gemma_dir"])
def test_scores_match_transformers_on_the_same_folder(which, request):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue(which)
    prompts = mixed_prompts()
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with backend_for(path) as backend:
        scores = backend.score_options(prompts)
        for prompt, got in zip(prompts, scores, strict=True):
            probs, other = torch_letter_probs(reference, backend.prompt_ids(prompt), backend.prompts.option_ids())
            assert sum(got.probs) == pytest.approx(1.0, abs=1e-9)
            assert got.probs == pytest.approx(probs, abs=1e-3)
            assert got.other_mass == pytest.approx(other, abs=1e-3)
    assert len({s.probs for s in scores}) > 1, "a random model still answers prompts differently"


def test_the_prompt_cache_is_reused_and_changes_nothing(tiny_dir):
    prompts = mixed_prompts()
    with backend_for(tiny_dir) as backend:
        total = sum(len(backend.prompt_ids(p)) for p in prompts)
        reused = backend.score_options(prompts)
        assert backend.describe()["prefix_reuse"] is True
        assert backend.prompt_tokens < 0.6 * total, "a persona's system prompt is evaluated once"
        fresh = []
        for p in prompts:
            backend.forget_cache()  # forget everything: the next prompt starts from nothing
            fresh.extend(backend.score_options([p]))
    for r, f in zip(reused, fresh, strict=True):
        assert r.probs == pytest.approx(f.probs, abs=1e-5)
        assert r.other_mass == pytest.approx(f.other_mass, abs=1e-5)


def test_a_wrapped_sliding_window_cache_is_rebuilt(tiny_gemma_dir):
    """Past the window the cache cannot be cut back: every prompt is evaluated in full."""
    prompts = mixed_prompts(2)
    with backend_for(tiny_gemma_dir) as backend:
        first = backend.score_options(prompts)
        assert backend.prompt_tokens == sum(len(backend.prompt_ids(p)) for p in prompts)
        again = [backend.score_options([p])[0] for p in prompts]
    assert [s.probs for s in first] == [s.probs for s in again]


def test_gemma_softcap_is_applied_to_the_scores(tiny_gemma_dir):
    prompt = mixed_prompts(1)[0]
    with backend_for(tiny_gemma_dir) as backend:
        assert backend.logit_softcap == 2.0
        logits = backend.last_logits(backend.prompt_ids(prompt))
        assert float(abs(logits).max()) <= 2.0


def test_text_mode_matches_transformers_greedy(tiny_dir):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    prompts = mixed_prompts(2)
    reference = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    with backend_for(tiny_dir, max_tokens=5) as backend:
        texts = backend.generate(prompts)
        backend.score_options(prompts[:1])  # the cache now holds something else
        again = backend.generate(prompts)
        expected = []
        for p in prompts:
            ids = torch.tensor([backend.prompt_ids(p)])
            with torch.inference_mode():
                out = reference.generate(ids, max_new_tokens=5, do_sample=False)
            expected.append(backend.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    assert texts == again == expected
    assert all(isinstance(t, str) and t for t in texts)
    assert not any("Answer:" in t for t in texts), "the prompt must not be echoed"


def test_simulation_writes_a_record_per_persona_and_question(store, tiny_dir):
    personas = builtin_personas()
    config = SimulationConfig(backend="mlx", model=str(tiny_dir), split="test", limit=3,
                              personas="1,6")
    outcome = run_simulation(store, config, personas)
    assert outcome.status == "finished", outcome.message
    assert outcome.written == 6
    rows = list(store.db.execute(
        "SELECT respondent, answer, p_a + p_b + p_c, other_mass, method FROM records"))
    assert len(rows) == 6
    assert {r[0] for r in rows} == {personas[0].slug, personas[5].slug}
    assert all(r[1] in ("A", "B", "C") and r[2] == pytest.approx(1.0) and 0 <= r[3] <= 1
               and r[4] == "logprob" for r in rows)
    run = store.find_run(outcome.run)
    assert (run["backend"], run["model"]) == ("mlx", "tiny-llama")


def test_list_models_and_describe(tiny_dir):
    backend = backend_for(tiny_dir, device="cpu")
    with backend:
        assert backend.list_models() == ["tiny-llama"]
        assert backend.describe() == {"backend": "mlx", "model": "tiny-llama", "device": "cpu",
                                      "chat_template": False, "prefix_reuse": True}
        # An explicit device gives generation its own stream on that device.
        assert backend.generate(mixed_prompts(1)[:1], 2) == backend_for(tiny_dir).generate(
            mixed_prompts(1)[:1], 2)
    backend.close()  # twice is fine


NO_TORCH_SCRIPT = """
import sys
sys.modules["torch"] = None  # `import torch` fails from here on, as on a Mac without torch
from pathlib import Path
from fairpp_app.backends.base import BackendOptions
from fairpp_app.backends.registry import create
from tests.support.tiny_models import build_tiny_model, mixed_prompts

path = build_tiny_model(Path(sys.argv[1]) / "tiny")
with create("mlx", BackendOptions(model=str(path), max_tokens=3)) as backend:
    scores = backend.score_options(mixed_prompts(1))
    text = backend.generate(mixed_prompts(1)[:1])[0]
assert all(abs(sum(s.probs) - 1.0) < 1e-9 for s in scores), scores
assert isinstance(text, str) and text, text
assert sys.modules.get("torch") is None
print("ok", len(scores))
"""


def test_the_mlx_backend_runs_a_tiny_model_without_torch(tmp_path):
    """On a Mac without torch: the tiny model is built and scored by mlx with no torch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(tmp_path)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok 3"


def test_without_mlx_lm_the_registry_says_what_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # makes `import mlx_lm` fail
    monkeypatch.delitem(sys.modules, "fairpp_app.backends.mlx_backend")
    with pytest.raises(PermanentBackendError, match="needs the Python package 'mlx_lm'"):
        create("mlx", BackendOptions(model="anything"))


# ---- errors and config translation -------------------------------------------------------


def test_unsupported_architecture_is_a_clear_error(tmp_path, tiny_dir):
    import json
    import shutil

    path = tmp_path / "odd"
    shutil.copytree(tiny_dir, path)
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "no-such-architecture"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PermanentBackendError, match="mlx-lm could not load"):
        backend_for(path)


def test_unknown_device_is_refused(tiny_dir):
    with pytest.raises(PermanentBackendError, match="auto, cpu or gpu"):
        backend_for(tiny_dir, device="tpu")


def test_a_gpu_mlx_does_not_have_is_refused(tiny_dir):
    import mlx.core as mx

    if mx.is_available(mx.gpu):
        pytest.skip("this machine has an mlx GPU")
    with pytest.raises(PermanentBackendError, match="no GPU"):
        backend_for(tiny_dir, device="gpu")


def test_transformers5_rope_and_layer_settings_are_translated():
    gemma = {"model_type": "gemma3_text",
             "rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                                 "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}},
             "layer_types": ["sliding_attention"] * 5 + ["full_attention"]
             + ["sliding_attention"] * 5 + ["full_attention"]}
    assert config_overrides(gemma) == {"rope_theta": 1e6, "rope_local_base_freq": 1e4,
                                       "sliding_window_pattern": 6}
    scaled = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}
    assert config_overrides({"model_type": "llama", "rope_parameters": scaled}) == {
        "rope_theta": 5e5, "rope_scaling": scaled}
    assert config_overrides({"model_type": "llama", "rope_theta": 1e4}) == {}
    with pytest.raises(PermanentBackendError, match="irregular"):
        config_overrides({"model_type": "gemma3_text",
                          "layer_types": ["full_attention", "sliding_attention", "sliding_attention",
                                          "full_attention"]})


# ---- the embedded model, converted, against llama.cpp ------------------------------------

@pytest.mark.model
@pytest.mark.slow
def test_embedded_gemma_agrees_with_llama_cpp(embedded_home, monkeypatch, capsys):
    from fairpp_app.backends.llamacpp import EmbeddedBackend

    monkeypatch.setenv("FAIRPP_HOME", str(embedded_home))
    persona = builtin_personas()[2]
    prompts = [build_prompt(q, persona) for q in split_questions(5)]
    started = time.perf_counter()
    with backend_for("embedded") as mlx_backend:
        load_s = time.perf_counter() - started
        assert mlx_backend.model_name == "gemma-3-270m"
        started = time.perf_counter()
        mlx_scores = mlx_backend.score_options(prompts)
        rate = len(prompts) / (time.perf_counter() - started)
    with EmbeddedBackend(BackendOptions()) as cpp:
        started = time.perf_counter()
        cpp_scores = cpp.score_options(prompts)
        cpp_rate = len(prompts) / (time.perf_counter() - started)
    agree = sum(m.answer == c.answer for m, c in zip(mlx_scores, cpp_scores))
    max_diff = max(abs(x - y) for m, c in zip(mlx_scores, cpp_scores)
                   for x, y in zip(m.probs, c.probs))
    with capsys.disabled():
        print(f"\n[mlx vs llama.cpp] argmax agreement {agree}/{len(prompts)}, max |dp| "
              f"{max_diff:.4f}; mlx {rate:.3f} records/s, llama.cpp {cpp_rate:.2f} records/s, "
              f"load+convert {load_s:.0f} s")
    assert all(sum(s.probs) == pytest.approx(1.0) for s in mlx_scores)
    assert agree >= 0.8 * len(prompts)
    assert max_diff < 0.1

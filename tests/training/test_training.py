"""Training end to end on a tiny model: the four methods, events, evaluation, the report,
resuming after kill -9, and runs that must stop with a message instead of a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import UsageError
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.failures import TrainingDiverged
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import read_metadata
from tests.support.training_data import N_TEST, PERSONA_RUN, TARGET_SLUG

REPO = Path(__file__).resolve().parents[2]


def _config(tiny_dir, method: str, **kw) -> TrainingConfig:
    options = dict(method=method, from_run=PERSONA_RUN, base=str(tiny_dir), name=f"tiny-{method}",
                   batch_size=4, grad_accum=2, max_steps=2, eval_every=0, save_every=50,
                   lr=5e-3)
    options.update(kw)
    return TrainingConfig(**options)


def test_four_methods_train_evaluate_and_report(persona_store, personas, tiny_dir, capsys):
    from fairpp_app.training.evaluate import evaluate_adapter
    from fairpp_app.training.report import build_report

    store = persona_store
    for method in ("sft", "wsft", "dpo", "wdpo"):
        outcome = run_training(store, personas, _config(tiny_dir, method))
        assert outcome.status == "finished" and outcome.step == 2
        row = store.get_training(f"tiny-{method}")
        assert row["status"] == "finished" and row["adapter_path"] == outcome.adapter_path
        meta = read_metadata(outcome.adapter_path)
        assert meta["method"] == method and meta["target"]["slug"] == TARGET_SLUG
        assert meta["base_model"] == str(tiny_dir) and meta["data_hash"] == row["config"]["data"]["data_hash"]
        assert meta["weights"]["weighted"] == method.startswith("w")
        assert meta["skipped_unparsed"] == 1 and meta["questions"] == 39
        assert (Path(outcome.adapter_path) / "adapter_model.safetensors").is_file()
        steps = [e for e in store.events(training_id=row["id"]) if e["kind"] == "train_step"]
        assert [e["payload"]["step"] for e in steps] == [1, 2]
        if method.endswith("dpo"):
            assert steps[-1]["payload"]["reward_accuracy"] is not None
        if method != "wdpo":
            result = evaluate_adapter(store, personas, f"tiny-{method}", split="test",
                                      limit=N_TEST, device="cpu")
            assert result.status == "finished" and result.written == N_TEST
    db = ["--db", str(store.path)]
    assert main(db + ["evaluate", "--adapter", "tiny-wdpo", "--limit", str(N_TEST),
                      "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == N_TEST
    run = store.get_run("eval-tiny-wdpo")
    assert run["kind"] == "simulation" and run["model"] == "tiny-wdpo"
    frame = store.record_frame(run["id"])
    assert set(frame["respondent"]) == {"tiny-wdpo"} and frame["p_a"].notna().all()

    target = next(p for p in personas if p.slug == TARGET_SLUG)
    report = build_report(store, personas, target)
    rows = {r["row"]: r for r in report["rows"]}
    assert list(rows) == ["base", "role-play", "SFT", "WSFT", "DPO", "WDPO"]
    assert report["from_run"] == PERSONA_RUN
    for label in ("SFT", "WSFT", "DPO", "WDPO"):
        assert set(rows[label]["similarity"]) == {p.slug for p in personas}
        assert rows[label]["margin"] is not None and rows[label]["questions"] == N_TEST
    assert rows["role-play"]["target_similarity"] == pytest.approx(1.0)
    assert "fairpp evaluate --base" in rows["base"]["note"]

    assert main(db + ["report", "--target", "6", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in printed["rows"]] == list(rows)
    assert main(db + ["report", "--target", "6"]) == 0
    table = capsys.readouterr().out
    assert "WDPO" in table and "margin" in table


def test_report_rows_come_from_the_latest_training_or_the_named_one(persona_store, personas,
                                                                    tiny_dir, db_path, capsys):
    from fairpp_app.training.evaluate import evaluate_adapter
    from fairpp_app.training.report import build_report

    store = persona_store
    for name in ("dpo-one", "dpo-two"):
        run_training(store, personas, _config(tiny_dir, "dpo", name=name, max_steps=1))
    run_training(store, personas, _config(tiny_dir, "sft", name="to-p1", target="1", max_steps=1))
    target = next(p for p in personas if p.slug == TARGET_SLUG)

    def dpo_row(**kw):
        return next(r for r in build_report(store, personas, target, **kw)["rows"] if r["row"] == "DPO")

    assert dpo_row()["source"] == "dpo-two"
    assert dpo_row(use=["dpo-one"])["source"] == "dpo-one"
    assert dpo_row(from_run=PERSONA_RUN, use=["dpo-one"])["source"] == "dpo-one"
    with pytest.raises(UsageError, match="two dpo trainings"):
        dpo_row(use=["dpo-one", "dpo-two"])
    with pytest.raises(UsageError, match="aims at progressive-activists"):
        dpo_row(use=["to-p1"])
    # dpo-one also answers questions the personas did not: rows cover the personas' questions.
    evaluate_adapter(store, personas, "dpo-one", limit=N_TEST + 5, device="cpu")
    evaluate_adapter(store, personas, "dpo-two", limit=N_TEST, device="cpu")
    one = dpo_row(use=["dpo-one"])
    assert one["questions"] == N_TEST and sum(one["answers"].values()) == N_TEST
    rows = {r["row"]: r for r in build_report(store, personas, target)["rows"]}
    counts = rows["DPO"]["answers"]
    assert set(counts) == {"A", "B", "C", "unparsed"} and sum(counts.values()) == N_TEST
    assert sum(rows["role-play"]["answers"].values()) == rows["role-play"]["questions"]
    store.close()
    assert main(["--db", str(db_path), "report", "--use", "dpo-one"]) == 0
    err = capsys.readouterr().err
    assert "DPO dpo-one" in err and "answers A/B/C %: role-play " in err
    assert main(["--db", str(db_path), "report", "--use", "nope"]) == 4
    assert "no training named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cpu", "mlx"])
def test_eval_events_are_stored_with_similarity_to_every_persona(persona_store, personas, tiny_dir,
                                                                 device):
    if device == "mlx":
        pytest.importorskip("mlx_lm")
    events = []
    run_training(persona_store, personas, _config(tiny_dir, "wdpo", max_steps=4, eval_every=2,
                                                  eval_limit=N_TEST, device=device,
                                                  grad_accum=1 if device == "mlx" else 2),
                 listener=events.append)
    row = persona_store.get_training("tiny-wdpo")
    stored = persona_store.events(training_id=row["id"])
    evals = [e["payload"] for e in stored if e["kind"] == "train_eval"]
    assert [e["step"] for e in evals] == [0, 2, 4]
    slugs = {p.slug for p in personas}
    for e in evals:
        assert set(e["similarity"]) == slugs and set(e["agreement"]) == slugs
        others = [v for k, v in e["similarity"].items() if k != TARGET_SLUG]
        assert e["margin"] == pytest.approx(e["similarity"][TARGET_SLUG] - sum(others) / 6)
    assert evals[0]["loss"] is None and evals[1]["loss"] is not None
    kinds = [e["kind"] for e in stored]
    assert kinds[0] == "train_started" and kinds[-1] == "train_ended"
    assert [e.kind for e in events] == kinds  # the listener saw what the table holds


def test_nan_loss_stops_the_run_with_a_clear_message(persona_store, personas, tiny_dir):
    """Caused for real: a learning rate of 1e30 blows the adapter up after the first step."""
    config = _config(tiny_dir, "wdpo", lr=1e30, max_steps=6, batch_size=2, grad_accum=1)
    with pytest.raises(TrainingDiverged, match=r"the loss became (nan|inf|-inf) at step \d.*--lr"):
        run_training(persona_store, personas, config)
    row = persona_store.get_training("tiny-wdpo")
    assert row["status"] == "failed"
    ended = persona_store.events(training_id=row["id"])[-1]
    assert ended["kind"] == "train_ended" and "loss became" in ended["payload"]["message"]


def test_cli_errors_are_messages_not_tracebacks(persona_store, tiny_dir, db_path, capsys):
    persona_store.close()
    base = ["--db", str(db_path), "train", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
            "--max-steps", "1"]
    import torch

    if not torch.cuda.is_available():
        assert main(base + ["--device", "cuda"]) != 0
        err = capsys.readouterr().err
        assert "CUDA requested but torch sees no GPU" in err and "Traceback" not in err
    assert main(["--db", str(db_path), "train", "--method", "dpo"]) == 2
    assert "--from-run is required" in capsys.readouterr().err
    assert main(["--db", str(db_path), "train", "--resume", "nope"]) == 4
    assert "no training named 'nope'" in capsys.readouterr().err
    assert main(base + ["--lr", "0"]) == 2
    assert "--lr must be a positive number" in capsys.readouterr().err


def test_cli_prints_steps_and_evals_by_persona_number(persona_store, tiny_dir, db_path, capsys):
    persona_store.close()
    assert main(["--db", str(db_path), "train", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
                 "--max-steps", "2", "--eval-every", "2", "--eval-limit", str(N_TEST),
                 "--batch-size", "4", "--grad-accum", "1", "--name", "cli-run"]) == 0
    err = capsys.readouterr().err
    assert "step 2: loss" in err
    shares = next(line for line in err.splitlines() if line.startswith("target's answers A/B/C: "))
    assert "; by weight " in shares  # wdpo, the default method
    evals = [line for line in err.splitlines() if line.startswith("eval at step")]
    assert [line.split(":")[0] for line in evals] == ["eval at step 0", "eval at step 2"]
    for line in evals:
        # Two personas share the word "disengaged": numbers tell them apart.
        assert all(f"P{n}=" in line for n in range(1, 8))
        assert "target P6 margin" in line and "agreement" in line
    assert "training 'cli-run' finished at step 2" in err


def _checkpoint(home: Path, name: str) -> Path | None:
    folder = home / "trainings" / name / "checkpoints"
    for ckpt in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        if (ckpt / "trainer_state.json").is_file():
            return ckpt
    return None


def test_resume_after_kill_9_continues_the_step_count(persona_store, tiny_dir, db_path,
                                                      isolated_home):
    max_steps = 16
    cmd = [sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "train",
           "--method", "wsft", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
           "--name", "killed", "--batch-size", "2", "--grad-accum", "1", "--max-steps",
           str(max_steps), "--save-every", "4", "--eval-every", "0", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _checkpoint(isolated_home, "killed") is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    row = persona_store.get_training("killed")
    assert row["status"] == "running"  # nobody got to write anything else
    killed_steps = [e["payload"]["step"] for e in persona_store.events(training_id=row["id"])
                    if e["kind"] == "train_step"]
    assert killed_steps and max(killed_steps) < max_steps
    last_event = persona_store.events(training_id=row["id"])[-1]["id"]

    done = subprocess.run([sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "train",
                           "--resume", "killed", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "finished" and outcome["step"] == max_steps
    after = persona_store.events(training_id=row["id"], after_id=last_event)
    started = after[0]["payload"]
    assert after[0]["kind"] == "train_started" and started["start_step"] >= 4
    assert started["start_step"] % 4 == 0 and started["start_step"] <= max(killed_steps)
    resumed_steps = [e["payload"]["step"] for e in after if e["kind"] == "train_step"]
    assert resumed_steps == list(range(started["start_step"] + 1, max_steps + 1))
    assert persona_store.get_training("killed")["status"] == "finished"
    assert read_metadata(outcome["adapter_path"])["steps"] == max_steps


def test_help_and_config_do_not_import_torch():
    code = ("import sys; from fairpp_app.cli.parser import build_parser; build_parser(); "
            "import fairpp_app.training.runner, fairpp_app.training.report; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_out_of_memory_names_the_flags_to_change(persona_store, personas, tiny_dir, monkeypatch):
    """A device OOM (simulated: there is no GPU here) becomes advice, and the run is marked failed."""
    import torch

    from fairpp_app.training.failures import TrainingOutOfMemory
    from fairpp_app.training.torch_trainer import WeightedAlignmentTrainer

    def oom(self, *a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(WeightedAlignmentTrainer, "train", oom)
    with pytest.raises(TrainingOutOfMemory,
                       match=r"--batch-size 4 and --grad-accum 2; try --batch-size 2 --grad-accum 4"):
        run_training(persona_store, personas, _config(tiny_dir, "sft"))
    assert persona_store.get_training("tiny-sft")["status"] == "failed"

"""The torch side end to end on a tiny model: trained adapters evaluated and reported, the
CLI's messages, and ``fairpp --help`` without torch.

What every trainer promises (records, events, divergence, out of memory, resuming) is in
test_trainer_contract, run against torch and MLX alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fairpp_app.cli import main
from fairpp_app.core.errors import UsageError
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.runner import run_training
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
        # What the run leaves behind (row, events, files) is test_trainer_contract's.
        outcome = run_training(store, personas, _config(tiny_dir, method))
        assert outcome.status == "finished" and outcome.step == 2
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


def test_help_and_config_do_not_import_torch():
    code = ("import sys; from fairpp_app.cli.parser import build_parser; build_parser(); "
            "import fairpp_app.training.runner, fairpp_app.training.report, "
            "fairpp_app.training.ending, fairpp_app.training.live_eval, fairpp_app.training.methods; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

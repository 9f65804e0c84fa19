"""``fairpp sweep``: the cells a grid names, and a real sweep killed with SIGKILL mid-way and
rerun, which must end with exactly its cells trained and evaluated once each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairpp_app.core.errors import UsageError
from fairpp_app.training.sweep import Grid, Sweep, cells, from_mapping
from tests.support.jobs import kill_when
from tests.support.training_data import N_TEST, PERSONA_RUN

REPO = Path(__file__).resolve().parents[2]


def test_a_grid_names_its_cells_once_each_sft_before_the_paper_dpo():
    sweep = Sweep(name="g", grids=[Grid(methods=["dpo", "wdpo"], recipes=["fairpp", "paper"],
                                        weighting=["batch", "sample"], seeds=[0, 1])],
                  train={"from_run": "r"})
    plan = cells(sweep)
    names = [c.name for c in plan]
    assert len(names) == len(set(names))
    # dpo ignores the weighting: 2 recipes x 2 seeds, plus the paper's sft start per seed;
    # wdpo: 2 recipes x 2 weightings x 2 seeds, plus a wsft start per paper cell.
    assert len(plan) == 4 + 2 + 8 + 4
    by_name = {c.name: c.config for c in plan}
    paper = by_name["g-wdpo-paper-sample-a1-b1-s1"]
    assert paper.init_from == "g-wsft-paper-sample-a1-b1-s1" and paper.pairs == 3
    assert names.index(paper.init_from) < names.index("g-wdpo-paper-sample-a1-b1-s1")
    assert by_name["g-dpo-paper-s0"].init_from == "g-sft-paper-s0"
    assert by_name["g-dpo-fairpp-s0"].init_from is None
    assert by_name["g-wdpo-fairpp-batch-a1-b1-s0"].seed == 0

    from_file = from_mapping({"name": "f", "grid": [{"methods": ["sft"], "seeds": [3]},
                                                    {"methods": "dpo", "seeds": [0, 1, 2]}],
                              "train": {"from_run": "r", "max_steps": 19},
                              "evaluate": {"limit": 50}})
    assert [c.name for c in cells(from_file)] == ["f-sft-fairpp-s3", "f-dpo-fairpp-s0",
                                                  "f-dpo-fairpp-s1", "f-dpo-fairpp-s2"]
    assert from_file.eval_limit == 50 and cells(from_file)[0].config.max_steps == 19
    with pytest.raises(UsageError, match="set by the grid"):
        Sweep(train={"from_run": "r", "seed": 1})
    with pytest.raises(UsageError, match="unknown grid keys: method"):
        from_mapping({"grid": {"method": ["dpo"]}, "train": {"from_run": "r"}})
    with pytest.raises(UsageError, match="--from-run is required"):
        Sweep(train={})
    with pytest.raises(UsageError, match="evaluation limit must be a whole number"):
        from_mapping({"train": {"from_run": "r"}, "evaluate": {"limit": 0}})


def test_a_sweep_file_and_flags_make_one_sweep(tmp_path):
    from fairpp_app.cli.parser import build_parser
    from fairpp_app.cli.sweep_commands import sweep_from_args

    path = tmp_path / "s.toml"
    path.write_text('name = "f"\n[[grid]]\nmethods = ["dpo"]\nseeds = [0, 1]\n'
                    '[[grid]]\nmethods = ["wdpo"]\nweighting = ["sample"]\n'
                    '[train]\nfrom_run = "r"\nmax_steps = 5\n[evaluate]\nlimit = 30\n')
    parse = build_parser().parse_args
    sweep = sweep_from_args(parse(["sweep", "--file", str(path), "--max-steps", "7",
                                   "--seeds", "4", "--evaluate-device", "cpu"]))
    assert [c.name for c in cells(sweep)] == ["f-dpo-fairpp-s4", "f-wdpo-fairpp-sample-a1-b1-s4"]
    assert sweep.train == {"from_run": "r", "max_steps": 7}
    assert (sweep.eval_limit, sweep.eval_device) == (30, "cpu")
    with pytest.raises(UsageError, match="--alpha takes a comma-separated list of numbers"):
        sweep_from_args(parse(["sweep", "--from-run", "r", "--alpha", "one"]))
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(UsageError, match="is not valid TOML"):
        sweep_from_args(parse(["sweep", "--file", str(bad)]))


def test_a_sweep_killed_mid_way_finishes_with_exactly_its_cells(persona_store, tiny_dir, db_path,
                                                                isolated_home):
    store = persona_store
    cmd = [sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "sweep", "--name", "k",
           "--methods", "dpo,wdpo", "--seeds", "0", "--from-run", PERSONA_RUN, "--base",
           str(tiny_dir), "--max-steps", "1", "--batch-size", "4", "--grad-accum", "1",
           "--eval-every", "0", "--evaluate-limit", str(N_TEST), "--evaluate-device", "cpu",
           "--no-base", "--json"]
    first_cell, second_cell = "k-dpo-fairpp-s0", "k-wdpo-fairpp-batch-a1-b1-s0"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: store.find_training(second_cell) is not None, "the second cell's start", timeout=300)
    assert store.get_training(first_cell)["status"] == "finished"
    assert store.get_run(f"eval-{first_cell}")["status"] == "finished"
    second_eval = store.find_run(f"eval-{second_cell}")
    assert second_eval is None or second_eval["status"] != "finished"  # killed mid-way

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "trained already" in done.stderr
    result = json.loads(done.stdout)
    assert [(c["name"], c["status"]) for c in result["cells"]] == [
        (first_cell, "finished"), (second_cell, "finished")]
    for name in (first_cell, second_cell):
        row = store.get_training(name)
        assert row["status"] == "finished"
        events = store.events(training_id=row["id"])
        steps = [e["payload"]["step"] for e in events if e["kind"] == "train_step"]
        assert set(steps) == {1}
        run = store.get_run(f"eval-{name}")
        assert run["status"] == "finished"
        assert len(store.record_frame(run["id"])) == N_TEST  # resumed, never duplicated
    started = [e for e in store.events(training_id=store.get_training(first_cell)["id"])
               if e["kind"] == "train_started"]
    assert len(started) == 1  # the finished cell was skipped, not trained again
    rows = {r["row"]: r for r in result["report"]["rows"]}
    assert rows["DPO"]["source"] == first_cell and rows["WDPO"]["source"] == second_cell
    assert rows["WDPO"]["interval"]["kind"] == "bootstrap"
    again = subprocess.run([sys.executable, "-m", "fairpp_app.cli", "--db", str(db_path), "report",
                            "--sweep", "k", "--json"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows"] == result["report"]["rows"]

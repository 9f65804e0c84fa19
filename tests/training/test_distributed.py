"""Training across processes: the real ``accelerate launch`` of two CPU processes (gloo).

The slow tests launch ``fairpp train`` the way a user would, on the tiny random model, and
compare it with the same configuration trained in one process: the same global batch must
give the same loss at every step (within ``TOLERANCE``), rank 0 alone writes the events
(one per step), the checkpoints and the one adapter, and a launch killed with SIGKILL
resumes with the same launch line and ends at the exact step. The launch kills itself at a
known moment through the project's crash switch (``FAIRPP_TEST_CRASH``, SIGSTOP at the
third step on every rank), then the test SIGKILLs the launcher and every rank.

Two launch lines give two gloo processes on a machine without a GPU: ``--multi_gpu`` with
``--device cpu`` (accelerate's torchrun path), and ``--cpu --mpirun_hostfile FILE``, which
accelerate runs through Open MPI's mpirun (Debian's openmpi-bin; .ci/run installs it).
``accelerate launch --cpu --num_processes 2`` without a hostfile starts ONE process, which
fairpp refuses with a message saying which line to use.

The fast tests check what is refused before anything loads, and that a rank other than 0
reads the database without writing to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fairpp_app.core.errors import UsageError
from fairpp_app.store.database import Store
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.runner import run_training
from fairpp_app.training.session import trainings_root
from tests.support.jobs import wait_until
from tests.support.training_data import PERSONA_RUN

REPO = Path(__file__).resolve().parents[2]
#: Two processes against one: the largest difference of a step's loss allowed. The ranks'
#: gradients are averaged by gloo in float32, so the curves differ by rounding only
#: (measured: 1.2e-7 over six steps); a wrong normalisation or sharding moves the
#: second step's loss by 1e-3 or more, and without the filler rows the short micro-batch
#: that ends an epoch (step 5 here) differs by 1e-2.
TOLERANCE = 1e-5


def _config(tiny_dir: Path, name: str, **kw) -> TrainingConfig:
    options = dict(method="wdpo", from_run=PERSONA_RUN, base=str(tiny_dir), name=name,
                   device="cpu", batch_size=4, grad_accum=2, max_steps=3, eval_every=0,
                   save_every=2, lr=5e-3, lora_dropout=0.0)
    options.update(kw)
    return TrainingConfig(**options)


# ---- refused before anything loads ----------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"device": "mlx"}, "MLX trainer runs in one process"),
    ({"device": "mps"}, "MPS backend cannot train in several processes"),
    ({"batch_size": 3}, "--batch-size 3 does not split evenly over 2 processes"),
])
def test_a_launch_refuses_what_cannot_spread(persona_store, personas, tiny_dir, monkeypatch,
                                             fields, message):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = _config(tiny_dir, "refused", **fields)
    with pytest.raises(UsageError, match=message):
        run_training(persona_store, personas, config)
    assert persona_store.find_training("refused") is None


def test_cuda_under_a_cpu_launch_is_refused(persona_store, personas, tiny_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    with pytest.raises(UsageError, match="keeps every process on the CPU"):
        run_training(persona_store, personas, _config(tiny_dir, "refused", device="cuda"))


def test_a_launch_needs_a_device_that_holds_several_processes():
    from fairpp_app.training import distributed

    two = distributed.World(rank=1, size=2, local_rank=1)
    with pytest.raises(UsageError, match="MPS, which cannot train in several processes"):
        distributed.check_device("mps", two)
    distributed.check_device("cpu", two)
    assert distributed.process_device("cuda", two) == "cuda:1"  # each rank its own GPU
    assert distributed.per_process_batch(_config(Path("."), "x", batch_size=8), two) == 4


def test_a_reader_store_writes_nothing_and_leaves_rows_to_the_writer(persona_store, db_path):
    """The store of a rank other than 0: a write raises, and a row whose owner is gone stays
    ``running`` for it (marking it ``interrupted`` is a write, left to rank 0)."""
    row = persona_store.create_training("gone", "wdpo", "x", "embedded", PERSONA_RUN, {})
    # A real process claims the training and ends: its owner is gone.
    claim = ("import sys; from fairpp_app.store.database import Store; "
             "Store(sys.argv[1]).claim_training(int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", claim, str(db_path), str(row["id"])], check=True,
                   cwd=REPO, timeout=60)
    reader = Store(db_path)
    try:
        reader.refuse_writes()
        assert reader.find_training("gone")["status"] == "running"
        with pytest.raises(Exception, match="readonly"):
            reader.heartbeat_training(row["id"])
    finally:
        reader.close()
    assert persona_store.find_training("gone")["status"] == "interrupted"


# ---- the real launch --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: How ``_launch`` asks accelerate for two processes: its torchrun path, its mpirun path (with
#: a hostfile), and the --cpu line that starts one process only.
LAUNCHERS = {"multi_gpu": ["--multi_gpu"], "mpirun": ["--cpu", "--mpirun_hostfile", "{hostfile}"],
             "cpu": ["--cpu"]}


def _launch(db: Path, argv: list[str], log: Path, extra_env: dict | None = None,
            launcher: str = "multi_gpu") -> subprocess.Popen:
    """``accelerate launch`` of two processes running ``fairpp train``, in its own session."""
    hostfile = log.parent / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    # Open MPI refuses root unless told; the test machines run as root.
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(log.parent / "hf"),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMP_NUM_THREADS": "1", **(extra_env or {})}
    how = [a.format(hostfile=hostfile) for a in LAUNCHERS[launcher]]
    command = [sys.executable, "-m", "accelerate.commands.launch", *how,
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "fairpp_app.cli", "--db", str(db), "train", *argv, "--quiet"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each rank in a session of its own, so
    killing the launcher's process group does not reach them)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill_launch(process: subprocess.Popen) -> None:
    """SIGKILL to the launcher and to every rank, as a crash of the whole machine would."""
    for pid in _descendants(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def _finish(process: subprocess.Popen, log: Path) -> None:
    try:
        code = process.wait(timeout=600)
    finally:
        if process.poll() is None:
            _kill_launch(process)
    assert code == 0, log.read_text()[-4000:]


def _argv(config: TrainingConfig) -> list[str]:
    return ["--from-run", config.from_run, "--base", config.base, "--name", config.name,
            "--device", "cpu", "--method", config.method, "--weighting", config.weighting,
            "--batch-size", str(config.batch_size), "--grad-accum", str(config.grad_accum),
            "--max-steps", str(config.max_steps), "--save-every", str(config.save_every),
            "--eval-every", "0", "--lr", str(config.lr), "--lora-dropout", "0"]


def _events(db: Path, name: str) -> list[dict]:
    with Store(db) as store:
        return store.events(training_id=store.get_training(name)["id"])


def _losses(db: Path, name: str) -> dict[int, float]:
    """The loss of each step (the later one where a resumed run did a step again)."""
    return {e["payload"]["step"]: e["payload"]["loss"] for e in _events(db, name)
            if e["kind"] == "train_step"}


def _assert_same_curve(one: dict[int, float], two: dict[int, float], steps: int) -> None:
    assert sorted(one) == sorted(two) == list(range(1, steps + 1))
    worst = max(abs(one[s] - two[s]) for s in one)
    assert worst <= TOLERANCE, (one, two)
    assert len({round(v, 4) for v in one.values()}) > 1  # the curve moved: a real comparison


def test_a_cpu_launch_of_one_process_is_refused(persona_store, tiny_dir, db_path, tmp_path):
    """accelerate's --cpu line without a hostfile runs the command once: refused, not trained
    alone, and nothing is written."""
    log = tmp_path / "launch.log"
    process = _launch(db_path, _argv(_config(tiny_dir, "alone")), log, launcher="cpu")
    assert process.wait(timeout=300) != 0
    text = log.read_text()
    assert text.startswith("fairpp: error: `accelerate launch --cpu --num_processes N` started "
                           "this one process only") and "--mpirun_hostfile" in text
    # accelerate's launcher prints its own traceback for the child's exit status; no frame
    # of fairpp's is in it (the child ended on its message, not on an exception).
    assert "fairpp_app/" not in text.partition("Traceback")[2]
    assert persona_store.find_training("alone") is None


needs_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None,
                                  reason="no mpirun (Debian's openmpi-bin)")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["multi_gpu", pytest.param("mpirun", marks=needs_mpirun)])
def test_two_processes_train_like_one(persona_store, personas, tiny_dir, db_path, tmp_path,
                                      launcher):
    # Six steps of 8 of the 39 questions: the fifth ends the epoch with a short micro-batch.
    single = _config(tiny_dir, "one-process", max_steps=6)
    assert run_training(persona_store, personas, single).status == "finished"
    launched = _config(tiny_dir, "two-processes", max_steps=6)
    log = tmp_path / "launch.log"
    _finish(_launch(db_path, _argv(launched), log, launcher=launcher), log)

    _assert_same_curve(_losses(db_path, "one-process"), _losses(db_path, "two-processes"), 6)
    kinds = [e["kind"] for e in _events(db_path, "two-processes")]
    # Rank 0 alone writes: one event per step, one start, one end.
    assert kinds.count("train_step") == 6
    assert kinds.count("train_started") == kinds.count("train_ended") == 1
    row = persona_store.get_training("two-processes")
    assert row["status"] == "finished"
    adapter = Path(row["adapter_path"])
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "fairpp_adapter.json").is_file()
    # Rank 0 wrote both ranks' random states into the checkpoint (the Trainer's layout).
    checkpoint = adapter.parent / "checkpoints" / "checkpoint-6"
    assert {p.name for p in checkpoint.glob("rng_state*")} == {"rng_state_0.pth", "rng_state_1.pth"}


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.slow
def test_a_killed_launch_resumes_with_the_same_line(persona_store, personas, tiny_dir, db_path,
                                                    tmp_path):
    """--weighting sample: rank 0's one seeded draw, sharded; killed after step 2's checkpoint."""
    single = _config(tiny_dir, "sampled-one", weighting="sample", max_steps=6)
    assert run_training(persona_store, personas, single).status == "finished"
    launched = _config(tiny_dir, "sampled-two", weighting="sample", max_steps=6)
    log = tmp_path / "launch.log"

    # Every rank stops itself as step 3 ends (after checkpoint-2 is whole); then the whole
    # launch is killed at once.
    first = _launch(db_path, _argv(launched), log, {"FAIRPP_TEST_CRASH": "training-step:SIGSTOP:3"})
    try:
        def rank0_stopped() -> bool:
            row = persona_store.find_training("sampled-two")
            return bool(row and row["owner"]) and _stopped(int(row["owner"]["pid"]))

        wait_until(rank0_stopped, "rank 0 stopped at step 3", timeout=300)
    finally:
        _kill_launch(first)
    # Once the killed ranks are reaped (not zombies still), reading the row finds the owner gone.
    wait_until(lambda: persona_store.get_training("sampled-two")["status"] == "interrupted",
               "the killed training marked interrupted", timeout=60)
    assert sorted(_losses(db_path, "sampled-two")) == [1, 2]

    _finish(_launch(db_path, ["--resume", "sampled-two"], log), log)
    row = persona_store.get_training("sampled-two")
    assert row["status"] == "finished"
    events = _events(db_path, "sampled-two")
    starts = [e["payload"]["start_step"] for e in events if e["kind"] == "train_started"]
    assert starts == [0, 2]
    steps = [e["payload"]["step"] for e in events if e["kind"] == "train_step"]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step once, the resumed ones after the checkpoint
    ended = [e["payload"] for e in events if e["kind"] == "train_ended"]
    assert [(e["status"], e["step"]) for e in ended] == [("finished", 6)]
    _assert_same_curve(_losses(db_path, "sampled-one"), _losses(db_path, "sampled-two"), 6)


@pytest.mark.slow
def test_a_stop_sent_to_rank_0_stops_every_rank(persona_store, tiny_dir, db_path, tmp_path):
    """``fairpp jobs stop`` signals the training's owner, rank 0 alone: every rank ends at the
    same step (none waits forever on the others), after a checkpoint, and it resumes."""
    from fairpp_app.jobs import supervisor

    launched = _config(tiny_dir, "stopped", max_steps=500, save_every=1000, batch_size=2,
                       grad_accum=1)
    log = tmp_path / "launch.log"
    process = _launch(db_path, _argv(launched), log)
    try:
        wait_until(lambda: persona_store.find_training("stopped") is not None
                   and len(_losses(db_path, "stopped")) >= 2, "step 2", timeout=300)
        owner = persona_store.get_training("stopped")["owner"]["pid"]
        supervisor.request_stop(int(owner), "cancel")
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            _kill_launch(process)
    row = persona_store.get_training("stopped")
    assert row["status"] == "cancelled", log.read_text()[-4000:]
    ended = [e["payload"] for e in _events(db_path, "stopped") if e["kind"] == "train_ended"]
    assert len(ended) == 1 and 2 <= ended[0]["step"] < 500
    folder = trainings_root() / "stopped" / "checkpoints"
    assert (folder / f"checkpoint-{ended[0]['step']}" / "trainer_state.json").is_file()

"""Training across processes (``accelerate launch``): which process this is, and what a
configuration must be to spread over several.

``accelerate launch --multi_gpu --num_processes N -m fairpp_app.cli train ...`` (or
``torchrun --nproc_per_node N``) starts N copies of the command; the launcher tells each its
place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), so every layer can
ask :func:`world` before torch is imported, and the CLI knows whether it may write before
it opens the database. With ``--device cpu`` and no GPU the N processes talk over gloo.
``accelerate launch --cpu --num_processes N --mpirun_hostfile FILE`` starts the N processes
through mpirun (Open MPI, Intel MPI or MVAPICH), which tells each its place through its own
variables (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``, ...); :func:`world` reads those too, in
accelerate's order. Without a hostfile accelerate's ``--cpu`` launch starts one process
however many are asked for; :func:`world` refuses that launch rather than train alone.

Three decisions make N processes one training:

* **Rank 0 is the only writer.** It owns the training's row (the claim and heartbeat), its
  events, checkpoints and adapter; the other ranks open the database read-only
  (``Store.refuse_writes``) and write no file, so a second writer cannot creep in.
* **The configuration's batch is the global batch.** ``--batch-size`` questions per
  micro-batch are split evenly over the processes (each takes ``batch_size / N``) and the
  step count, the learning-rate schedule and the stored configuration mean the same thing
  whatever N is (resuming under another N is meant to work, but is not tested). A batch that does not
  split evenly is refused here, before anything loads. The short micro-batch that ends an
  epoch is completed with rows of weight 0 (:func:`fillers`), so each process still takes
  an equal part and no question is seen twice.
* **Torch trains here, MLX does not.** The launcher runs torch's DDP; the MLX trainer is one
  process, and Apple's MPS backend cannot hold several processes, so both are refused with a
  message saying what to run instead.

The collectives themselves (the shared loss, the agreed data, the common stop) need torch
and live in ``collectives``; this module is plain Python.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fairpp_app.core.errors import UsageError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes (rank 0; the only one outside a launch)."""
        return self.rank == 0

    @property
    def spread(self) -> bool:
        """Whether the training runs in several processes."""
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise UsageError(f"${name} must be a whole number (the launcher sets it), not {text!r}") from None


#: Where each launcher puts a process's place: torchrun (and accelerate's GPU launch), then
#: the MPI launchers accelerate's ``--cpu`` launch runs (Intel MPI/MPICH, Open MPI, MVAPICH),
#: in the order accelerate itself reads them.
PLACE_VARIABLES = {
    "rank": ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"),
    "size": ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"),
    "local_rank": ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK",
                   "MV2_COMM_WORLD_LOCAL_RANK"),
}


def _place(key: str, default: int) -> tuple[str, int]:
    for name in PLACE_VARIABLES[key]:
        if os.environ.get(name, "").strip():
            return name, _env_int(name, default)
    return PLACE_VARIABLES[key][0], default


def world() -> World:
    """This process's place among those ``accelerate launch`` (or ``torchrun``, or mpirun)
    started."""
    (rank_var, rank), (size_var, size) = _place("rank", 0), _place("size", 1)
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"${rank_var} {rank} and ${size_var} {size} do not describe a process group")
    if size == 1 and launched_on_cpu() and os.environ.get("MASTER_ADDR", "").strip():
        # accelerate's --cpu launch sets MASTER_ADDR only when asked for several processes,
        # and starts them only through mpirun: this is the one process it started instead.
        raise UsageError(
            "`accelerate launch --cpu --num_processes N` started this one process only: accelerate "
            "starts several CPU processes through mpirun. Add `--mpirun_hostfile FILE` (with Open "
            "MPI or Intel MPI installed; FILE may hold the one line `localhost slots=N`), or "
            "launch with `--multi_gpu --num_processes N ... --device cpu` (or `torchrun "
            "--nproc_per_node N`), which gives N gloo processes on a machine without a GPU")
    return World(rank, size, _place("local_rank", rank)[1])


def launched_on_cpu() -> bool:
    """``accelerate launch --cpu`` asks every process to stay on the CPU."""
    return os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")


def check(config, here: World | None = None) -> None:
    """Refuse (UsageError) a configuration that cannot be spread over this launch's processes."""
    here = here or world()
    if not here.spread:
        return
    n = here.size
    if config.device == "mlx":
        raise UsageError(f"the MLX trainer runs in one process; `accelerate launch` started {n}. "
                         "Run `fairpp train --device mlx ...` without accelerate, or train with "
                         "torch across processes (--device cpu or cuda)")
    if config.device == "mps":
        raise UsageError(f"Apple's MPS backend cannot train in several processes ({n} launched); "
                         "run `fairpp train --device mps ...` without accelerate")
    if config.device == "cuda" and launched_on_cpu():
        raise UsageError("`accelerate launch --cpu` keeps every process on the CPU, but the "
                         "training asks for --device cuda; drop --cpu or pass --device cpu")
    if config.batch_size % n:
        raise UsageError(f"--batch-size {config.batch_size} does not split evenly over {n} processes "
                         f"(each takes an equal part of every micro-batch); give a multiple of {n}, "
                         f"such as {max(n, config.batch_size - config.batch_size % n)}")


def check_device(device: str, here: World | None = None) -> None:
    """The device ``auto`` became must hold several processes too (MPS cannot)."""
    here = here or world()
    if here.spread and device == "mps":
        raise UsageError(f"--device auto chose Apple's MPS, which cannot train in several "
                         f"processes ({here.size} launched); pass --device cpu, or run "
                         "`fairpp train` without accelerate")


def fillers(questions: int, config, here: World | None = None) -> int:
    """Rows of weight 0 that complete an epoch's last global micro-batch under a launch."""
    here = here or world()
    return -questions % config.batch_size if here.spread else 0


def per_process_batch(config, here: World | None = None) -> int:
    """Questions each process takes from every micro-batch of ``--batch-size``."""
    here = here or world()
    return config.batch_size // here.size


def requested_device(device: str) -> str:
    """The device to ask torch for: ``auto`` means the CPU under ``accelerate launch --cpu``
    (and MLX, which torch does not know, falls back to ``auto``)."""
    if device == "mlx":
        device = "auto"
    return "cpu" if device == "auto" and launched_on_cpu() else device


def process_device(device: str, here: World | None = None) -> str:
    """Each process's own GPU under a launch (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    here = here or world()
    if here.spread and device == "cuda":
        return f"cuda:{here.local_rank}"
    return device

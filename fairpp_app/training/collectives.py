"""What the processes of one training tell each other (torch.distributed), and nothing else.

Every function here is a collective: all ranks call it at the same point, in the same
order, or the launch hangs. Outside a launch (one process) each returns its local answer
at once, so the trainer calls them unconditionally and stays one code path.

* :func:`join` starts the process group early (gloo on the CPU, nccl on GPUs), through
  accelerate's ``PartialState``, the same one the Trainer uses later.
* :func:`from_main` runs a choice on rank 0 alone (which checkpoint to resume: rank 0 also
  removes half-written ones) and hands the result to the others.
* :func:`agree_on_examples` makes rank 0's schedule (with ``--weighting sample``, its one
  seeded draw) the list every rank trains on, after checking that every rank read the same
  data from the database; the Trainer's sampler then shards it.
* :func:`shared_loss` turns a rank's micro-batch loss into its part of the global
  micro-batch's loss. The loss of a micro-batch is a weighted sum divided by the weight sum
  (``--weighting batch``) or by the question count; DDP averages the ranks' gradients, so
  each rank must divide its sum by the *global* denominator and multiply by N. Without this
  the per-rank ratios would be averaged, which is not the one-process loss when the weights
  differ between the shards.
* :func:`mean_over_ranks` and :func:`any_rank` make the logged metrics and the decision to
  stop (a signal reaches one process) the same on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from fairpp_app.core.errors import UsageError
from fairpp_app.training import losses
from fairpp_app.training.distributed import world

T = TypeVar("T")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _on(dist) -> torch.device:
    """Where a collective's tensor must live: nccl moves only GPU tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def join(device: str) -> None:
    """Start (or join) the launch's process group, before anything needs it."""
    if not world().spread:
        return
    from accelerate import PartialState

    PartialState(cpu=device == "cpu")


def from_main(choose: Callable[[], T]) -> T:
    """``choose()`` on rank 0 only; every rank gets its result."""
    dist = _dist()
    if dist is None:
        return choose()
    box = [choose() if world().main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree_on_examples(examples: list, data_hash: str) -> list:
    """Rank 0's ``examples`` on every rank; refused when a rank read other training data."""
    dist = _dist()
    if dist is None:
        return examples
    hashes: list = [None] * dist.get_world_size()
    dist.all_gather_object(hashes, data_hash)
    if len(set(hashes)) > 1:
        raise UsageError("the processes read different training data from the database "
                         f"(data hashes by rank: {', '.join(hashes)}); did the source run change "
                         "while the launch started? Launch again")
    box = [examples if world().main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shared_loss(loss: torch.Tensor, weights: torch.Tensor, by_batch: bool,
                real: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """(this rank's share of the global micro-batch loss, to back-propagate; the global loss).

    ``loss`` is ``losses.weighted_mean`` over this rank's rows, ``sum / max(d, 1 if d == 0)``
    with ``d = losses.normaliser(weights, by_batch)``. The global loss is the sum over ranks
    of the weighted sums divided by the sum of the ``d``; DDP averages gradients over the N
    ranks, so each rank back-propagates N times its sum over the global denominator.
    ``real`` marks the rows that are questions, not fillers (weight 0): a count counts those.
    """
    dist = _dist()
    if dist is None:
        return loss, loss.detach().float().item()
    local = torch.as_tensor(losses.normaliser(weights, by_batch), dtype=torch.float64,
                            device=loss.device)
    counted = local if by_batch or real is None else real.sum().to(local)
    mine = local + (local == 0)
    both = torch.stack([counted, loss.detach().to(torch.float64) * mine])
    dist.all_reduce(both)
    total = both[0] + (both[0] == 0)
    n = dist.get_world_size()
    return loss * (n * mine / total).to(loss.dtype), (both[1] / total).item()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value's mean over the ranks (each rank's value a mean over equally many rows)."""
    dist = _dist()
    if dist is None or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_on(dist))
    dist.all_reduce(tensor)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, tensor.tolist())}


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on at least one rank."""
    dist = _dist()
    if dist is None:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_on(dist))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's ``value``, in rank order, on rank 0 (None on the others)."""
    dist = _dist()
    if dist is None:
        return [value]
    out: list | None = [None] * dist.get_world_size() if world().main else None
    dist.gather_object(value, out, dst=0)
    return out

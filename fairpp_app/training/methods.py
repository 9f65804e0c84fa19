"""The training methods, one entry each: what a method is, stated once.

Everything that depends on the method reads its entry here instead of testing its name:
the configuration's choices and validation, whether the data carries the paper's weights,
whether a trainer computes a reference and DPO rewards, whether the data carries the
target's A/B/C distribution (the soft methods), how the CLI counts examples, and
the report's row label and position. Each entry also names its loss from ``losses``
(all losses take the same arguments), so a new method is one entry here plus its loss.

Plain Python: the CLI, the TUI and ``fairpp --help`` read it without torch or mlx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fairpp_app.core.errors import UsageError
from fairpp_app.training import losses


@dataclass(frozen=True)
class Method:
    name: str
    label: str          # the report's row label
    row: int            # the report's row order among the methods
    weighted: bool      # the paper's tier weights, rather than 1 per question
    preference: bool    # preference pairs against a reference model, rather than the target's letter
    loss: Callable      # from ``losses``: (policy, reference, weights, beta, softplus) -> loss
    soft: bool = False  # learns the target's A/B/C distribution (``soft`` targets), not its letter
    paper: bool = True  # a row of the paper's Table 2: shown even before it has a training

    @property
    def pairs_per_example(self) -> int:
        """A preference example is two pairs sharing one prompt; an SFT example is one completion."""
        return 2 if self.preference else 1


#: In the order the CLI and the form offer them (the first is the default).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("wdpo", "WDPO", 4, weighted=True, preference=True, loss=losses.dpo),
    Method("dpo", "DPO", 3, weighted=False, preference=True, loss=losses.dpo),
    Method("wsft", "WSFT", 2, weighted=True, preference=False, loss=losses.sft),
    Method("sft", "SFT", 1, weighted=False, preference=False, loss=losses.sft),
    Method("wdsft", "WDSFT", 6, weighted=True, preference=False, loss=losses.dsft, soft=True,
           paper=False),
    Method("dsft", "DSFT", 5, weighted=False, preference=False, loss=losses.dsft, soft=True,
           paper=False),
)}
NAMES = tuple(METHODS)


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"--method must be one of {', '.join(NAMES)}, not '{name}'") from None


def names_where(**flags: bool) -> list[str]:
    """The methods whose flags have the given values (for messages that list them)."""
    return [m.name for m in METHODS.values()
            if all(getattr(m, k) == v for k, v in flags.items())]


def report_order() -> list[Method]:
    return sorted(METHODS.values(), key=lambda m: m.row)

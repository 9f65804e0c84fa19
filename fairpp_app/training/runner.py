"""One entry point for a training: open its session, pick the trainer, run it.

``run_training`` is what the CLI and the TUI call. The trainers are imported here, when a
training runs, and only the one the device needs: ``fairpp --help`` and every command that
does not train never load torch or mlx, and a machine without one of them gets a message
naming what to install. The trainers import the session, never this module. Under
``accelerate launch`` the configuration is checked first (``distributed.check``), so MLX,
MPS or a batch that does not split over the processes is refused before anything loads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fairpp_app.core.events import Event
from fairpp_app.core.personas import Persona
from fairpp_app.store.database import Store
from fairpp_app.training import distributed
from fairpp_app.training.config import TrainingConfig
from fairpp_app.training.failures import TrainerUnavailable
from fairpp_app.training.session import TrainingOutcome, TrainingSession


def run_training(store: Store, personas: list[Persona], config: TrainingConfig | None = None, *,
                 resume: str | None = None, listener: Callable[[Event], None] | None = None,
                 cancel: threading.Event | None = None) -> TrainingOutcome:
    """Train (or resume) with the trainer for the configured device."""
    if config is not None:
        distributed.check(config)  # before the session: a refused launch touches nothing
    session = TrainingSession(store, personas, config, resume, listener, cancel)
    distributed.check(session.config)  # a resumed training's stored configuration
    if session.config.device == "mlx":
        try:
            from fairpp_app.training.mlx_trainer import train_mlx
        except ImportError as exc:
            raise TrainerUnavailable(f"the MLX trainer is not available here ({exc}); "
                                     "use --device auto, cpu, cuda or mps") from None
        return train_mlx(session)
    try:
        from fairpp_app.training.torch_trainer import train_torch
    except ImportError as exc:
        raise TrainerUnavailable(f"training needs torch, transformers, peft and trl ({exc}); "
                                 "install them with: pip install 'fairpp[train]'") from None
    return train_torch(session)

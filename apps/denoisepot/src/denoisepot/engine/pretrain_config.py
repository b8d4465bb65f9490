"""What defines a pretraining run: :class:`PretrainConfig` and :func:`check_config`.

Light to import (no torch), so that ``denoisepot pretrain`` refuses bad numbers in one line
before paying for the training engine (:mod:`denoisepot.engine.pretrain`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DenoisepotError


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs. Defaults are the paper's recipe (σ in Å)."""

    backbone: str
    out: Path
    data: list[Path] = field(default_factory=list)
    sigma_angstrom: float = 0.2
    epochs: int = 5
    batch_size: int = 256
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_epochs: float = 0.7
    plateau_epochs: float = 0.3
    min_lr: float = 1e-7
    seed: int = 0
    val_fraction: float = 0.05
    train_size: int | float | None = None
    val_size: int | float | None = None
    noise_head: str | None = None
    centre_noise: bool | None = None
    normalise_target: bool = False
    backbone_hparams: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    state_every_n_steps: int = 500
    state_every_seconds: float = 600.0
    log_every_n_steps: int = 10
    progress: bool = True
    data_workdir: Path | None = None


def check_config(config: PretrainConfig) -> None:
    """Raise DenoisepotError (one line naming the option) for settings that cannot run.

    The numbers are checked first, without torch; the backbone, its hyperparameters and the
    noise head last, by building them (the registry imports torch)."""
    if not (math.isfinite(config.sigma_angstrom) and config.sigma_angstrom > 0):
        raise DenoisepotError(
            f"--sigma must be a positive number of Å, got {config.sigma_angstrom}"
        )
    for option, value in (("--epochs", config.epochs), ("--batch-size", config.batch_size),
                          ("--devices", config.devices), ("--num-nodes", config.num_nodes)):
        if value < 1:
            raise DenoisepotError(f"{option} must be at least 1, got {value}")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise DenoisepotError(f"--lr must be positive, got {config.lr}")
    if config.num_workers < 0:
        raise DenoisepotError(f"--num-workers must be 0 or more, got {config.num_workers}")
    if config.resume and config.overwrite:
        raise DenoisepotError("--resume and --overwrite exclude each other; choose one")
    if config.strategy not in ("auto", "ddp"):
        raise DenoisepotError(f"--strategy must be 'auto' or 'ddp', got {config.strategy!r}")
    if config.batch_size % (config.devices * config.num_nodes):
        raise DenoisepotError(
            f"--batch-size {config.batch_size} (the global batch) must be divisible by the "
            f"number of processes, {config.devices * config.num_nodes}"
        )
    _check_backbone(config)


def _check_backbone(config: PretrainConfig) -> None:
    from denoise_objective import NoiseHeadError, build_noise_head

    from .backbone_options import build_checked_backbone

    backbone = build_checked_backbone(config.backbone, config.backbone_hparams)
    try:
        build_noise_head(backbone, config.noise_head)
    except NoiseHeadError as exc:
        raise DenoisepotError(f"--noise-head: {exc}") from None

"""Learning-rate schedules: the paper's (linear warmup, a constant plateau, cosine decay to a
step cap) and, for the converged protocol, warmup then reduce-on-plateau."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    ReduceLROnPlateau,
    SequentialLR,
)


def warmup_plateau_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    plateau_steps: int,
    min_lr: float = 1e-7,
    warmup_start_factor: float = 1e-3,
) -> SequentialLR:
    """Schedule stepped once per batch: linear warmup from ``warmup_start_factor * lr`` to
    ``lr`` over ``warmup_steps``, constant for ``plateau_steps``, then cosine to ``min_lr`` at
    ``total_steps``. Built from torch.optim.lr_scheduler parts so that its state dict
    round-trips through checkpoints."""
    warmup_steps = max(1, int(warmup_steps))
    plateau_steps = max(1, int(plateau_steps))
    decay_steps = max(1, int(total_steps) - warmup_steps - plateau_steps)
    parts = [
        LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0,
                 total_iters=warmup_steps),
        ConstantLR(optimizer, factor=1.0, total_iters=plateau_steps),
        CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=min_lr),
    ]
    return SequentialLR(optimizer, parts, milestones=[warmup_steps, warmup_steps + plateau_steps])


def warmup_linear(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, warmup_start_factor: float = 1e-3
) -> LinearLR:
    """Schedule stepped once per batch: linear warmup from ``warmup_start_factor * lr`` to
    ``lr`` over ``warmup_steps``, then constant (another scheduler may lower it)."""
    return LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0,
                    total_iters=max(1, int(warmup_steps)))


def reduce_on_plateau(
    optimizer: torch.optim.Optimizer, *, patience: int, factor: float = 0.5,
    min_lr: float = 1e-7
) -> ReduceLROnPlateau:
    """Schedule stepped once per validation with its loss: the rate times ``factor`` after
    ``patience`` validations without a better loss (NequIP's and MACE's way of
    annealing a run whose length early stopping decides), never below ``min_lr``."""
    return ReduceLROnPlateau(optimizer, mode="min", factor=factor,
                             patience=max(0, int(patience)), min_lr=min_lr)

"""Fixtures of the finetune-heads tests: a tiny SchNet potential and an ethanol molecule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from equivariant_backbones import build_backbone
from finetune_heads import EnergyHead, Potential

TINY_SCHNET = {"hidden_channels": 16, "num_filters": 16, "num_interactions": 2,
               "num_gaussians": 8, "cutoff": 4.0}

#: ethanol (C2H6O) near its equilibrium geometry, Å
ETHANOL_Z = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
ETHANOL_POS = torch.tensor([
    [-0.0116, 1.5244, 0.0096], [0.0022, -0.0043, 0.0036], [1.3352, -0.4658, -0.0177],
    [1.0163, 1.9190, 0.0115], [-0.5308, 1.8979, -0.8735], [-0.5102, 1.8900, 0.8966],
    [-0.5190, -0.3871, 0.8862], [-0.5340, -0.3782, -0.8705], [1.3260, -1.4330, -0.0105],
])


def _tiny_potential(seed: int = 0, readout: str = "per_atom",
                   reference: torch.Tensor | None = None) -> Potential:
    """A small random SchNet potential (16 features, 2 interactions)."""
    torch.manual_seed(seed)
    backbone = build_backbone("schnet", **TINY_SCHNET)
    head = EnergyHead(backbone.scalar_dim, readout=readout, reference_energies_ev=reference,
                      residual_scale_ev=0.5, residual_shift_ev=-0.1)
    return Potential(backbone, head)


@pytest.fixture
def make_potential() -> Callable[..., Potential]:
    """Factory of small random SchNet potentials: ``make_potential(seed, readout, reference)``."""
    return _tiny_potential


@pytest.fixture
def ethanol() -> tuple[torch.Tensor, torch.Tensor]:
    """Atomic numbers ``[9]`` and positions ``[9, 3]`` (Å) of ethanol."""
    return ETHANOL_Z.clone(), ETHANOL_POS.clone()


@pytest.fixture
def schnet_hparams() -> dict[str, float]:
    """Hyperparameters of the tiny SchNet used in these tests."""
    return dict(TINY_SCHNET)

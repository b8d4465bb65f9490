"""The reusable suite must fail on networks that break the properties it checks."""

from __future__ import annotations

import pytest
import torch
from equivariant_backbones import Backbone, BackboneOutput, build_backbone, schnet
from equivariant_backbones import testing as suite
from torch import nn

TINY = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 2, "num_gaussians": 6}


class _Leaky(Backbone):
    """Scalars that see absolute positions and every atom of the batch."""

    name = "leaky-test-only"

    def __init__(self, see_positions: bool, see_batch: bool) -> None:
        super().__init__()
        self.scalar_dim = 4
        self.cutoff = 5.0
        self.see_positions, self.see_batch = see_positions, see_batch
        self.embedding = nn.Embedding(119, 4)
        self.mix = nn.Linear(3, 4)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        h = self.embedding(z)
        if self.see_positions:
            h = h + self.mix(pos)
        if self.see_batch:
            h = h + h.mean(0)
        return BackboneOutput(scalar=h)


def test_symmetry_check_catches_absolute_positions() -> None:
    with pytest.raises(AssertionError, match="not invariant"):
        suite.check_euclidean_symmetry(lambda: _Leaky(see_positions=True, see_batch=False))


def test_batch_check_catches_cross_molecule_leak() -> None:
    with pytest.raises(AssertionError, match="batched outputs differ"):
        suite.check_batch_matches_single(lambda: _Leaky(see_positions=False, see_batch=True))


def test_continuity_check_catches_a_hard_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schnet, "cosine_cutoff", lambda d, c: (d < c).to(d.dtype))
    with pytest.raises(AssertionError, match="crosses the cutoff"):
        suite.check_cutoff_continuity(lambda: build_backbone("schnet", **TINY))


def test_gradient_check_catches_a_detached_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    original = schnet.SchNet.pair_filters
    # Filters that ignore the distance's gradient: autograd gives zero, finite differences not.
    monkeypatch.setattr(schnet.SchNet, "pair_filters", lambda self, distance: original(
        self, distance.detach()) * (1.0 + 0.0 * distance.unsqueeze(-1)))
    with pytest.raises(AssertionError, match="finite differences"):
        suite.check_energy_gradient(lambda: build_backbone("schnet", **TINY))

"""The fine-tuned checkpoint: round trip, header checks, TorchScript export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from equivariant_backbones import (
    Backbone,
    BackboneOutput,
    CheckpointError,
    atomic_torch_save,
    build_backbone,
)
from finetune_heads import (
    EnergyHead,
    Potential,
    export_torchscript,
    load_finetuned,
    potential_to_checkpoint,
)

Factory = Callable[..., Potential]
Molecule = tuple[torch.Tensor, torch.Tensor]


def test_round_trip_gives_the_same_energies_and_forces(
    tmp_path: Path, make_potential: Factory, ethanol: Molecule
) -> None:
    reference = torch.zeros(119, dtype=torch.float64)
    reference[[1, 6, 8]] = torch.tensor([-13.6, -1029.8, -2041.3], dtype=torch.float64)
    potential = make_potential(reference=reference, readout="sum_then_mlp").eval()
    atomic_torch_save(potential_to_checkpoint(potential, recipe={"seed": 3}), tmp_path / "f.pt")
    loaded, payload = load_finetuned(tmp_path / "f.pt")
    z, pos = ethanol
    batch = torch.zeros(9, dtype=torch.long)
    before, after = potential(z, pos, batch), loaded(z, pos, batch)
    torch.testing.assert_close(after["energy"], before["energy"])
    torch.testing.assert_close(after["forces"], before["forces"])
    assert payload["recipe"] == {"seed": 3} and payload["units"]["energy"] == "eV"
    torch.testing.assert_close(payload["reference_energies_ev"], reference)


def test_pretraining_checkpoint_or_other_version_is_refused(
    tmp_path: Path, make_potential: Factory
) -> None:
    payload = potential_to_checkpoint(make_potential())
    atomic_torch_save({**payload, "kind": "pretrain"}, tmp_path / "pre.pt")
    with pytest.raises(CheckpointError, match="pretrain checkpoint, but a finetune"):
        load_finetuned(tmp_path / "pre.pt")
    atomic_torch_save({**payload, "format_version": 2}, tmp_path / "v2.pt")
    with pytest.raises(CheckpointError, match="format version 2"):
        load_finetuned(tmp_path / "v2.pt")
    broken = {**payload, "head": {"hparams": payload["head"]["hparams"], "state_dict": {}}}
    atomic_torch_save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="does not rebuild"):
        load_finetuned(tmp_path / "broken.pt")


class _AllPairs(Backbone):
    """A test backbone with a smooth all-pairs interaction and no radius graph (traceable).
    Not registered: the registry is global, and other tests run every registered backbone."""

    name = "finetune_heads_test_all_pairs"

    def __init__(self, features: int = 8, cutoff: float = 4.0) -> None:
        super().__init__()
        self._record_hparams(locals())
        self.scalar_dim = features
        self.cutoff = cutoff
        self.embedding = torch.nn.Embedding(119, features)
        self.filter = torch.nn.Linear(1, features)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        distance = (pos.unsqueeze(0) - pos.unsqueeze(1)).pow(2).sum(-1).add(1e-9).sqrt()
        envelope = 0.5 * (torch.cos(distance.clamp(max=self.cutoff) * torch.pi / self.cutoff) + 1)
        same = (batch.unsqueeze(0) == batch.unsqueeze(1)).to(pos.dtype)
        weight = envelope * same * (1 - torch.eye(len(z), dtype=pos.dtype))
        h = self.embedding(z)
        messages = torch.tanh(self.filter(distance.unsqueeze(-1))) * weight.unsqueeze(-1)
        return BackboneOutput(scalar=h + (messages * h.unsqueeze(0)).sum(1))


def test_torchscript_export_reproduces_energies_and_forces(
    tmp_path: Path, ethanol: Molecule
) -> None:
    torch.manual_seed(0)
    backbone = _AllPairs()
    potential = Potential(backbone, EnergyHead(backbone.scalar_dim)).eval()
    z, pos = ethanol
    path = export_torchscript(potential, tmp_path / "ethanol.ts", z, pos)
    loaded = torch.jit.load(str(path))
    moved = pos + 0.1 * torch.randn(9, 3, generator=torch.Generator().manual_seed(5))
    moved.requires_grad_(True)
    energy = loaded(z, moved, torch.zeros(9, dtype=torch.long))
    forces = -torch.autograd.grad(energy.sum(), moved)[0]
    eager = potential(z, moved.detach(), torch.zeros(9, dtype=torch.long))
    torch.testing.assert_close(energy.detach(), eager["energy"])
    torch.testing.assert_close(forces, eager["forces"], rtol=1e-4, atol=1e-5)


TINY_TRACEABLE = {
    "schnet": {"hidden_channels": 16, "num_filters": 16, "num_interactions": 2,
               "num_gaussians": 8},
    "egnn": {"hidden_channels": 16, "num_layers": 2},
    "et": {"hidden_channels": 16, "num_layers": 2, "num_heads": 2, "num_rbf": 8},
}


@pytest.mark.parametrize("name", sorted(TINY_TRACEABLE))
def test_registered_backbones_export_to_torchscript(
    tmp_path: Path, ethanol: Molecule, name: str
) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name, **TINY_TRACEABLE[name])
    potential = Potential(backbone, EnergyHead(backbone.scalar_dim)).eval()
    z, pos = ethanol
    path = export_torchscript(potential, tmp_path / f"{name}.ts", z, pos)
    loaded = torch.jit.load(str(path))
    # A geometry with other neighbour pairs than the traced one: the graph is rebuilt.
    moved = pos + 0.3 * torch.randn(9, 3, generator=torch.Generator().manual_seed(7))
    moved.requires_grad_(True)
    energy = loaded(z, moved, torch.zeros(9, dtype=torch.long))
    forces = -torch.autograd.grad(energy.sum(), moved)[0]
    eager = potential(z, moved.detach(), torch.zeros(9, dtype=torch.long))
    torch.testing.assert_close(energy.detach(), eager["energy"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(forces, eager["forces"], rtol=1e-4, atol=1e-5)

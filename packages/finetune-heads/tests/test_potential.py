"""Potential: conservative forces, the training graph, energy-only mode, freezing, LR groups."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from finetune_heads import Potential, parameter_groups, set_backbone_trainable

Factory = Callable[..., Potential]
Molecule = tuple[torch.Tensor, torch.Tensor]


def test_forces_are_minus_the_energy_gradient_by_finite_differences(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential().double().eval()
    pos = pos_eth.double()
    batch = torch.zeros(9, dtype=torch.long)
    forces = potential(z_eth, pos, batch)["forces"]
    step = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        plus, minus = pos.clone(), pos.clone()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        e_plus = potential(z_eth, plus, batch)["energy"]
        e_minus = potential(z_eth, minus, batch)["energy"]
        numeric = -float(e_plus - e_minus) / (2 * step)
        assert math.isclose(float(forces[atom, axis]), numeric, rel_tol=1e-5, abs_tol=1e-7)


def test_forces_rotate_with_the_molecule(make_potential: Factory, ethanol: Molecule) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential().double().eval()
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3),
                                       dtype=torch.float64))
    batch = torch.zeros(9, dtype=torch.long)
    pos = pos_eth.double()
    out = potential(z_eth, pos, batch)
    rotated = potential(z_eth, pos @ q.T, batch)
    torch.testing.assert_close(rotated["energy"], out["energy"])
    torch.testing.assert_close(rotated["forces"], out["forces"] @ q.T)


def test_training_mode_keeps_the_force_graph_for_a_force_loss(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential().train()
    out = potential(z_eth, pos_eth, torch.zeros(9, dtype=torch.long))
    assert out["forces"].requires_grad
    out["forces"].pow(2).sum().backward()
    gradient = potential.backbone.embedding.weight.grad
    assert gradient is not None and float(gradient.abs().sum()) > 0


def test_energy_only_mode_returns_no_forces(make_potential: Factory, ethanol: Molecule) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential().eval()
    potential.compute_forces = False
    out = potential(z_eth, pos_eth, torch.zeros(9, dtype=torch.long))
    assert set(out) == {"energy"}


def test_frozen_backbone_gets_no_gradient_and_unfreezes(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential().train()
    set_backbone_trainable(potential, False)
    out = potential(z_eth, pos_eth, torch.zeros(9, dtype=torch.long))
    (out["energy"].sum() + out["forces"].pow(2).sum()).backward()
    assert all(p.grad is None for p in potential.backbone.parameters())
    assert all(p.grad is not None for p in potential.head.parameters())
    set_backbone_trainable(potential, True)
    assert all(p.requires_grad for p in potential.backbone.parameters())


def test_parameter_groups_give_the_backbone_a_lower_rate(make_potential: Factory) -> None:
    potential = make_potential()
    groups = parameter_groups(potential, 2e-4, backbone_lr_factor=0.1)
    optimizer = torch.optim.AdamW(groups)
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert math.isclose(rates["head"], 2e-4) and math.isclose(rates["backbone"], 2e-5)
    counted = sum(len(group["params"]) for group in groups)
    assert counted == len(list(potential.parameters()))

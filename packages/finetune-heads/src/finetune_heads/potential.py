"""A potential: backbone + energy head, with conservative forces F = -dE/dx by autograd."""

from __future__ import annotations

import torch
from equivariant_backbones import Backbone
from torch import nn

from .head import EnergyHead


class Potential(nn.Module):
    """Energies (eV, float64, one per molecule) and forces (eV/Å, -dE/dx) of a batch.

    In training mode the force graph is kept (``create_graph``) so that a force loss can be
    back-propagated; in evaluation mode the outputs are detached. ``compute_forces=False``
    gives energies only (no autograd through the positions).
    """

    def __init__(self, backbone: Backbone, head: EnergyHead, compute_forces: bool = True) -> None:
        super().__init__()
        if head.hparams["in_features"] != backbone.scalar_dim:
            raise ValueError(
                f"head expects {head.hparams['in_features']} features but the backbone gives "
                f"{backbone.scalar_dim}"
            )
        self.backbone = backbone
        self.head = head
        self.compute_forces = compute_forces

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        batch: torch.Tensor,
        num_molecules: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"energy": [B] float64 eV, "forces": [N, 3] eV/Å}`` for atomic numbers ``z``,
        positions ``pos`` (Å) and molecule index ``batch`` (sorted)."""
        if num_molecules is None:
            num_molecules = int(batch.max().item()) + 1 if batch.numel() > 0 else 0
        if not self.compute_forces:
            energy = self.head(self.backbone(z, pos, batch).scalar, z, batch, num_molecules)
            return {"energy": energy if self.training else energy.detach()}
        with torch.enable_grad():
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            energy = self.head(self.backbone(z, pos, batch).scalar, z, batch, num_molecules)
            gradient = torch.autograd.grad(
                energy.sum(), pos, create_graph=self.training, allow_unused=True
            )[0]
        forces = torch.zeros_like(pos) if gradient is None else -gradient
        if self.training:
            return {"energy": energy, "forces": forces}
        return {"energy": energy.detach(), "forces": forces.detach()}


def set_backbone_trainable(potential: Potential, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze (``True``) every backbone parameter; the head stays
    trainable. Forces still flow through a frozen backbone."""
    for parameter in potential.backbone.parameters():
        parameter.requires_grad_(trainable)


def parameter_groups(
    potential: Potential, lr: float, backbone_lr_factor: float = 1.0
) -> list[dict[str, object]]:
    """Optimizer parameter groups: the head at ``lr`` and the backbone at
    ``lr * backbone_lr_factor`` (a factor below 1 fine-tunes pretrained weights gently)."""
    if backbone_lr_factor <= 0:
        raise ValueError(f"backbone_lr_factor must be positive, got {backbone_lr_factor}")
    return [
        {"params": list(potential.backbone.parameters()), "lr": lr * backbone_lr_factor,
         "name": "backbone"},
        {"params": list(potential.head.parameters()), "lr": lr, "name": "head"},
    ]

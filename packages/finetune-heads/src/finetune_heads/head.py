"""The energy head: per-atom backbone features to total molecular energies in eV.

The head predicts a float32 residual; fixed float64 buffers turn it into a total energy:

    E = sum_i ref[z_i] + scale * residual + shift * n_atoms      (eV, float64)

``ref`` holds per-element reference energies (eV, indexed by atomic number, length 119),
``scale`` and ``shift`` the spread and mean of the per-atom residual energy (eV/atom), so the
network itself only ever sees numbers of order one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: readouts: ``per_atom`` (MLP per atom, then summed; size-extensive) or the paper's
#: ``sum_then_mlp`` (sum atom features per molecule, then one MLP)
READOUTS = ("per_atom", "sum_then_mlp")

#: length of the per-element reference-energy table (index = atomic number, 0 unused)
NUM_ELEMENT_SLOTS = 119


class EnergyHead(nn.Module):
    """Map per-atom scalar features ``[N, F]`` to total energies per molecule ``[B]`` in eV
    (float64), with per-element reference energies and residual scale/shift as buffers."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        num_layers: int = 2,
        readout: str = "per_atom",
        reference_energies_ev: torch.Tensor | Sequence[float] | None = None,
        residual_scale_ev: float = 1.0,
        residual_shift_ev: float = 0.0,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        hidden = int(hidden_features) if hidden_features else max(1, int(in_features) // 2)
        self._hparams: dict[str, Any] = {
            "in_features": int(in_features),
            "hidden_features": hidden,
            "num_layers": int(num_layers),
            "readout": readout,
        }
        self.per_atom = readout == "per_atom"
        layers: list[nn.Module] = []
        width = int(in_features)
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

        reference = torch.zeros(NUM_ELEMENT_SLOTS, dtype=torch.float64)
        if reference_energies_ev is not None:
            given = torch.as_tensor(reference_energies_ev, dtype=torch.float64).flatten()
            if given.numel() != NUM_ELEMENT_SLOTS:
                raise ValueError(
                    f"reference_energies_ev must have {NUM_ELEMENT_SLOTS} entries (index = "
                    f"atomic number), got {given.numel()}"
                )
            reference = given.clone()
        self.register_buffer("reference_energies_ev", reference)
        self.register_buffer("residual_scale_ev", torch.tensor(float(residual_scale_ev),
                                                               dtype=torch.float64))
        self.register_buffer("residual_shift_ev", torch.tensor(float(residual_shift_ev),
                                                               dtype=torch.float64))

    @property
    def hparams(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this head (the buffers travel in the state dict)."""
        return dict(self._hparams)

    def forward(
        self, scalar: torch.Tensor, z: torch.Tensor, batch: torch.Tensor, num_molecules: int
    ) -> torch.Tensor:
        """Total energy of each molecule in eV, float64 ``[num_molecules]``."""
        reference = self.reference_energies_ev[z]
        energy = torch.zeros(num_molecules, dtype=torch.float64, device=scalar.device)
        if self.per_atom:
            atomic = self.mlp(scalar).squeeze(-1).to(torch.float64)
            atomic = atomic * self.residual_scale_ev + self.residual_shift_ev + reference
            return energy.index_add(0, batch, atomic)
        pooled = torch.zeros(num_molecules, scalar.shape[1], dtype=scalar.dtype,
                             device=scalar.device).index_add(0, batch, scalar)
        residual = self.mlp(pooled).squeeze(-1).to(torch.float64) * self.residual_scale_ev
        ones = torch.ones_like(reference)
        per_molecule = energy.index_add(0, batch, reference + self.residual_shift_ev * ones)
        return per_molecule + residual

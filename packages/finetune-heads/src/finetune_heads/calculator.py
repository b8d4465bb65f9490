"""An ASE calculator around a fine-tuned potential, for molecular dynamics and optimisation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .checkpoint import load_finetuned
from .potential import Potential


class DenoisepotCalculator(Calculator):
    """ASE calculator giving ``energy`` (eV) and ``forces`` (eV/Å, -dE/dx) of an isolated
    molecule (no periodic boundaries). ``dtype`` is the precision of the network
    (float64 for finite-difference checks, float32 for speed); energies are float64."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        potential: Potential,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.dtype = dtype
        # reference energies stay float64 whatever the network's precision
        self.potential = potential.to(self.device)
        self.potential.backbone.to(dtype)
        self.potential.head.mlp.to(dtype)
        self.potential.compute_forces = True
        self.potential.eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> DenoisepotCalculator:
        """A calculator for the fine-tuned checkpoint ``path`` (kind ``"finetune"``)."""
        potential, _ = load_finetuned(path)
        return cls(potential, device=device, dtype=dtype, **kwargs)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Fill ``self.results`` with the energy (eV) and forces (eV/Å) of ``atoms``."""
        super().calculate(atoms, properties, system_changes)
        if np.any(self.atoms.pbc):
            raise ValueError("DenoisepotCalculator handles isolated molecules only; set "
                             "atoms.pbc = False")
        z = torch.as_tensor(self.atoms.numbers, dtype=torch.long, device=self.device)
        pos = torch.as_tensor(self.atoms.positions, dtype=self.dtype, device=self.device)
        batch = torch.zeros_like(z)
        output = self.potential(z, pos, batch, 1)
        energy = float(output["energy"][0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = output["forces"].detach().cpu().double().numpy()

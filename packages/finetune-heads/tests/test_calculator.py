"""The ASE calculator: forces match finite differences of its energies; it loads checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from equivariant_backbones import atomic_torch_save
from finetune_heads import DenoisepotCalculator, Potential, potential_to_checkpoint

Factory = Callable[..., Potential]
Molecule = tuple[torch.Tensor, torch.Tensor]


def test_forces_match_finite_differences_of_energies(
    tmp_path: Path, make_potential: Factory, ethanol: Molecule
) -> None:
    atomic_torch_save(potential_to_checkpoint(make_potential()), tmp_path / "f.pt")
    calculator = DenoisepotCalculator.from_checkpoint(tmp_path / "f.pt", dtype=torch.float64)
    z, pos = ethanol
    atoms = Atoms(numbers=z.numpy(), positions=pos.double().numpy(), calculator=calculator)
    forces = atoms.get_forces()
    numeric = calculator.calculate_numerical_forces(atoms, d=1e-4)
    np.testing.assert_allclose(forces, numeric, rtol=1e-5, atol=1e-6)
    assert isinstance(atoms.get_potential_energy(), float)


def test_periodic_cells_are_refused(make_potential: Factory, ethanol: Molecule) -> None:
    z, pos = ethanol
    atoms = Atoms(numbers=z.numpy(), positions=pos.numpy(), cell=[10, 10, 10], pbc=True,
                  calculator=DenoisepotCalculator(make_potential()))
    with pytest.raises(ValueError, match="isolated molecules"):
        atoms.get_potential_energy()

"""The ASE calculator: forces match finite differences of its energies; it loads checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
    assert isinstance(atoms.get_potential_energy(), float)
    step = 1e-4
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = calculator
            moved.positions[atom, axis] += sign * step
            energies.append(moved.get_potential_energy())
        numeric = -(energies[0] - energies[1]) / (2 * step)
        assert forces[atom, axis] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_periodic_cells_are_refused(make_potential: Factory, ethanol: Molecule) -> None:
    z, pos = ethanol
    atoms = Atoms(numbers=z.numpy(), positions=pos.numpy(), cell=[10, 10, 10], pbc=True,
                  calculator=DenoisepotCalculator(make_potential()))
    with pytest.raises(ValueError, match="isolated molecules"):
        atoms.get_potential_energy()

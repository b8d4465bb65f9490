"""Nonequilibrium sampling: Langevin MD on the GFN2-xTB surface and ANI-style normal-mode sampling.

Lengths Å, energies eV, forces eV/Å, masses amu, temperatures K, times fs (converted to
ASE's time unit with ``ase.units.fs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ForceField = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class Frames:
    """Labelled conformations: positions [C, A, 3] Å, energy [C] eV, forces [C, A, 3] eV/Å."""

    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray


def _masses(numbers: np.ndarray) -> np.ndarray:
    from ase.data import atomic_masses

    return np.asarray(atomic_masses[numbers], dtype=np.float64)


def langevin_md(
    force_field: ForceField,
    numbers: np.ndarray,
    positions: np.ndarray,
    *,
    temperature_kelvin: float,
    n_frames: int,
    rng: np.random.Generator,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.02,
    equilibration_steps: int = 100,
    steps_between_frames: int = 10,
) -> Frames:
    """Langevin dynamics (BAOAB splitting) at ``temperature_kelvin``; after equilibration, every
    ``steps_between_frames``-th step is kept with the energy (eV) and forces (eV/Å) of that step."""
    from ase import units

    masses = _masses(numbers)[:, None]
    dt = timestep_fs * units.fs
    kt = units.kB * temperature_kelvin
    c1 = np.exp(-friction_per_fs * timestep_fs)
    noise_scale = np.sqrt((1.0 - c1**2) * kt / masses)
    x = np.array(positions, dtype=np.float64)
    v = rng.standard_normal(x.shape) * np.sqrt(kt / masses)
    v -= (masses * v).sum(axis=0) / masses.sum()
    energy, forces = force_field(x)
    out_pos, out_e, out_f = [], [], []
    total_steps = equilibration_steps + n_frames * steps_between_frames
    for step in range(1, total_steps + 1):
        v += 0.5 * dt * forces / masses
        x += 0.5 * dt * v
        v = c1 * v + noise_scale * rng.standard_normal(x.shape)
        x += 0.5 * dt * v
        energy, forces = force_field(x)
        v += 0.5 * dt * forces / masses
        if step > equilibration_steps and (step - equilibration_steps) % steps_between_frames == 0:
            out_pos.append(x.copy())
            out_e.append(energy)
            out_f.append(forces.copy())
    return Frames(np.array(out_pos), np.array(out_e, dtype=np.float64), np.array(out_f))


def optimise(
    force_field: ForceField,
    numbers: np.ndarray,
    positions: np.ndarray,
    *,
    fmax: float = 0.01,
    max_steps: int = 300,
) -> np.ndarray:
    """Minimise the energy with ASE's BFGS to a largest force of ``fmax`` eV/Å; positions in Å."""
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
    from ase.optimize import BFGS

    class _Wrapped(Calculator):
        implemented_properties = ("energy", "forces")

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            energy, forces = force_field(self.atoms.get_positions())
            self.results = {"energy": energy, "forces": forces}

    atoms = Atoms(numbers=numbers, positions=positions, calculator=_Wrapped())
    if len(atoms) > 1:
        BFGS(atoms, logfile=None).run(fmax=fmax, steps=max_steps)
    return atoms.get_positions()


def _rigid_mode_count(numbers: np.ndarray, positions: np.ndarray) -> int:
    if len(numbers) == 1:
        return 3
    centred = positions - positions.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return 5 if singular[1] < 1e-3 else 6


def normal_modes(
    force_field: ForceField,
    numbers: np.ndarray,
    positions: np.ndarray,
    *,
    step_angstrom: float = 5e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational normal modes by central differences of the forces: unit Cartesian directions
    [M, A, 3] and their force constants [M] in eV/Å² (rigid translations/rotations removed)."""
    n = len(numbers)
    flat = positions.reshape(-1)
    hessian = np.zeros((3 * n, 3 * n))
    for i in range(3 * n):
        shifted = flat.copy()
        shifted[i] += step_angstrom
        _, f_plus = force_field(shifted.reshape(n, 3))
        shifted[i] -= 2 * step_angstrom
        _, f_minus = force_field(shifted.reshape(n, 3))
        hessian[:, i] = -(f_plus - f_minus).reshape(-1) / (2 * step_angstrom)
    hessian = 0.5 * (hessian + hessian.T)
    inv_sqrt_mass = np.repeat(1.0 / np.sqrt(_masses(numbers)), 3)
    _, vectors = np.linalg.eigh(hessian * inv_sqrt_mass[:, None] * inv_sqrt_mass[None, :])
    directions = (vectors * inv_sqrt_mass[:, None]).T[_rigid_mode_count(numbers, positions) :]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    force_constants = np.einsum("mi,ij,mj->m", directions, hessian, directions)
    return directions.reshape(-1, n, 3), force_constants


def normal_mode_sampling(
    force_field: ForceField,
    numbers: np.ndarray,
    minimum: np.ndarray,
    directions: np.ndarray,
    force_constants: np.ndarray,
    *,
    temperature_kelvin: float,
    n_frames: int,
    rng: np.random.Generator,
    min_force_constant: float = 0.5,
    min_distance_angstrom: float = 0.7,
) -> Frames:
    """ANI-style normal-mode sampling (Smith et al. 2017): displace the minimum along every mode
    by ±sqrt(3 c_i N kT / K_i) with random c_i summing to at most 1, reject geometries with two
    atoms closer than ``min_distance_angstrom``, and label each with the force field."""
    from ase import units

    n_atoms = len(numbers)
    kt = units.kB * temperature_kelvin
    stiffness = np.maximum(force_constants, min_force_constant)
    out_pos, out_e, out_f = [], [], []
    while len(out_pos) < n_frames:
        if len(stiffness):
            c = rng.random(len(stiffness))
            c *= rng.random() / c.sum()
            amplitude = rng.choice([-1.0, 1.0], size=len(stiffness)) * np.sqrt(
                3.0 * c * n_atoms * kt / stiffness
            )
            x = minimum + np.einsum("m,mij->ij", amplitude, directions)
        else:
            x = minimum.copy()
        if n_atoms > 1:
            distances = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
            if distances[np.triu_indices(n_atoms, 1)].min() < min_distance_angstrom:
                continue
        energy, forces = force_field(x)
        out_pos.append(x)
        out_e.append(energy)
        out_f.append(forces)
    return Frames(np.array(out_pos), np.array(out_e, dtype=np.float64), np.array(out_f))

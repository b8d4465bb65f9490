"""Per-element reference energies by streaming least squares, and residual statistics (eV)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import units
from .errors import DataError
from .store import Store

StoreLike = Store | str | os.PathLike[str]

#: conformations read per step while streaming
CHUNK_CONFORMATIONS = 65_536


def _ani1_self_energies() -> np.ndarray:
    table = np.zeros(119, dtype=np.float64)
    # published ωB97x/6-31G(d) atomic self-energies of ANI-1 (Smith et al. 2017), Hartree
    for z, hartree in (
        (1, -0.500607632585),
        (6, -37.8302333826),
        (7, -54.5680045287),
        (8, -75.0362229210),
    ):
        table[z] = hartree * units.HARTREE_IN_EV
    return table


#: ANI-1's published self-energies in eV, indexed by atomic number (0 for other elements)
ANI1_SELF_ENERGIES_EV = _ani1_self_energies()


@dataclass(frozen=True)
class ReferenceEnergies:
    """Per-element energies (eV, [119] by atomic number) and the residual they leave.

    The residual of a conformation is E − Σ_atoms per_element_ev[z]; statistics are over
    conformations with an energy: per-atom residual mean and std (eV/atom), and the std of the
    total residual (eV).
    """

    per_element_ev: np.ndarray
    residual_per_atom_mean_ev: float
    residual_per_atom_std_ev: float
    residual_std_ev: float
    n_conformations: int


def _chunks(
    store: Store, indices: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(element counts [b, K], energies [b], atoms [b]) over the store's elements, streamed."""
    elements = store.elements
    column = np.full(119, -1, dtype=np.int64)
    column[elements] = np.arange(elements.size)
    total = store.n_conformations if indices is None else indices.size
    for start in range(0, total, CHUNK_CONFORMATIONS):
        if indices is None:
            block = store.read_range(start, min(total, start + CHUNK_CONFORMATIONS))
        else:
            block = store.read(indices[start : start + CHUNK_CONFORMATIONS])
        keep = ~np.isnan(block.energy)
        owner = np.repeat(np.arange(block.n_atoms.size), block.n_atoms)
        counts = np.zeros((block.n_atoms.size, elements.size), dtype=np.float64)
        np.add.at(counts, (owner, column[block.z]), 1.0)
        yield counts[keep], block.energy[keep], block.n_atoms[keep]


def _open(store: StoreLike) -> tuple[Store, bool]:
    return (store, False) if isinstance(store, Store) else (Store(store), True)


def residual_statistics(
    store: StoreLike, per_element_ev: np.ndarray, indices: Sequence[int] | np.ndarray | None = None
) -> ReferenceEnergies:
    """Residual statistics (eV) of the store's energies after subtracting ``per_element_ev``."""
    st, close = _open(store)
    try:
        per_element_ev = np.asarray(per_element_ev, dtype=np.float64)
        idx = None if indices is None else np.sort(np.asarray(indices, np.int64))
        ref = per_element_ev[st.elements]
        n = 0
        sums = np.zeros(4)  # Σ r/atom, Σ (r/atom)², Σ r, Σ r²  (r shifted by the first value)
        shift_atom = shift_total = None
        for counts, energy, n_atoms in _chunks(st, idx):
            residual = energy - counts @ ref
            per_atom = residual / n_atoms
            if residual.size and shift_atom is None:
                shift_atom, shift_total = per_atom[0], residual[0]
            if residual.size:
                a, r = per_atom - shift_atom, residual - shift_total
                sums += (a.sum(), (a * a).sum(), r.sum(), (r * r).sum())
                n += residual.size
    finally:
        if close:
            st.close()
    if n == 0:
        raise DataError(
            st.path, "no conformation with an energy to compute reference energies from"
        )
    mean_a, mean_r = sums[0] / n, sums[2] / n
    return ReferenceEnergies(
        per_element_ev=per_element_ev,
        residual_per_atom_mean_ev=float(shift_atom + mean_a),
        residual_per_atom_std_ev=float(np.sqrt(max(sums[1] / n - mean_a**2, 0.0))),
        residual_std_ev=float(np.sqrt(max(sums[3] / n - mean_r**2, 0.0))),
        n_conformations=n,
    )


def fit_reference_energies(
    store: StoreLike, indices: Sequence[int] | np.ndarray | None = None
) -> ReferenceEnergies:
    """Least-squares per-element energies (eV) from the store's energies, streamed: XᵀX and
    Xᵀy are accumulated per element, never a conformations × elements matrix. Where the
    compositions do not determine every element (e.g. one molecule), the minimum-norm
    solution is returned."""
    st, close = _open(store)
    try:
        idx = None if indices is None else np.sort(np.asarray(indices, np.int64))
        elements = st.elements
        xtx = np.zeros((elements.size, elements.size))
        xty = np.zeros(elements.size)
        for counts, energy, _ in _chunks(st, idx):
            xtx += counts.T @ counts
            xty += counts.T @ energy
        if not xty.any():
            raise DataError(st.path, "no conformation with an energy to fit reference energies to")
        # scale columns so the normal equations are well conditioned
        scale = np.sqrt(np.maximum(np.diag(xtx), 1.0))
        solution = np.linalg.lstsq(xtx / np.outer(scale, scale), xty / scale, rcond=None)[0] / scale
        per_element = np.zeros(119, dtype=np.float64)
        per_element[elements] = solution
        return residual_statistics(st, per_element, idx)
    finally:
        if close:
            st.close()

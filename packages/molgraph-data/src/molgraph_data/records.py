"""The unit every reader yields: a block of conformations of one molecule, in Å, eV, eV/Å."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DataError

#: shortest interatomic distance (Å) accepted in a conformation
MIN_DISTANCE_ANGSTROM = 0.1
#: largest atomic number accepted
MAX_ATOMIC_NUMBER = 118


@dataclass
class MoleculeRecord:
    """Conformations of one molecule: ``z [A]``, ``pos [C, A, 3]`` Å, ``energy [C]`` eV (float64)
    or None, ``forces [C, A, 3]`` eV/Å or None.

    ``location`` names the file (and group) for error messages. ``nan_is_missing`` marks releases
    (ANI-1x) where NaN means "not computed": such conformations are dropped and counted;
    elsewhere NaN is an error. ``split_codes`` optionally tags each conformation with an official
    split (see ``store.SPLIT_TAGS``); by default the tag of the source file is used.
    """

    name: str
    z: np.ndarray
    pos: np.ndarray
    energy: np.ndarray | None
    forces: np.ndarray | None
    location: str
    nan_is_missing: bool = False
    split_codes: np.ndarray | None = field(default=None)

    @property
    def n_conformations(self) -> int:
        """Number of conformations in this block."""
        return int(self.pos.shape[0])


def _fail(record: MoleculeRecord, message: str) -> DataError:
    return DataError(record.location, message)


def _check_close_atoms(record: MoleculeRecord, pos: np.ndarray) -> None:
    """Raise if any two atoms of a conformation are closer than MIN_DISTANCE_ANGSTROM."""
    n_atoms = pos.shape[1]
    if n_atoms < 2:
        return
    rows, cols = np.triu_indices(n_atoms, k=1)
    limit = MIN_DISTANCE_ANGSTROM**2
    # blocks of conformations keep the (C, pairs, 3) temporary small
    block = max(1, 2_000_000 // max(1, rows.size))
    for start in range(0, pos.shape[0], block):
        p = pos[start : start + block].astype(np.float64, copy=False)
        d2 = np.sum((p[:, rows] - p[:, cols]) ** 2, axis=-1)
        bad = np.argwhere(d2 < limit)
        if bad.size:
            c, pair = bad[0]
            i, j = rows[pair], cols[pair]
            dist = float(np.sqrt(d2[c, pair]))
            raise _fail(
                record,
                f"conformation {start + c}: atoms {i} and {j} are {dist:.3g} Å apart "
                f"(closer than {MIN_DISTANCE_ANGSTROM} Å; wrong length unit or a broken geometry)",
            )


def validate_record(record: MoleculeRecord) -> tuple[MoleculeRecord, int]:
    """Check shapes, values and geometry; return the record without NaN-labelled conformations
    (only where ``nan_is_missing``) and how many were dropped. Raises DataError otherwise."""
    z = np.asarray(record.z)
    pos = np.asarray(record.pos)
    if z.ndim != 1:
        raise _fail(record, f"atomic numbers have shape {z.shape}, expected one row per atom")
    if z.size == 0:
        raise _fail(record, "the molecule has zero atoms")
    if pos.ndim != 3 or pos.shape[1:] != (z.size, 3):
        raise _fail(
            record,
            f"coordinates have shape {pos.shape} but the species list has {z.size} atoms "
            f"(expected (conformations, {z.size}, 3))",
        )
    if z.min() < 1 or z.max() > MAX_ATOMIC_NUMBER:
        raise _fail(
            record, f"atomic number {int(z.min() if z.min() < 1 else z.max())} is not 1-118"
        )
    if not np.isfinite(pos).all():
        raise _fail(record, "coordinates contain NaN or inf")
    n_conf = pos.shape[0]
    keep = np.ones(n_conf, dtype=bool)
    energy = record.energy
    if energy is not None:
        energy = np.asarray(energy, dtype=np.float64).reshape(-1)
        if energy.shape != (n_conf,):
            raise _fail(record, f"{energy.size} energies for {n_conf} conformations")
        if np.isinf(energy).any():
            raise _fail(record, "energies contain inf")
        nan = np.isnan(energy)
        if nan.any() and not record.nan_is_missing:
            raise _fail(record, f"energy of conformation {int(np.argmax(nan))} is NaN")
        keep &= ~nan
    forces = record.forces
    if forces is not None:
        forces = np.asarray(forces)
        if forces.shape != pos.shape:
            raise _fail(record, f"forces have shape {forces.shape}, coordinates {pos.shape}")
        if np.isinf(forces).any():
            raise _fail(record, "forces contain inf")
        nan = np.isnan(forces).any(axis=(1, 2))
        if nan.any() and not record.nan_is_missing:
            raise _fail(record, f"forces of conformation {int(np.argmax(nan))} contain NaN")
        keep &= ~nan
    split_codes = record.split_codes
    if split_codes is not None and np.shape(split_codes) != (n_conf,):
        raise _fail(record, f"{np.size(split_codes)} split tags for {n_conf} conformations")
    dropped = int(n_conf - keep.sum())
    if dropped:
        pos = pos[keep]
        energy = None if energy is None else energy[keep]
        forces = None if forces is None else forces[keep]
        split_codes = None if split_codes is None else np.asarray(split_codes)[keep]
    clean = MoleculeRecord(
        name=record.name,
        z=z,
        pos=pos,
        energy=energy,
        forces=forces,
        location=record.location,
        nan_is_missing=record.nan_is_missing,
        split_codes=split_codes,
    )
    _check_close_atoms(clean, pos)
    return clean, dropped

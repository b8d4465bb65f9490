"""Any ASE-readable file (extended XYZ, ASE db, ...) with configurable energy/force keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import units
from ..errors import DataError
from ..records import MoleculeRecord
from .base import BLOCK_CONFORMATIONS, Reader, hill_formula


def _label(atoms: Any, key: str, per_atom: bool) -> np.ndarray | None:
    """``key`` from atoms.info/arrays, else from an attached calculator's results."""
    source = atoms.arrays if per_atom else atoms.info
    if key in source:
        return np.asarray(source[key], dtype=np.float64)
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", {}) if calc is not None else {}
    if key in results:
        return np.asarray(results[key], dtype=np.float64)
    return None


class AseReader(Reader):
    """A user's own data through ``ase.io.iread``; molecules are grouped by chemical formula.

    Energies and forces are taken from ``energy_key``/``forces_key`` in ``atoms.info``/
    ``atoms.arrays`` or the attached calculator; without those options the keys ``energy`` and
    ``forces`` are used where the first frame has them (else the store holds positions only).
    """

    name = "ase"
    description = "any ASE-readable file (extxyz, ASE db, ...); energy/forces keys configurable"
    options: ClassVar[dict[str, Any]] = {
        "energy_key": None,
        "forces_key": None,
        "energy_unit": "eV",
        "ase_format": None,
    }
    source_units: ClassVar[dict[str, str]] = {"length": "Angstrom"}

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Frames of the file in blocks of consecutive frames with the same atoms."""
        import ase.io

        # a key the user named must be on every frame; the default keys are optional
        energy_key = options["energy_key"] or "energy"
        forces_key = options["forces_key"] or "forces"
        unit = options["energy_unit"]
        if unit not in units.ENERGY_TO_EV:
            raise DataError(
                path, f"unknown energy unit {unit!r} (one of {', '.join(units.ENERGY_TO_EV)})"
            )
        e_factor = units.ENERGY_TO_EV[unit]
        f_factor = units.force_to_ev_per_angstrom(unit, "Angstrom")
        has_energy: bool | None = None
        has_forces: bool | None = None
        block: list[tuple[np.ndarray, float | None, np.ndarray | None]] = []
        block_z: np.ndarray | None = None
        first = 0

        def flush() -> MoleculeRecord:
            return MoleculeRecord(
                name=hill_formula(block_z),
                z=block_z,
                pos=np.stack([b[0] for b in block]).astype(np.float32),
                energy=np.array([b[1] for b in block], np.float64) * e_factor
                if has_energy
                else None,
                forces=(np.stack([b[2] for b in block]) * f_factor).astype(np.float32)
                if has_forces
                else None,
                location=f"{path}:frames {first}-{first + len(block) - 1}",
            )

        try:
            frames = ase.io.iread(str(path), index=":", format=options["ase_format"])
            for i, atoms in enumerate(frames):
                where = f"{path}:frame {i}"
                energy = _label(atoms, energy_key, per_atom=False)
                forces = _label(atoms, forces_key, per_atom=True)
                if has_energy is None:
                    has_energy = energy is not None or options["energy_key"] is not None
                    has_forces = forces is not None or options["forces_key"] is not None
                if has_energy and energy is None:
                    raise DataError(where, f"no energy under key {energy_key!r} (set --energy-key)")
                if has_forces and forces is None:
                    raise DataError(where, f"no forces under key {forces_key!r} (set --forces-key)")
                z = atoms.get_atomic_numbers().astype(np.int64)
                if block and (len(block) >= BLOCK_CONFORMATIONS or not np.array_equal(z, block_z)):
                    yield flush()
                    block, first = [], i
                block_z = z
                block.append(
                    (
                        atoms.get_positions(),
                        float(energy.reshape(-1)[0]) if has_energy else None,
                        forces if has_forces else None,
                    )
                )
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - ase raises many types for unreadable input
            raise DataError(path, f"ASE cannot read it ({type(exc).__name__}: {exc})") from None
        if not block:
            raise DataError(path, "no frames found")
        yield flush()

"""SPICE HDF5 reader: bohr → Å, Hartree → eV, gradient → forces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from .. import units
from ..errors import DataError
from ..records import MoleculeRecord
from .base import BLOCK_CONFORMATIONS, Reader, decode_text, open_hdf5, read_dataset, require

_LENGTH = {"bohr": "bohr", "angstrom": "Angstrom", "nanometer": "nm", "nm": "nm"}
_ENERGY = {"hartree": "Hartree", "ev": "eV", "kcal/mol": "kcal/mol", "kj/mol": "kJ/mol"}
_ENERGY_KEYS = {"total": "dft_total_energy", "formation": "formation_energy"}


def _unit(dataset: h5py.Dataset, default: str, table: dict[str, str], where: str) -> str:
    """Canonical unit name of a dataset's ``units`` attribute (``default`` where absent)."""
    raw = dataset.attrs.get("units", default)
    text = (raw.decode() if isinstance(raw, bytes) else str(raw)).strip().lower()
    if text not in table:
        raise DataError(where, f"{dataset.name!r} has unsupported units {text!r}")
    return table[text]


class SpiceReader(Reader):
    """SPICE: one group per molecule, ``conformations`` bohr, energies Hartree."""

    name = "spice"
    description = "SPICE HDF5: ωB97M-D3(BJ)/def2-TZVPPD, bohr and Hartree; subset filter"
    options: ClassVar[dict[str, Any]] = {"energy": "total", "subsets": None}
    source_units: ClassVar[dict[str, str]] = {
        "length": "bohr",
        "energy": "Hartree",
        "forces": "-gradient Hartree/bohr",
    }

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """SPICE's DFT level."""
        return "wB97M-D3(BJ)/def2-TZVPPD"

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Molecules of a SPICE file, optionally only those whose subset contains a given text."""
        which = options.get("energy", "total")
        if which not in _ENERGY_KEYS:
            raise DataError(path, f"SPICE energy must be 'total' or 'formation', not {which!r}")
        subsets = options.get("subsets")
        wanted = None if not subsets else [s.lower() for s in subsets]
        with open_hdf5(path) as f:
            for group in f.values():
                if not isinstance(group, h5py.Group):
                    continue
                where = f"{path}:{group.name}"
                if wanted is not None:
                    subset = decode_text(read_dataset(require(group, "subset", path), where))
                    if not any(w in subset.lower() for w in wanted):
                        continue
                z = read_dataset(require(group, "atomic_numbers", path), where).astype(np.int64)
                coords = require(group, "conformations", path)
                energies = require(group, _ENERGY_KEYS[which], path)
                gradient = require(group, "dft_total_gradient", path)
                length = _unit(coords, "bohr", _LENGTH, where)
                energy_unit = _unit(energies, "hartree", _ENERGY, where)
                grad_raw = gradient.attrs.get("units", "hartree/bohr")
                grad_text = grad_raw.decode() if isinstance(grad_raw, bytes) else str(grad_raw)
                grad_e, _, grad_l = grad_text.strip().lower().partition("/")
                if grad_e not in _ENERGY or grad_l not in _LENGTH:
                    raise DataError(
                        where, f"'dft_total_gradient' has unsupported units {grad_text!r}"
                    )
                to_angstrom = units.LENGTH_TO_ANGSTROM[length]
                to_ev = units.ENERGY_TO_EV[energy_unit]
                to_force = -units.force_to_ev_per_angstrom(_ENERGY[grad_e], _LENGTH[grad_l])
                for c0 in range(0, coords.shape[0], BLOCK_CONFORMATIONS):
                    sel = np.s_[c0 : c0 + BLOCK_CONFORMATIONS]
                    pos = read_dataset(coords, where, sel).astype(np.float64) * to_angstrom
                    grad = read_dataset(gradient, where, sel).astype(np.float64)
                    yield MoleculeRecord(
                        name=group.name.lstrip("/"),
                        z=z,
                        pos=pos.astype(np.float32),
                        energy=read_dataset(energies, where, sel).astype(np.float64) * to_ev,
                        forces=(grad * to_force).astype(np.float32),
                        location=where,
                    )

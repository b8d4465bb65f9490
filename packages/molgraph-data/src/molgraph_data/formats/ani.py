"""ANI-1 (``ani_gdb_s0X.h5``) and ANI-1x (``ani1x-release.h5``) readers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from .. import units
from ..errors import DataError
from ..records import MoleculeRecord
from .base import (
    BLOCK_CONFORMATIONS,
    Reader,
    open_hdf5,
    read_dataset,
    require,
    symbols_to_z,
)


def _groups_with(root: h5py.Group, key: str) -> Iterator[h5py.Group]:
    """Groups below ``root`` (depth first, file order) that hold dataset ``key``."""
    for item in root.values():
        if isinstance(item, h5py.Group):
            if key in item and isinstance(item[key], h5py.Dataset):
                yield item
            else:
                yield from _groups_with(item, key)


class Ani1Reader(Reader):
    """ANI-1: one group per molecule (``coordinates`` Å, ``energies`` Hartree, ``species``)."""

    name = "ani1"
    description = "ANI-1 release HDF5 (ani_gdb_s0X.h5): ωB97x/6-31G(d) energies, Hartree"
    options: ClassVar[dict[str, Any]] = {"high_energy": False}
    source_units: ClassVar[dict[str, str]] = {"length": "Angstrom", "energy": "Hartree"}

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """ANI-1's DFT level."""
        return "wB97x/6-31G(d)"

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Molecules of an ANI-1 file; with ``high_energy`` also coordinatesHE/energiesHE."""
        high_energy = bool(options.get("high_energy", False))
        with open_hdf5(path) as f:
            groups = list(_groups_with(f, "species"))
            if not groups:
                raise DataError(path, "no molecule group with 'species' found (not an ANI-1 file?)")
            for group in groups:
                where = f"{path}:{group.name}"
                z = symbols_to_z(read_dataset(require(group, "species", path), where), where)
                keys = [("coordinates", "energies")]
                if high_energy:
                    keys.append(("coordinatesHE", "energiesHE"))
                for pos_key, energy_key in keys:
                    coords = require(group, pos_key, path)
                    energies = require(group, energy_key, path)
                    if energies.shape[:1] != coords.shape[:1]:
                        raise DataError(
                            where,
                            f"{energies.shape[0]} {energy_key} for {coords.shape[0]} {pos_key}",
                        )
                    for c0 in range(0, coords.shape[0], BLOCK_CONFORMATIONS):
                        sel = np.s_[c0 : c0 + BLOCK_CONFORMATIONS]
                        yield MoleculeRecord(
                            name=group.name.lstrip("/"),
                            z=z,
                            pos=read_dataset(coords, where, sel),
                            energy=read_dataset(energies, where, sel).astype(np.float64)
                            * units.HARTREE_IN_EV,
                            forces=None,
                            location=where,
                        )


#: ANI-1x property sets: energy key, forces key (None: energy only), level of theory
ANI1X_PROPERTY_SETS: dict[str, tuple[str, str | None, str]] = {
    "wb97x_dz": ("wb97x_dz.energy", "wb97x_dz.forces", "wB97x/6-31G(d)"),
    "wb97x_tz": ("wb97x_tz.energy", "wb97x_tz.forces", "wB97x/def2-TZVPP"),
    "ccsd(t)_cbs": ("ccsd(t)_cbs.energy", None, "CCSD(T)*/CBS"),
}


class Ani1xReader(Reader):
    """ANI-1x: one group per formula; missing values are NaN and masked per property set."""

    name = "ani1x"
    description = "ANI-1x release HDF5 (ani1x-release.h5): wb97x_dz, wb97x_tz or ccsd(t)_cbs"
    options: ClassVar[dict[str, Any]] = {"property_set": "wb97x_dz", "forces": True}
    source_units: ClassVar[dict[str, str]] = {
        "length": "Angstrom",
        "energy": "Hartree",
        "forces": "Hartree/Angstrom",
    }

    def _property_set(self, path: Path, options: dict[str, Any]) -> tuple[str, str | None, str]:
        name = options.get("property_set", "wb97x_dz")
        if name not in ANI1X_PROPERTY_SETS:
            raise DataError(
                path,
                f"unknown ANI-1x property set {name!r} "
                f"(choose from {', '.join(ANI1X_PROPERTY_SETS)})",
            )
        return ANI1X_PROPERTY_SETS[name]

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """Level of theory of the chosen property set."""
        return self._property_set(path, options)[2]

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Formula groups of an ANI-1x file with the chosen property set (NaN rows masked)."""
        energy_key, forces_key, _ = self._property_set(path, options)
        if not options.get("forces", True):
            forces_key = None
        factor_e = units.HARTREE_IN_EV
        factor_f = units.force_to_ev_per_angstrom("Hartree", "Angstrom")
        with open_hdf5(path) as f:
            groups = list(_groups_with(f, "atomic_numbers"))
            if not groups:
                raise DataError(path, "no group with 'atomic_numbers' found (not an ANI-1x file?)")
            for group in groups:
                where = f"{path}:{group.name}"
                z = read_dataset(require(group, "atomic_numbers", path), where).astype(np.int64)
                coords = require(group, "coordinates", path)
                energies = require(group, energy_key, path)
                forces = require(group, forces_key, path) if forces_key else None
                for c0 in range(0, coords.shape[0], BLOCK_CONFORMATIONS):
                    sel = np.s_[c0 : c0 + BLOCK_CONFORMATIONS]
                    yield MoleculeRecord(
                        name=group.name.lstrip("/"),
                        z=z,
                        pos=read_dataset(coords, where, sel),
                        energy=read_dataset(energies, where, sel).astype(np.float64) * factor_e,
                        forces=None
                        if forces is None
                        else (read_dataset(forces, where, sel) * factor_f).astype(np.float32),
                        location=where,
                        nan_is_missing=True,
                    )

"""MD17/MD22 sGDML npz and revised-MD17 npz readers (kcal/mol, Å)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import units
from ..errors import DataError
from ..records import MoleculeRecord
from .base import BLOCK_CONFORMATIONS, Reader, decode_text


def load_npz(path: Path) -> np.lib.npyio.NpzFile:
    """Open an npz without unpickling; a corrupt archive is a DataError."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not a readable npz archive, truncated or corrupt ({exc})") from None


def _get(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in npz.files:
        raise DataError(path, f"missing array {key!r} (present: {', '.join(npz.files)})")
    try:
        return npz[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(path, f"cannot read array {key!r}: corrupt or truncated ({exc})") from None


def _blocks(
    name: str,
    z: np.ndarray,
    pos: np.ndarray,
    energy: np.ndarray | None,
    forces: np.ndarray | None,
    where: str,
) -> Iterator[MoleculeRecord]:
    e_factor = units.KCAL_PER_MOL_IN_EV
    f_factor = units.force_to_ev_per_angstrom("kcal/mol", "Angstrom")
    for c0 in range(0, pos.shape[0], BLOCK_CONFORMATIONS):
        sel = slice(c0, c0 + BLOCK_CONFORMATIONS)
        yield MoleculeRecord(
            name=name,
            z=z,
            pos=pos[sel].astype(np.float32),
            energy=None if energy is None else energy[sel].astype(np.float64) * e_factor,
            forces=None if forces is None else (forces[sel] * f_factor).astype(np.float32),
            location=where,
        )


class SgdmlReader(Reader):
    """sGDML npz (MD17, MD22): ``R`` Å, ``z``, ``E`` kcal/mol, ``F`` kcal/mol/Å."""

    name = "sgdml"
    description = "MD17/MD22 sGDML npz (R, z, E, F): kcal/mol, Å"
    source_units: ClassVar[dict[str, str]] = {
        "length": "Angstrom",
        "energy": "kcal/mol",
        "forces": "kcal/mol/Angstrom",
    }

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str | None:
        """The ``theory`` entry of the archive, where present."""
        with load_npz(path) as npz:
            return decode_text(npz["theory"]) if "theory" in npz.files else None

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """The one molecule of an sGDML archive."""
        with load_npz(path) as npz:
            name = decode_text(npz["name"]) if "name" in npz.files else path.stem
            z = _get(npz, "z", path).astype(np.int64)
            pos = _get(npz, "R", path)
            energy = _get(npz, "E", path).reshape(-1) if "E" in npz.files else None
            forces = _get(npz, "F", path) if "F" in npz.files else None
        yield from _blocks(name, z, pos, energy, forces, str(path))


class Rmd17Reader(Reader):
    """Revised MD17 npz: ``nuclear_charges``, ``coords`` Å, ``energies``/``forces`` kcal/mol(/Å)."""

    name = "rmd17"
    description = "revised MD17 npz (nuclear_charges, coords, energies, forces): PBE/def2-SVP"
    source_units: ClassVar[dict[str, str]] = {
        "length": "Angstrom",
        "energy": "kcal/mol",
        "forces": "kcal/mol/Angstrom",
    }

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """rMD17's DFT level."""
        return "PBE/def2-SVP"

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """The one molecule of an rMD17 archive, named from the file (``rmd17_<mol>_...``)."""
        name = re.sub(r"^rmd17_", "", path.stem)
        name = re.sub(r"[_-](train|test)([_-]\d+)?$", "", name)
        with load_npz(path) as npz:
            z = _get(npz, "nuclear_charges", path).astype(np.int64)
            pos = _get(npz, "coords", path)
            energy = _get(npz, "energies", path).reshape(-1)
            forces = _get(npz, "forces", path)
        yield from _blocks(name, z, pos, energy, forces, str(path))

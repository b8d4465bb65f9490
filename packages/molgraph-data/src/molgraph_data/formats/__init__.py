"""Release-format readers, their registry, and automatic format detection."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import h5py

from ..errors import DataError
from .ani import Ani1Reader, Ani1xReader
from .ase_file import AseReader
from .base import Reader, open_hdf5
from .iso17 import Iso17Reader, looks_like_iso17_db
from .npz import Rmd17Reader, SgdmlReader
from .spice import SpiceReader
from .xyz import Md22XyzReader, looks_like_md22_xyz

READERS: dict[str, Reader] = {
    reader.name: reader
    for reader in (
        Ani1Reader(),
        Ani1xReader(),
        SpiceReader(),
        Iso17Reader(),
        SgdmlReader(),
        Rmd17Reader(),
        Md22XyzReader(),
        AseReader(),
    )
}
#: other names accepted for a format
ALIASES = {"md17": "sgdml", "md22": "sgdml", "ani-1": "ani1", "ani-1x": "ani1x", "xyz": "ase"}


def list_formats() -> dict[str, str]:
    """Format names and one-line descriptions."""
    return {name: reader.description for name, reader in READERS.items()}


def get_reader(name: str, path: str | os.PathLike[str] | None = None) -> Reader:
    """The reader registered as ``name`` (or an alias); an unknown name is a DataError."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in READERS:
        raise DataError(path, f"unknown format {name!r} (known: {', '.join(READERS)})")
    return READERS[key]


def _detect_hdf5(path: Path) -> str:
    with open_hdf5(path) as f:
        if "molgraph_data_store" in f.attrs:
            return "store"
        groups: list[h5py.Group] = [g for g in f.values() if isinstance(g, h5py.Group)]
        for group in groups[:3]:
            keys = set(group.keys())
            if {"conformations", "atomic_numbers"} <= keys:
                return "spice"
            if {"coordinates", "atomic_numbers"} <= keys:
                return "ani1x"
            if "species" in keys:
                return "ani1"
            for sub in list(group.values())[:3]:
                if isinstance(sub, h5py.Group) and {"species", "coordinates"} <= set(sub.keys()):
                    return "ani1"
    raise DataError(
        path, "HDF5 layout matches no known release (ANI-1, ANI-1x, SPICE); pass --format"
    )


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name of the format of ``path`` (``"store"`` for a canonical store); DataError if unknown."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    if path.is_dir():
        if (path / "reference.db").is_file():
            return "iso17"
        raise DataError(path, "a folder is read only as an ISO17 release (it has no reference.db)")
    suffix = path.suffix.lower()
    if suffix in {".h5", ".hdf5", ".hdf"} or h5py.is_hdf5(path):
        return _detect_hdf5(path)
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                keys = {Path(n).stem for n in archive.namelist()}
        except (OSError, zipfile.BadZipFile):
            raise DataError(path, "not a readable npz archive, truncated or corrupt") from None
        if {"nuclear_charges", "coords"} <= keys:
            return "rmd17"
        if {"R", "z"} <= keys:
            return "sgdml"
        raise DataError(path, f"npz keys {sorted(keys)} match neither sGDML nor rMD17")
    if suffix == ".db" and looks_like_iso17_db(path):
        return "iso17"
    if suffix in {".xyz", ".extxyz"} and looks_like_md22_xyz(path):
        return "md22-xyz"
    from ase.io.formats import filetype

    try:
        filetype(str(path), guess=False)
    except Exception:  # noqa: BLE001 - ase raises several types for "not mine"
        raise DataError(
            path, f"unknown format; pass --format (one of {', '.join(READERS)})"
        ) from None
    return "ase"

"""What every release-format reader provides, and helpers they share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
from ase.data import atomic_numbers as _SYMBOL_TO_Z

from ..errors import DataError
from ..records import MoleculeRecord

#: conformations per record when a reader splits one large molecule into blocks
BLOCK_CONFORMATIONS = 8192


class Reader:
    """A release format: its name, options (with defaults), units, and how to read it."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: reader options and their defaults; anything else is refused
    options: ClassVar[dict[str, Any]] = {}
    #: units of the source, recorded in the store's metadata
    source_units: ClassVar[dict[str, str]]

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str | None:
        """Level of theory of the labels, where the release says or is known to use one."""
        return None

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Yield the molecules of ``path`` in Å, eV, eV/Å."""
        raise NotImplementedError

    def resolve_options(self, path: Path, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``; an option this format lacks is a DataError."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise DataError(
                path,
                f"option {', '.join(unknown)} does not apply to format {self.name!r} "
                f"(its options: {allowed})",
            )
        return {**self.options, **given}


def open_hdf5(path: Path) -> h5py.File:
    """Open an HDF5 file read-only; a truncated or corrupt file is a DataError."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[0].strip() or "unreadable"
        raise DataError(
            path, f"not a readable HDF5 file, truncated or corrupt ({reason})"
        ) from None


def require(group: h5py.Group, key: str, path: Path) -> h5py.Dataset:
    """Dataset ``key`` of ``group``, or a DataError naming the group and the missing key."""
    if key not in group:
        present = ", ".join(sorted(group.keys())[:8])
        raise DataError(f"{path}:{group.name}", f"missing dataset {key!r} (present: {present})")
    return group[key]


def read_dataset(dataset: h5py.Dataset, where: str, selection: Any = ()) -> np.ndarray:
    """Read ``dataset[selection]``; a corrupt chunk becomes a DataError naming ``where``."""
    try:
        return dataset[selection]
    except OSError as exc:
        raise DataError(
            where, f"cannot read {dataset.name!r}: corrupt or truncated ({exc})"
        ) from None


def symbols_to_z(symbols: Any, where: str) -> np.ndarray:
    """Atomic numbers of element symbols (bytes or str); an unknown symbol is a DataError."""
    out = []
    for s in symbols:
        text = s.decode() if isinstance(s, bytes | np.bytes_) else str(s)
        text = text.strip()
        if text not in _SYMBOL_TO_Z or _SYMBOL_TO_Z[text] == 0:
            raise DataError(where, f"unknown element symbol {text!r}")
        out.append(_SYMBOL_TO_Z[text])
    return np.array(out, dtype=np.int64)


def decode_text(value: Any) -> str:
    """A string stored as str, bytes, a 0-d/1-d array of either, or an array of single chars."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        item = arr.item()
        return item.decode() if isinstance(item, bytes) else str(item)
    parts = [p.decode() if isinstance(p, bytes) else str(p) for p in arr.reshape(-1).tolist()]
    return "".join(parts) if all(len(p) <= 1 for p in parts) else parts[0]


_SPLIT_PATTERNS = (
    ("test_other", re.compile(r"test[_-]?other", re.I)),
    ("test", re.compile(r"(^|[_\-.])(test|test_within)([_\-.]|$)", re.I)),
    ("val", re.compile(r"(^|[_\-.])(val|valid|validation)([_\-.]|$)", re.I)),
    ("train", re.compile(r"(^|[_\-.])train([_\-.]|$)", re.I)),
)


def split_tag_from_name(path: Path) -> str:
    """Official split a release file stands for, from its name (``*_train_*``, ``*-test*``…)."""
    stem = path.name
    for tag, pattern in _SPLIT_PATTERNS:
        if pattern.search(stem):
            return tag
    return "none"


def hill_formula(z: np.ndarray) -> str:
    """Hill-order chemical formula of atomic numbers ``z`` (e.g. ``C7H10O2``)."""
    from ase.symbols import Symbols

    return Symbols(np.asarray(z, dtype=np.int64)).get_chemical_formula(mode="hill")

"""ISO17 reader: the release folder (ASE SQLite dbs + official id files) or one of its dbs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError
from ..records import MoleculeRecord
from ..store import split_code
from .base import BLOCK_CONFORMATIONS, Reader, hill_formula, split_tag_from_name

#: databases of the release folder that are read, and the official split of their rows
#: (reference.db rows are split by train_ids.txt / validation_ids.txt)
ISO17_TEST_DBS = {"test_within.db": "test", "test_other.db": "test_other"}


def looks_like_iso17_db(path: Path) -> bool:
    """True for an ASE SQLite db whose rows carry ``total_energy`` and ``atomic_forces``."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT key_value_pairs FROM systems LIMIT 1").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None and "total_energy" in str(row[0])


def _read_ids(path: Path) -> np.ndarray:
    """1-based row ids, one per line."""
    if not path.is_file():
        raise DataError(
            path, "missing: the ISO17 folder needs train_ids.txt and validation_ids.txt"
        )
    try:
        return np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError as exc:
        raise DataError(path, f"not a list of integer row ids ({exc})") from None


def _iter_db(path: Path, codes_by_id: dict[int, int] | None) -> Iterator[MoleculeRecord]:
    """Rows of one ISO17 db, grouped into blocks of consecutive rows with the same atoms."""
    import ase.db

    def flush(rows: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray]]) -> MoleculeRecord:
        z = rows[0][1]
        return MoleculeRecord(
            name=hill_formula(z),
            z=z,
            pos=np.stack([r[2] for r in rows]).astype(np.float32),
            energy=np.array([r[3] for r in rows], dtype=np.float64),
            forces=np.stack([r[4] for r in rows]).astype(np.float32),
            location=f"{path}:rows {rows[0][0]}-{rows[-1][0]}",
            split_codes=None
            if codes_by_id is None
            else np.array([codes_by_id.get(r[0], 0) for r in rows], dtype=np.uint8),
        )

    block: list[tuple[int, np.ndarray, np.ndarray, float, np.ndarray]] = []
    try:
        db = ase.db.connect(str(path), type="db", create_indices=False)
        for row in db.select():
            where = f"{path}:row {row.id}"
            if "total_energy" not in row.key_value_pairs:
                raise DataError(where, "missing key 'total_energy'")
            if "atomic_forces" not in row.data:
                raise DataError(where, "missing data 'atomic_forces'")
            z = np.asarray(row.numbers, dtype=np.int64)
            if block and (len(block) >= BLOCK_CONFORMATIONS or not np.array_equal(z, block[0][1])):
                yield flush(block)
                block = []
            forces = np.asarray(row.data["atomic_forces"], dtype=np.float64)
            block.append((row.id, z, np.asarray(row.positions), float(row.total_energy), forces))
    except sqlite3.DatabaseError as exc:
        raise DataError(path, f"not a readable ASE SQLite database ({exc})") from None
    if block:
        yield flush(block)


class Iso17Reader(Reader):
    """ISO17 (ASE db, eV and eV/Å): a release folder with the official split, or one db."""

    name = "iso17"
    description = "ISO17 release folder (reference.db, test_*.db, *_ids.txt) or one of its dbs"
    source_units: ClassVar[dict[str, str]] = {
        "length": "Angstrom",
        "energy": "eV",
        "forces": "eV/Angstrom",
    }

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """ISO17's DFT level."""
        return "PBE+vdW-TS (FHI-aims)"

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Rows of an ISO17 db, or of a release folder tagged with the official split."""
        if path.is_file():
            if not looks_like_iso17_db(path):
                raise DataError(path, "not an ISO17 ASE database (rows lack 'total_energy')")
            tag = split_code(split_tag_from_name(path))
            for record in _iter_db(path, None):
                record.split_codes = np.full(record.n_conformations, tag, dtype=np.uint8)
                yield record
            return
        reference = path / "reference.db"
        if not reference.is_file():
            raise DataError(path, "not an ISO17 release folder: reference.db is missing")
        train = _read_ids(path / "train_ids.txt")
        val = _read_ids(path / "validation_ids.txt")
        codes = {int(i): split_code("train") for i in train}
        codes.update({int(i): split_code("val") for i in val})
        yield from _iter_db(reference, codes)
        for name, tag in ISO17_TEST_DBS.items():
            db_path = path / name
            if not db_path.is_file():
                raise DataError(db_path, "missing from the ISO17 release folder")
            for record in _iter_db(db_path, None):
                record.split_codes = np.full(record.n_conformations, split_code(tag), np.uint8)
                yield record

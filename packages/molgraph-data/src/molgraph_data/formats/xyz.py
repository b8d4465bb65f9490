"""MD22 extended-XYZ reader: ``Energy=`` (kcal/mol) comments, ``symbol x y z fx fy fz`` atoms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import units
from ..errors import DataError
from ..records import MoleculeRecord
from .base import BLOCK_CONFORMATIONS, Reader, symbols_to_z

_ENERGY = re.compile(r"(?:^|\s)Energy\s*=\s*([-+0-9.eEdD]+)")


def looks_like_md22_xyz(path: Path) -> bool:
    """True when the first frame's comment has ``Energy=`` and no extxyz ``Properties=``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            handle.readline()
            comment = handle.readline()
    except OSError:
        return False
    return bool(_ENERGY.search(comment)) and "Properties=" not in comment


class Md22XyzReader(Reader):
    """MD22 as distributed in extended XYZ: energies kcal/mol, forces kcal/mol/Å."""

    name = "md22-xyz"
    description = "MD22 extended XYZ (Energy= comment, symbol x y z fx fy fz): kcal/mol"
    source_units: ClassVar[dict[str, str]] = {
        "length": "Angstrom",
        "energy": "kcal/mol",
        "forces": "kcal/mol/Angstrom",
    }

    def level_of_theory(self, path: Path, options: dict[str, Any]) -> str:
        """MD22's DFT level."""
        return "PBE+MBD"

    def read(self, path: Path, **options: Any) -> Iterator[MoleculeRecord]:
        """Frames of the file, in blocks of consecutive frames with the same atoms."""
        e_factor = units.KCAL_PER_MOL_IN_EV
        f_factor = units.force_to_ev_per_angstrom("kcal/mol", "Angstrom")
        name = path.stem
        block_z: np.ndarray | None = None
        block_rows: list[np.ndarray] = []
        block_energy: list[float] = []
        first_frame = 0

        def flush() -> MoleculeRecord:
            data = np.stack(block_rows)
            return MoleculeRecord(
                name=name,
                z=block_z,
                pos=data[:, :, :3].astype(np.float32),
                energy=np.array(block_energy, dtype=np.float64) * e_factor,
                forces=(data[:, :, 3:] * f_factor).astype(np.float32),
                location=f"{path}:frames {first_frame}-{first_frame + len(block_rows) - 1}",
            )

        with open(path, encoding="utf-8") as handle:
            frame, line_no = 0, 0
            while True:
                header = handle.readline()
                line_no += 1
                if not header.strip():
                    if header == "" or not handle.readline():
                        break
                    raise DataError(
                        f"{path}:line {line_no}", "blank line where an atom count belongs"
                    )
                where = f"{path}:frame {frame}"
                try:
                    n_atoms = int(header.split()[0])
                except ValueError:
                    raise DataError(
                        where, f"line {line_no}: expected an atom count, got {header.strip()!r}"
                    ) from None
                comment = handle.readline()
                line_no += 1
                match = _ENERGY.search(comment)
                if match is None:
                    raise DataError(
                        where, f"line {line_no}: comment line has no 'Energy=<kcal/mol>'"
                    )
                symbols, rows = [], []
                for _ in range(n_atoms):
                    line = handle.readline()
                    line_no += 1
                    parts = line.split()
                    if not parts:
                        raise DataError(
                            where, f"file ends inside the frame (line {line_no}; truncated?)"
                        )
                    if len(parts) != 7:
                        raise DataError(
                            where,
                            f"line {line_no}: expected 7 columns (symbol x y z fx fy fz), "
                            f"got {len(parts)}",
                        )
                    symbols.append(parts[0])
                    try:
                        rows.append([float(v) for v in parts[1:]])
                    except ValueError:
                        raise DataError(
                            where, f"line {line_no}: non-numeric coordinate or force"
                        ) from None
                z = symbols_to_z(symbols, where)
                if block_z is not None and (
                    len(block_rows) >= BLOCK_CONFORMATIONS or not np.array_equal(z, block_z)
                ):
                    yield flush()
                    block_rows, block_energy, first_frame = [], [], frame
                block_z = z
                block_rows.append(np.array(rows, dtype=np.float64).reshape(n_atoms, 6))
                block_energy.append(float(match.group(1).replace("d", "e").replace("D", "e")))
                frame += 1
        if not block_rows:
            raise DataError(path, "no frames found")
        yield flush()

"""What a release file or a store holds: counts, elements, sizes, energy range (eV)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .formats import detect_format, get_reader
from .records import validate_record
from .store import Store, is_store


@dataclass
class Summary:
    """Counts and ranges of one file; energies in eV (NaN when there are none)."""

    path: Path
    format: str
    n_molecules: int = 0
    n_conformations: int = 0
    elements: list[int] = field(default_factory=list)
    atoms_min: int = 0
    atoms_max: int = 0
    energy_min_ev: float = float("nan")
    energy_max_ev: float = float("nan")
    has_energy: bool = False
    has_forces: bool = False
    n_dropped_nan: int = 0
    level_of_theory: str | None = None
    source_units: dict[str, str] = field(default_factory=dict)


def _store_summary(path: Path) -> Summary:
    with Store(path) as store:
        n_atoms = store.n_atoms
        e_min, e_max = store.energy_range()
        sources = store.metadata.get("sources", [])
        levels = sorted({s["level_of_theory"] for s in sources if s.get("level_of_theory")})
        return Summary(
            path=path,
            format="store (" + ", ".join(sorted({s["format"] for s in sources})) + ")",
            n_molecules=store.n_molecules,
            n_conformations=store.n_conformations,
            elements=store.elements.tolist(),
            atoms_min=int(n_atoms.min()),
            atoms_max=int(n_atoms.max()),
            energy_min_ev=e_min,
            energy_max_ev=e_max,
            has_energy=store.has_energy,
            has_forces=store.has_forces,
            n_dropped_nan=int(store.metadata.get("n_dropped_nan", 0)),
            level_of_theory="; ".join(levels) or None,
            source_units=store.metadata["units"],
        )


def summarize(
    path: str | os.PathLike[str], *, format: str | None = None, **reader_options: Any
) -> Summary:
    """Summary of a store, or of a release file read through its reader (streamed, nothing
    written): every conformation is validated as conversion would."""
    path = Path(path)
    if format is None and is_store(path):
        return _store_summary(path)
    name = format or detect_format(path)
    reader = get_reader(name, path)
    options = reader.resolve_options(path, reader_options)
    out = Summary(
        path=path,
        format=reader.name,
        level_of_theory=reader.level_of_theory(path, options),
        source_units=dict(reader.source_units),
    )
    names: set[str] = set()
    elements: set[int] = set()
    forces_seen = no_forces_seen = False
    out.atoms_min = np.iinfo(np.int64).max
    for record in reader.read(path, **options):
        clean, dropped = validate_record(record)
        out.n_dropped_nan += dropped
        if clean.n_conformations == 0:
            continue
        names.add(clean.name)
        elements.update(int(z) for z in np.unique(clean.z))
        out.n_conformations += clean.n_conformations
        out.atoms_min = min(out.atoms_min, clean.z.size)
        out.atoms_max = max(out.atoms_max, clean.z.size)
        if clean.energy is not None:
            out.has_energy = True
            lo, hi = float(clean.energy.min()), float(clean.energy.max())
            out.energy_min_ev = lo if np.isnan(out.energy_min_ev) else min(out.energy_min_ev, lo)
            out.energy_max_ev = hi if np.isnan(out.energy_max_ev) else max(out.energy_max_ev, hi)
        forces_seen |= clean.forces is not None
        no_forces_seen |= clean.forces is None
    if out.n_conformations == 0:
        out.atoms_min = 0
    out.n_molecules = len(names)
    out.elements = sorted(elements)
    out.has_forces = forces_seen and not no_forces_seen
    return out

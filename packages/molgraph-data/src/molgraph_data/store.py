"""The canonical on-disk store: one HDF5 file of flat arrays (Å, eV, eV/Å; energies float64).

Layout (``N`` conformations, ``M`` atoms in all, ``K`` molecules)::

    /z                uint8   [M]      atomic numbers
    /pos              float32 [M, 3]   Å
    /forces           float32 [M, 3]   eV/Å (only when every source has forces)
    /energy           float64 [N]      eV, NaN where the source has none
    /atom_offset      int64   [N + 1]  conformation i has atom rows atom_offset[i]:atom_offset[i+1]
    /molecule_index   int64   [N]      molecule id of each conformation
    /split_code       uint8   [N]      official split tag, an index into SPLIT_TAGS
    /source_index     int16   [N]      which source file the conformation came from
    /molecules/name   str     [K]
    /molecules/n_conformations int64 [K]

The root attribute ``metadata`` holds JSON (sources, formats, level of theory, source units,
element counts, dropped conformations) and ``molgraph_data_store`` the format version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import DataError
from .records import MoleculeRecord

#: version of the layout above, stored in the root attribute ``molgraph_data_store``
STORE_FORMAT_VERSION = 1
#: official split tags a conformation can carry (``split_code`` indexes this tuple)
SPLIT_TAGS = ("none", "train", "val", "test", "test_other")
#: rows per HDF5 chunk of the per-atom arrays: small enough that a random batch reads little
ATOM_CHUNK_ROWS = 2048
#: rows per HDF5 chunk of the per-conformation arrays
CONF_CHUNK_ROWS = 4096

_STORE_ATTR = "molgraph_data_store"


def split_code(tag: str) -> int:
    """Index of an official split tag in SPLIT_TAGS."""
    return SPLIT_TAGS.index(tag)


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a canonical store written by this package."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return _STORE_ATTR in f.attrs
    except OSError:
        return False


class StoreWriter:
    """Appends validated MoleculeRecords to a new store file, streaming (bounded memory)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = h5py.File(self.path, "w")
        f = self._file
        f.create_dataset("z", (0,), maxshape=(None,), dtype=np.uint8, chunks=(ATOM_CHUNK_ROWS,))
        for name in ("pos", "forces"):
            f.create_dataset(
                name, (0, 3), maxshape=(None, 3), dtype=np.float32, chunks=(ATOM_CHUNK_ROWS, 3)
            )
        conf = {"maxshape": (None,), "chunks": (CONF_CHUNK_ROWS,)}
        f.create_dataset("energy", (0,), dtype=np.float64, **conf)
        f.create_dataset("atom_offset", (1,), dtype=np.int64, **conf)
        f.create_dataset("molecule_index", (0,), dtype=np.int64, **conf)
        f.create_dataset("split_code", (0,), dtype=np.uint8, **conf)
        f.create_dataset("source_index", (0,), dtype=np.int16, **conf)
        self.n_conformations = 0
        self.n_atoms_total = 0
        self._molecule_ids: dict[str, int] = {}
        self._molecule_counts: list[int] = []
        self._element_counts = np.zeros(119, dtype=np.int64)
        self._with_forces = 0
        self._without_forces = 0
        self._with_energy = 0
        self._source_index = -1
        self._source_split = 0

    def begin_source(self, split_tag: str) -> None:
        """Start the next source file; its conformations get ``split_tag`` unless tagged."""
        self._source_index += 1
        self._source_split = split_code(split_tag)

    def add(self, record: MoleculeRecord) -> None:
        """Append one validated record."""
        n_conf, n_atoms = record.pos.shape[:2]
        if n_conf == 0:
            return
        f = self._file
        a0, c0 = self.n_atoms_total, self.n_conformations
        a1, c1 = a0 + n_conf * n_atoms, c0 + n_conf
        mol = self._molecule_ids.setdefault(record.name, len(self._molecule_ids))
        if mol == len(self._molecule_counts):
            self._molecule_counts.append(0)
        self._molecule_counts[mol] += n_conf
        for name in ("z", "pos", "forces"):
            f[name].resize(a1, axis=0)
        f["z"][a0:a1] = np.tile(record.z.astype(np.uint8), n_conf)
        f["pos"][a0:a1] = record.pos.reshape(-1, 3)
        if record.forces is None:
            self._without_forces += n_conf
        else:
            self._with_forces += n_conf
            f["forces"][a0:a1] = record.forces.reshape(-1, 3)
        for name in ("energy", "molecule_index", "split_code", "source_index"):
            f[name].resize(c1, axis=0)
        f["atom_offset"].resize(c1 + 1, axis=0)
        if record.energy is None:
            f["energy"][c0:c1] = np.nan
        else:
            self._with_energy += n_conf
            f["energy"][c0:c1] = record.energy
        f["atom_offset"][c0 + 1 : c1 + 1] = a0 + n_atoms * np.arange(1, n_conf + 1)
        f["molecule_index"][c0:c1] = mol
        codes = record.split_codes if record.split_codes is not None else self._source_split
        f["split_code"][c0:c1] = codes
        f["source_index"][c0:c1] = self._source_index
        np.add.at(self._element_counts, record.z, n_conf)
        self.n_atoms_total, self.n_conformations = a1, c1

    def finish(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Write the molecule index and metadata, close the file; return the metadata."""
        f = self._file
        notes = metadata.setdefault("notes", [])
        if self._with_forces and self._without_forces:
            notes.append(
                f"forces dropped: {self._without_forces} conformations have none "
                f"({self._with_forces} have forces)"
            )
        if not self._with_forces or self._without_forces:
            del f["forces"]
        names = list(self._molecule_ids)
        group = f.create_group("molecules")
        group.create_dataset("name", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("n_conformations", data=np.array(self._molecule_counts, np.int64))
        present = np.nonzero(self._element_counts)[0]
        metadata.update(
            n_conformations=self.n_conformations,
            n_molecules=len(names),
            n_atoms_total=self.n_atoms_total,
            n_with_energy=self._with_energy,
            element_atom_counts={int(z): int(self._element_counts[z]) for z in present},
            units={"length": "Angstrom", "energy": "eV", "forces": "eV/Angstrom"},
        )
        f.attrs["metadata"] = json.dumps(metadata)
        f.attrs[_STORE_ATTR] = STORE_FORMAT_VERSION
        f.close()
        return metadata

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        if self._file.id.valid:
            self._file.close()


@dataclass
class ConformationBlock:
    """Several conformations read at once, flat: ``z [N]``, ``pos [N, 3]`` Å, ``forces [N, 3]``
    eV/Å or None, and per conformation ``energy [B]`` eV, ``n_atoms``, ``mol_id``, ``conf_id``."""

    z: np.ndarray
    pos: np.ndarray
    forces: np.ndarray | None
    energy: np.ndarray
    n_atoms: np.ndarray
    mol_id: np.ndarray
    conf_id: np.ndarray

    def __len__(self) -> int:
        return int(self.conf_id.size)


def _read_points(dataset: h5py.Dataset, points: np.ndarray) -> np.ndarray:
    """Rows ``points`` (sorted, unique) of a 1-D dataset, in one HDF5 read."""
    out = np.empty(points.size, dtype=dataset.dtype)
    if points.size == 0:
        return out
    space = dataset.id.get_space()
    space.select_elements(points.reshape(-1, 1).astype(np.uint64))
    dataset.id.read(h5py.h5s.create_simple((points.size,)), space, out)
    return out


def _read_ranges(dataset: h5py.Dataset, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated row ranges ``starts[i] : starts[i] + counts[i]`` (sorted, disjoint)."""
    tail = dataset.shape[1:]
    total = int(counts.sum())
    out = np.empty((total, *tail), dtype=dataset.dtype)
    if total == 0:
        return out
    # merge touching ranges so a contiguous read is one hyperslab
    ends = starts + counts
    new_run = np.ones(starts.size, dtype=bool)
    new_run[1:] = starts[1:] != ends[:-1]
    run_starts = starts[new_run]
    run_ends = np.maximum.reduceat(ends, np.nonzero(new_run)[0])
    space = dataset.id.get_space()
    space.select_none()
    extra = (0,) * len(tail)
    for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        space.select_hyperslab((a, *extra), (b - a, *tail), op=h5py.h5s.SELECT_OR)
    dataset.id.read(h5py.h5s.create_simple(out.shape), space, out)
    return out


def read_block(file: h5py.File, indices: np.ndarray, has_forces: bool) -> ConformationBlock:
    """Read conformations ``indices`` (any order, repeats allowed) from an open store file."""
    indices = np.asarray(indices, dtype=np.int64)
    unique, inverse = np.unique(indices, return_inverse=True)
    offsets = file["atom_offset"]
    starts = _read_points(offsets, unique)
    ends = _read_points(offsets, unique + 1)
    counts = ends - starts
    z = _read_ranges(file["z"], starts, counts)
    pos = _read_ranges(file["pos"], starts, counts)
    forces = _read_ranges(file["forces"], starts, counts) if has_forces else None
    energy = _read_points(file["energy"], unique)
    mol_id = _read_points(file["molecule_index"], unique)
    if unique.size != indices.size or not np.array_equal(unique, indices):
        # rows come back sorted; put atoms back in the requested order
        local_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        atom_rows = (
            np.concatenate([np.arange(local_start[k], local_start[k] + counts[k]) for k in inverse])
            if inverse.size
            else np.zeros(0, np.int64)
        )
        z, pos = z[atom_rows], pos[atom_rows]
        forces = None if forces is None else forces[atom_rows]
        counts, energy, mol_id = counts[inverse], energy[inverse], mol_id[inverse]
    return ConformationBlock(
        z=z.astype(np.int64),
        pos=pos,
        forces=forces,
        energy=energy,
        n_atoms=counts.astype(np.int64),
        mol_id=mol_id,
        conf_id=indices,
    )


class Store:
    """A canonical store opened read-only. Per-conformation arrays load on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(self.path, "no such file")
        if not is_store(self.path):
            raise DataError(
                self.path, "not a molgraph-data store; convert it first (denoisepot data convert)"
            )
        self._file = h5py.File(self.path, "r")
        version = int(self._file.attrs[_STORE_ATTR])
        if version != STORE_FORMAT_VERSION:
            raise DataError(
                self.path, f"store format {version}, this version reads {STORE_FORMAT_VERSION}"
            )
        self.metadata: dict[str, Any] = json.loads(self._file.attrs["metadata"])
        self._cache: dict[str, np.ndarray] = {}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file."""
        if self._file.id.valid:
            self._file.close()

    def _array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._file[name][()]
        return self._cache[name]

    @property
    def n_conformations(self) -> int:
        """Number of conformations."""
        return int(self._file["energy"].shape[0])

    @property
    def n_molecules(self) -> int:
        """Number of molecules."""
        return int(self._file["molecules/name"].shape[0])

    @property
    def has_energy(self) -> bool:
        """True when at least one conformation has an energy."""
        return int(self.metadata["n_with_energy"]) > 0

    @property
    def has_forces(self) -> bool:
        """True when every conformation has forces."""
        return "forces" in self._file

    @property
    def elements(self) -> np.ndarray:
        """Sorted atomic numbers present in the store."""
        return np.array(sorted(int(z) for z in self.metadata["element_atom_counts"]), np.int64)

    @property
    def atom_offset(self) -> np.ndarray:
        """Row offsets [N + 1] of each conformation's atoms in the per-atom arrays."""
        return self._array("atom_offset")

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms per conformation [N] (int64)."""
        if "n_atoms" not in self._cache:
            self._cache["n_atoms"] = np.diff(self.atom_offset)
        return self._cache["n_atoms"]

    @property
    def molecule_index(self) -> np.ndarray:
        """Molecule id of each conformation [N] (int64)."""
        return self._array("molecule_index")

    @property
    def molecule_names(self) -> list[str]:
        """Name of each molecule, indexed by molecule id."""
        return [s.decode() for s in self._file["molecules/name"][()]]

    @property
    def split_codes(self) -> np.ndarray:
        """Official split tag of each conformation [N], an index into SPLIT_TAGS."""
        return self._array("split_code")

    @property
    def source_index(self) -> np.ndarray:
        """Index into ``metadata['sources']`` of each conformation [N]."""
        return self._array("source_index")

    def energies(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Energies in eV (float64) of all conformations or of ``indices`` (NaN where absent)."""
        if indices is None:
            return self._file["energy"][()]
        indices = np.asarray(indices, dtype=np.int64)
        unique, inverse = np.unique(indices, return_inverse=True)
        return _read_points(self._file["energy"], unique)[inverse]

    def read(self, indices: Sequence[int] | np.ndarray) -> ConformationBlock:
        """Conformations ``indices`` as one flat block."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_conformations):
            raise IndexError(f"conformation index out of range 0..{self.n_conformations - 1}")
        return read_block(self._file, indices, self.has_forces)

    def read_range(self, start: int, stop: int) -> ConformationBlock:
        """Conformations ``start:stop`` as one flat block (one contiguous read)."""
        return self.read(np.arange(start, stop, dtype=np.int64))

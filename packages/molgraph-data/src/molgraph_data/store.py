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
#: rows per HDF5 chunk of the per-atom arrays in the staging file
ATOM_CHUNK_ROWS = 2048
#: rows per HDF5 chunk of the per-conformation arrays in the staging file
CONF_CHUNK_ROWS = 4096

#: rows copied per step from the staging file into the final store
COPY_BLOCK_ROWS = 1 << 20

_STORE_ATTR = "molgraph_data_store"
#: the flat arrays: name, dtype, shape of one row
_ARRAYS: tuple[tuple[str, type, tuple[int, ...]], ...] = (
    ("z", np.uint8, ()),
    ("pos", np.float32, (3,)),
    ("forces", np.float32, (3,)),
    ("energy", np.float64, ()),
    ("atom_offset", np.int64, ()),
    ("molecule_index", np.int64, ()),
    ("split_code", np.uint8, ()),
    ("source_index", np.int16, ()),
)
_PER_ATOM = ("z", "pos", "forces")


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
    """Appends validated MoleculeRecords to a new store, streaming (bounded memory).

    Records go to a chunked, resizable staging file beside ``path``; ``finish`` copies every
    array block by block into contiguous datasets at ``path`` so that readers can fetch rows
    with plain positional reads. ``abort`` removes both files' handles (the caller unlinks).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.stage_path = self.path.with_name(self.path.name + ".stage")
        self._file = h5py.File(self.stage_path, "w")
        f = self._file
        for name, dtype, tail in _ARRAYS:
            f.create_dataset(
                name,
                (1 if name == "atom_offset" else 0, *tail),
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=(ATOM_CHUNK_ROWS if name in _PER_ATOM else CONF_CHUNK_ROWS, *tail),
            )
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
        for name in _PER_ATOM:
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
        """Write the final contiguous store with the molecule index and metadata; return the
        metadata. The staging file is removed."""
        notes = metadata.setdefault("notes", [])
        if self._with_forces and self._without_forces:
            notes.append(
                f"forces dropped: {self._without_forces} conformations have none "
                f"({self._with_forces} have forces)"
            )
        keep_forces = self._with_forces > 0 and self._without_forces == 0
        names = list(self._molecule_ids)
        present = np.nonzero(self._element_counts)[0]
        metadata.update(
            n_conformations=self.n_conformations,
            n_molecules=len(names),
            n_atoms_total=self.n_atoms_total,
            n_with_energy=self._with_energy,
            element_atom_counts={int(z): int(self._element_counts[z]) for z in present},
            units={"length": "Angstrom", "energy": "eV", "forces": "eV/Angstrom"},
        )
        with h5py.File(self.path, "w") as out:
            for name, dtype, _ in _ARRAYS:
                if name == "forces" and not keep_forces:
                    continue
                source = self._file[name]
                target = out.create_dataset(name, source.shape, dtype=dtype)
                step = COPY_BLOCK_ROWS
                for start in range(0, source.shape[0], step):
                    target[start : start + step] = source[start : start + step]
            group = out.create_group("molecules")
            group.create_dataset(
                "name", data=np.array(names, dtype=object), dtype=h5py.string_dtype()
            )
            group.create_dataset("n_conformations", data=np.array(self._molecule_counts, np.int64))
            out.attrs["metadata"] = json.dumps(metadata)
            out.attrs[_STORE_ATTR] = STORE_FORMAT_VERSION
        self._file.close()
        self.stage_path.unlink()
        return metadata

    def abort(self) -> None:
        """Close and remove the staging file (the caller removes ``path``)."""
        if self._file.id.valid:
            self._file.close()
        self.stage_path.unlink(missing_ok=True)


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


class BlockReader:
    """Reads conformations of a store with positional reads (``os.pread``) into its contiguous
    arrays: no HDF5 call, no memory map, so memory stays flat however large the store. The file
    descriptor opens on first use in each process; the object pickles without it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._layout: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
        with h5py.File(self.path, "r") as f:
            for name, _, tail in _ARRAYS:
                if name not in f:
                    continue
                dataset = f[name]
                offset = dataset.id.get_offset()
                if dataset.chunks is not None or (offset is None and dataset.size > 0):
                    raise DataError(self.path, f"array {name!r} is not contiguous; reconvert it")
                self._layout[name] = (offset or 0, dataset.dtype, tail)
        self.has_forces = "forces" in self._layout
        self._fd: int | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"], state["_pid"] = None, None
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's file descriptor."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _rows(self, name: str, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Rows ``starts[i] : starts[i] + counts[i]`` of array ``name``, concatenated."""
        offset, dtype, tail = self._layout[name]
        row_bytes = dtype.itemsize * int(np.prod(tail, dtype=np.int64))
        fd, preadv = self._descriptor(), os.preadv
        if starts.size > 1:
            # merge touching ranges: a contiguous read becomes one call
            ends = starts + counts
            new_run = np.ones(starts.size, dtype=bool)
            new_run[1:] = starts[1:] != ends[:-1]
            if not new_run.all():
                first = np.nonzero(new_run)[0]
                starts = starts[first]
                counts = np.add.reduceat(counts, first)
        out = np.empty((int(counts.sum()), *tail), dtype=dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        at = 0
        for s, n in zip(starts.tolist(), counts.tolist(), strict=True):
            size = n * row_bytes
            if preadv(fd, [view[at : at + size]], offset + s * row_bytes) != size:
                raise DataError(self.path, f"array {name!r} is truncated (file cut short?)")
            at += size
        return out

    def read(self, indices: np.ndarray) -> ConformationBlock:
        """Conformations ``indices`` (any order, repeats allowed) as one block."""
        indices = np.asarray(indices, dtype=np.int64)
        ones = np.ones(indices.size, dtype=np.int64)
        bounds = self._rows("atom_offset", indices, ones + 1).reshape(-1, 2)
        starts, counts = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
        return ConformationBlock(
            z=self._rows("z", starts, counts).astype(np.int64),
            pos=self._rows("pos", starts, counts),
            forces=self._rows("forces", starts, counts) if self.has_forces else None,
            energy=self._rows("energy", indices, ones),
            n_atoms=counts,
            mol_id=self._rows("molecule_index", indices, ones),
            conf_id=indices,
        )

    def read_energies(self, indices: np.ndarray) -> np.ndarray:
        """Energies (eV) of conformations ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        return self._rows("energy", indices, np.ones(indices.size, dtype=np.int64))


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
        self._reader = BlockReader(self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file."""
        if self._file.id.valid:
            self._file.close()
        self._reader.close()

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
        indices = self._check(indices)
        return self._reader.read_energies(indices)

    def energy_range(self, chunk: int = 1 << 20) -> tuple[float, float]:
        """Smallest and largest energy in eV, streamed (NaN, NaN without energies)."""
        low, high = np.inf, -np.inf
        dataset = self._file["energy"]
        for start in range(0, self.n_conformations, chunk):
            values = dataset[start : start + chunk]
            values = values[~np.isnan(values)]
            if values.size:
                low, high = min(low, float(values.min())), max(high, float(values.max()))
        return (low, high) if low <= high else (float("nan"), float("nan"))

    def _check(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_conformations):
            raise IndexError(f"conformation index out of range 0..{self.n_conformations - 1}")
        return indices

    def read(self, indices: Sequence[int] | np.ndarray) -> ConformationBlock:
        """Conformations ``indices`` as one flat block."""
        return self._reader.read(self._check(indices))

    def read_range(self, start: int, stop: int) -> ConformationBlock:
        """Conformations ``start:stop`` as one flat block (one slice per array)."""
        start, stop = max(0, start), min(stop, self.n_conformations)
        stop = max(start, stop)
        f = self._file
        offsets = f["atom_offset"][start : stop + 1]
        a0, a1 = int(offsets[0]), int(offsets[-1])
        return ConformationBlock(
            z=f["z"][a0:a1].astype(np.int64),
            pos=f["pos"][a0:a1],
            forces=f["forces"][a0:a1] if self.has_forces else None,
            energy=f["energy"][start:stop],
            n_atoms=np.diff(offsets),
            mol_id=f["molecule_index"][start:stop],
            conf_id=np.arange(start, stop, dtype=np.int64),
        )

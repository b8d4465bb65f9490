"""Lazy torch Dataset over a store, the collate into PyG batches, and a seeded DataLoader."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch_geometric.data import Batch

from .store import BlockReader, ConformationBlock, Store

PathLike = str | os.PathLike[str]


class ConformationDataset(Dataset):
    """Conformations ``indices`` (default: all) of a store, read lazily.

    The store file is opened on first access in each process (DataLoader workers included)
    and ``__getitems__`` reads a whole batch at once, so nothing but the index array is held
    in memory. An item is a ConformationBlock of one conformation; a batch is one block.
    """

    def __init__(
        self, store_path: PathLike, indices: Sequence[int] | np.ndarray | None = None
    ) -> None:
        self.store_path = Path(store_path)
        with Store(self.store_path) as store:
            n = store.n_conformations
        # all conformations: no index array at all, so memory does not grow with the store
        self.indices = None if indices is None else np.asarray(indices, np.int64)
        self._length = n if self.indices is None else int(self.indices.size)
        idx = self.indices
        if idx is not None and idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{self.store_path}: indices outside 0..{n - 1}")
        self._reader = BlockReader(self.store_path)

    @property
    def has_forces(self) -> bool:
        """True when the store has forces."""
        return self._reader.has_forces

    def __len__(self) -> int:
        return self._length

    def _rows(self, items: Sequence[int] | np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        if items.size and (items.min() < -self._length or items.max() >= self._length):
            raise IndexError(f"item outside 0..{self._length - 1}")
        items = np.where(items < 0, items + self._length, items)
        return items if self.indices is None else self.indices[items]

    def __getitem__(self, item: int) -> ConformationBlock:
        return self._reader.read(self._rows([item]))

    def __getitems__(self, items: Sequence[int]) -> ConformationBlock:
        return self._reader.read(self._rows(items))


def _concat(blocks: Sequence[ConformationBlock]) -> ConformationBlock:
    if len(blocks) == 1:
        return blocks[0]
    # Forces only where every block has them (blocks of several stores may differ), as a
    # store keeps forces only where every conformation has them.
    with_forces = all(b.forces is not None for b in blocks)
    forces = np.concatenate([b.forces for b in blocks]) if with_forces else None
    return ConformationBlock(
        z=np.concatenate([b.z for b in blocks]),
        pos=np.concatenate([b.pos for b in blocks]),
        forces=forces,
        energy=np.concatenate([b.energy for b in blocks]),
        n_atoms=np.concatenate([b.n_atoms for b in blocks]),
        mol_id=np.concatenate([b.mol_id for b in blocks]),
        conf_id=np.concatenate([b.conf_id for b in blocks]),
    )


def collate_conformations(items: ConformationBlock | Sequence[ConformationBlock]) -> Batch:
    """A PyG Batch: ``z`` int64 [N], ``pos`` float32 [N, 3] Å, ``batch`` int64 [N], ``energy``
    float64 [B] eV (NaN where absent), ``forces`` float32 [N, 3] eV/Å (when the store has them),
    ``n_atoms``, ``mol_id``, ``conf_id`` int64 [B]."""
    block = items if isinstance(items, ConformationBlock) else _concat(list(items))
    n_atoms = torch.from_numpy(block.n_atoms.astype(np.int64))
    n_graphs = int(n_atoms.numel())
    ptr = torch.zeros(n_graphs + 1, dtype=torch.int64)
    torch.cumsum(n_atoms, 0, out=ptr[1:])
    fields: dict[str, torch.Tensor] = {
        "z": torch.from_numpy(block.z.astype(np.int64)),
        "pos": torch.from_numpy(np.ascontiguousarray(block.pos, dtype=np.float32)),
        "batch": torch.from_numpy(np.repeat(np.arange(n_graphs, dtype=np.int64), block.n_atoms)),
        "energy": torch.from_numpy(block.energy.astype(np.float64)),
        "n_atoms": n_atoms,
        "mol_id": torch.from_numpy(block.mol_id.astype(np.int64)),
        "conf_id": torch.from_numpy(block.conf_id.astype(np.int64)),
    }
    if block.forces is not None:
        fields["forces"] = torch.from_numpy(np.ascontiguousarray(block.forces, dtype=np.float32))
    batch = Batch(ptr=ptr, **fields)
    batch._num_graphs = n_graphs
    # the bookkeeping Batch.from_data_list leaves, so get_example/to_data_list work; shared
    # tensors keep the batch cheap to send from a DataLoader worker
    per_graph = torch.arange(n_graphs + 1)
    no_increment = torch.zeros(n_graphs, dtype=torch.int64)
    keys = [key for key in fields if key != "batch"]
    batch._slice_dict = {key: (ptr if key in {"z", "pos", "forces"} else per_graph) for key in keys}
    batch._inc_dict = dict.fromkeys(keys, no_increment)
    return batch


class BatchIndexSampler(Sampler[np.ndarray]):
    """Batches of positions 0..n-1 as int64 arrays: shuffled by ``seed`` (a new permutation
    each epoch, the same for the same seed and epoch) or in order. The permutation is one
    numpy array (4-8 bytes per conformation), never a Python list. ``rank``/``world_size``
    give each of several processes every ``world_size``-th batch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size={batch_size} or rank={rank}/{world_size}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` next (otherwise each pass advances by one)."""
        self.epoch = epoch

    def _n_batches(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __len__(self) -> int:
        return len(range(self.rank, self._n_batches(), self.world_size))

    def __iter__(self) -> Iterator[np.ndarray]:
        dtype = np.int32 if self.n < 2**31 else np.int64
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).astype(dtype)
        else:
            order = np.arange(self.n, dtype=dtype)
        self.epoch += 1
        for b in range(self.rank, self._n_batches(), self.world_size):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].astype(np.int64)


def _keep_block(block: ConformationBlock) -> ConformationBlock:
    """Worker-side collate: hand the numpy block over as it is (cheap to pickle)."""
    return block


class ConformationLoader(DataLoader):
    """A DataLoader whose workers read numpy blocks and whose own process turns each into a
    PyG Batch: sending a Batch of many small tensors between processes costs more than
    reading it."""

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for block in super().__iter__():
            yield collate_conformations(block)


def make_dataloader(
    store_path: PathLike,
    indices: Sequence[int] | np.ndarray | None,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> ConformationLoader:
    """A DataLoader of collated batches (see collate_conformations) whose order depends only
    on ``seed`` and the epoch, with or without workers; ``rank``/``world_size`` shard the
    batches between data-parallel processes."""
    dataset = ConformationDataset(store_path, indices)
    sampler = BatchIndexSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    return ConformationLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_keep_block,
        persistent_workers=num_workers > 0,
    )

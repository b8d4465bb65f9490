"""Data for pretraining: several stores mixed, split 95/5 within each molecule, served in
seeded batches that are the same for any number of processes.

A conformation is addressed by its *noise key* ``store_number * 2**40 + row``: unique across
the mixed stores, and the key from which its noise is drawn. The training order of epoch
``e`` is a permutation seeded by ``(seed, e)``; global batch ``b`` holds positions
``b*B .. (b+1)*B`` of it and rank ``r`` of ``W`` processes takes every W-th of them, so the
union over ranks is exactly the one-process batch and a resumed run can start at any batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from molgraph_data import ConformationDataset, Store, collate_conformations
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Batch

from ..errors import DenoisepotError

#: stores are numbered in the upper bits of a noise key; rows fit in the lower 40
KEY_STORE_SHIFT = 40


@dataclass
class StoreSplit:
    """One store's training and validation rows (sorted int64 arrays)."""

    path: Path
    train: np.ndarray
    val: np.ndarray


class MixedConformations(Dataset):
    """Conformations of several stores addressed by one position in ``[0, total)``.

    Position ``p`` falls in store ``k`` where ``offsets[k] <= p < offsets[k + 1]``; a batch is
    read per store in one pass (``__getitems__``) and collated into a PyG Batch that also
    carries ``noise_key [B]``.
    """

    def __init__(self, parts: Sequence[tuple[Path, np.ndarray]]) -> None:
        self.datasets = [ConformationDataset(path, rows) for path, rows in parts]
        sizes = [len(dataset) for dataset in self.datasets]
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item: int) -> Batch:
        return self.__getitems__([item])

    def __getitems__(self, items: Sequence[int]) -> Batch:
        positions = np.asarray(items, dtype=np.int64)
        store_of = np.searchsorted(self.offsets, positions, side="right") - 1
        blocks, keys = [], []
        for k in np.unique(store_of):
            local = positions[store_of == k] - self.offsets[k]
            block = self.datasets[k].__getitems__(local)
            blocks.append(block)
            keys.append((int(k) << KEY_STORE_SHIFT) + block.conf_id.astype(np.int64))
        batch = collate_conformations(blocks)
        batch.noise_key = torch.from_numpy(np.concatenate(keys))
        return batch


def _identity(batch: Batch) -> Batch:
    return batch


def epoch_batches(
    n_items: int, global_batch_size: int, *, seed: int, epoch: int, rank: int, world_size: int,
    start: int = 0,
) -> list[np.ndarray]:
    """This rank's part of the training batches of ``epoch`` from global batch ``start`` on
    (full batches only, so every rank takes the same number of steps)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    n_batches = n_items // global_batch_size
    return [
        order[b * global_batch_size:(b + 1) * global_batch_size][rank::world_size]
        for b in range(start, n_batches)
    ]


def validation_batches(
    n_items: int, batch_size: int, *, rank: int, world_size: int
) -> list[np.ndarray]:
    """This rank's share of the validation positions, in order, in batches (the last may
    be smaller; no position is repeated or dropped)."""
    mine = np.arange(rank, n_items, world_size, dtype=np.int64)
    return [mine[i:i + batch_size] for i in range(0, mine.size, batch_size)]


def loader(
    dataset: MixedConformations, batches: list[np.ndarray], num_workers: int
) -> DataLoader:
    """A DataLoader that yields exactly ``batches`` (lists of positions), collated."""
    return DataLoader(
        dataset, batch_sampler=[b.tolist() for b in batches], collate_fn=_identity,
        num_workers=num_workers, persistent_workers=False,
    )


def iterate(
    dataset: MixedConformations, batches: list[np.ndarray], num_workers: int
) -> Iterator[Batch]:
    """Batches in order; read in the main process when ``num_workers`` is 0."""
    if num_workers == 0:
        for positions in batches:
            yield dataset.__getitems__(positions)
        return
    yield from loader(dataset, batches, num_workers)


def split_stores(
    stores: Sequence[Path],
    *,
    val_fraction: float,
    seed: int,
    train_size: int | float | None = None,
    val_size: int | float | None = None,
) -> list[StoreSplit]:
    """Split every store within each molecule into train/val (``val_fraction`` of every
    molecule's conformations), then optionally subsample each part per store."""
    from molgraph_data import split_within_molecules, subset

    if not 0.0 < val_fraction < 1.0:
        raise DenoisepotError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    splits = []
    for number, path in enumerate(stores):
        with Store(path) as store:
            if store.n_conformations == 0:
                raise DenoisepotError(
                    f"{path}: the store holds no conformations; pass a file with "
                    "conformations to --data"
                )
            parts = split_within_molecules(store, (1.0 - val_fraction, val_fraction), seed)
        train, val = parts["train"], parts["val"]
        if train_size is not None:
            train = subset(train, min(train_size, train.size) if isinstance(train_size, int)
                           else train_size, seed=seed + number)
        if val_size is not None:
            val = subset(val, min(val_size, val.size) if isinstance(val_size, int)
                         else val_size, seed=seed + number + 7919)
        splits.append(StoreSplit(Path(path), train, val))
    return splits


def save_splits(path: Path, splits: Sequence[StoreSplit]) -> Path:
    """Write the split of every store into one .npz (``store<k>_train``/``store<k>_val``)
    beside the run's output."""
    from molgraph_data import save_split

    arrays = {}
    for k, part in enumerate(splits):
        arrays[f"store{k}_train"] = part.train
        arrays[f"store{k}_val"] = part.val
    return save_split(path, arrays)


def elements_seen(stores: Sequence[Path]) -> list[int]:
    """Sorted atomic numbers present in any of ``stores``."""
    seen: set[int] = set()
    for path in stores:
        with Store(path) as store:
            seen.update(int(z) for z in store.elements)
    return sorted(seen)


def store_provenance(path: Path, source: Path) -> dict[str, object]:
    """Where a store came from (source file, formats, level of theory, counts), plain data."""
    with Store(path) as store:
        metadata = store.metadata
        return {
            "source": os.fspath(source),
            "store": os.fspath(path),
            "n_conformations": store.n_conformations,
            "n_molecules": store.n_molecules,
            "sources": [
                {key: value for key, value in entry.items()
                 if isinstance(value, str | int | float | bool)}
                for entry in metadata.get("sources", [])
            ],
        }

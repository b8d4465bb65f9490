"""Index splits of a store: within molecules, by molecule, official, subsets; saved as .npz."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError
from .store import SPLIT_TAGS, Store, split_code

PathLike = str | os.PathLike[str]
StoreLike = Store | PathLike


def _open(store: StoreLike) -> tuple[Store, bool]:
    return (store, False) if isinstance(store, Store) else (Store(store), True)


def _names(fractions: Sequence[float], where: Path | None) -> list[str]:
    if len(fractions) not in (2, 3) or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise DataError(
            where,
            f"split fractions {tuple(fractions)} must be two or three non-negative "
            "numbers that sum to 1 (e.g. 0.8 0.1 0.1)",
        )
    return ["train", "val", "test"][: len(fractions)]


def _cut(order: np.ndarray, group: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Part (0, 1, 2) of each element of ``order``, cutting every group at the fractions."""
    counts = np.bincount(group)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(order.size) - first[group[order]]
    bounds = np.round(np.outer(counts, np.cumsum(fractions)[:-1])).astype(np.int64)
    size = counts[group[order]]
    part = np.zeros(order.size, dtype=np.int64)
    for b in range(bounds.shape[1]):
        part += rank >= np.minimum(bounds[group[order], b], size)
    return part


def split_within_molecules(
    store: StoreLike, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Split every molecule's conformations by ``fractions`` (keys train/val[/test]); sorted ids."""
    st, close = _open(store)
    try:
        names = _names(fractions, st.path)
        molecule = st.molecule_index
    finally:
        if close:
            st.close()
    keys = np.random.default_rng(seed).random(molecule.size)
    order = np.lexsort((keys, molecule))
    part = _cut(order, molecule, fractions)
    return {name: np.sort(order[part == k]) for k, name in enumerate(names)}


def split_by_molecule(
    store: StoreLike, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Split whole molecules by ``fractions`` of the molecule count (val/test molecules unseen)."""
    st, close = _open(store)
    try:
        names = _names(fractions, st.path)
        molecule = st.molecule_index
        n_molecules = st.n_molecules
    finally:
        if close:
            st.close()
    shuffled = np.random.default_rng(seed).permutation(n_molecules)
    bounds = np.round(np.cumsum(fractions)[:-1] * n_molecules).astype(np.int64)
    part_of_molecule = np.empty(n_molecules, dtype=np.int64)
    part_of_molecule[shuffled] = np.searchsorted(bounds, np.arange(n_molecules), side="right")
    part = part_of_molecule[molecule]
    return {name: np.nonzero(part == k)[0].astype(np.int64) for k, name in enumerate(names)}


def official_split(
    store: StoreLike, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, np.ndarray]:
    """The split the release defines: ISO17's train/val/test(/test_other) ids, or for data
    converted from separate train and test files the test file's rows as ``test`` and the
    train file's rows cut within molecules into train/val by ``val_fraction`` and ``seed``."""
    st, close = _open(store)
    try:
        codes = st.split_codes
        molecule = st.molecule_index
        path = st.path
    finally:
        if close:
            st.close()
    present = {SPLIT_TAGS[c] for c in np.unique(codes)} - {"none"}
    if not present or "train" not in present:
        raise DataError(
            path,
            "the store has no official split (its sources were not train/test files or an "
            "ISO17 release folder); split within molecules or by molecule instead",
        )
    split = {
        tag: np.nonzero(codes == split_code(tag))[0].astype(np.int64) for tag in SPLIT_TAGS[1:]
    }
    if "val" not in present:
        train = split["train"]
        keys = np.random.default_rng(seed).random(train.size)
        _, group = np.unique(molecule[train], return_inverse=True)
        order = np.lexsort((keys, group))
        part = _cut(order, group, (1.0 - val_fraction, val_fraction))
        split["train"] = np.sort(train[order[part == 0]])
        split["val"] = np.sort(train[order[part == 1]])
    return {tag: ids for tag, ids in split.items() if tag in present or tag in ("train", "val")}


def subset(indices: np.ndarray | Sequence[int], size: int | float, seed: int = 0) -> np.ndarray:
    """A random subset of ``indices``: ``size`` conformations (int) or that fraction (float)."""
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(size, float) and not isinstance(size, bool):
        if not 0.0 < size <= 1.0:
            raise DataError(None, f"subset fraction {size} must be in (0, 1]")
        count = int(round(size * indices.size))
    else:
        count = int(size)
    if not 0 <= count <= indices.size:
        raise DataError(None, f"subset of {count} from {indices.size} conformations is impossible")
    chosen = np.random.default_rng(seed).choice(indices.size, size=count, replace=False)
    return np.sort(indices[chosen])


def stratified_subset(
    indices: np.ndarray | Sequence[int],
    molecule: np.ndarray | Sequence[int],
    size: int | float,
    seed: int = 0,
) -> np.ndarray:
    """A random subset of ``indices`` that keeps every molecule's share: ``size``
    conformations (int) or that fraction (float), split over the molecules in proportion to
    their conformations (largest remainders), every molecule at least one where ``size``
    allows, and drawn at random within each. ``molecule[i]`` is the molecule of ``indices[i]``.
    With one molecule it is exactly :func:`subset` (same seed, same draw). A plain random
    draw of 50 from ANI-1's six molecules leaves out the one with 6% of the conformations
    half the time, and the model is then tested on a molecule it never saw."""
    indices = np.asarray(indices, dtype=np.int64)
    molecule = np.asarray(molecule, dtype=np.int64)
    if molecule.shape != indices.shape:
        raise DataError(None, f"{molecule.size} molecule labels for {indices.size} conformations")
    groups, group = np.unique(molecule, return_inverse=True)
    if groups.size <= 1:
        return subset(indices, size, seed)
    count = subset(np.arange(indices.size), size, seed).size  # the same checks and rounding
    available = np.bincount(group)
    share = count * available / indices.size
    quota = np.floor(share).astype(np.int64)
    leftover = count - int(quota.sum())
    quota[np.argsort(-(share - quota), kind="stable")[:leftover]] += 1
    if count >= groups.size:
        # every molecule at least one, taken from the molecules with the largest quotas
        for missing in np.nonzero(quota == 0)[0]:
            donor = int(np.argmax(quota))
            quota[donor] -= 1
            quota[missing] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.nonzero(group == g)[0], size=int(quota[g]), replace=False)
        for g in range(groups.size)
    ]
    return np.sort(indices[np.concatenate(chosen)])


def exclude(
    indices: np.ndarray | Sequence[int], other_indices: np.ndarray | Sequence[int]
) -> np.ndarray:
    """``indices`` without any of ``other_indices`` (sorted)."""
    return np.setdiff1d(np.asarray(indices, np.int64), np.asarray(other_indices, np.int64))


def save_split(path: PathLike, split: dict[str, np.ndarray]) -> Path:
    """Write a split as an .npz of int64 index arrays, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v, np.int64) for k, v in split.items()})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_split(path: PathLike) -> dict[str, np.ndarray]:
    """Read a split written by save_split."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such split file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k].astype(np.int64) for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(path, f"not a readable split file ({exc})") from None

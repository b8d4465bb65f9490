"""Splits: within molecules, by molecule, official, subsets, exclusion, saved files."""

from __future__ import annotations

from pathlib import Path

import molgraph_data as md
import numpy as np
import pytest


@pytest.fixture
def store_path(tmp_path: Path, write_ani1, ani1_group) -> Path:
    groups = {f"mol-{i}": ani1_group(n_conf=10 * (i + 1), seed=i) for i in range(6)}
    return md.convert([write_ani1(tmp_path / "a.h5", groups)], tmp_path / "store.h5")


def test_within_molecules_cuts_every_molecule(store_path: Path) -> None:
    split = md.split_within_molecules(store_path, (0.8, 0.1, 0.1), seed=0)
    assert list(split) == ["train", "val", "test"]
    everything = np.concatenate(list(split.values()))
    with md.Store(store_path) as store:
        assert np.array_equal(np.sort(everything), np.arange(store.n_conformations))
        molecule = store.molecule_index
    for m in range(6):
        sizes = [int((molecule[part] == m).sum()) for part in split.values()]
        assert sizes == [8 * (m + 1), m + 1, m + 1]  # molecule m has 10 (m + 1) conformations
    again = md.split_within_molecules(store_path, (0.8, 0.1, 0.1), seed=0)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = md.split_within_molecules(store_path, (0.8, 0.1, 0.1), seed=1)
    assert not np.array_equal(split["train"], other["train"])


def test_pretraining_95_5_has_two_parts(store_path: Path) -> None:
    split = md.split_within_molecules(store_path, (0.95, 0.05), seed=0)
    assert list(split) == ["train", "val"]
    assert split["train"].size + split["val"].size == 210


def test_by_molecule_keeps_molecules_apart(store_path: Path) -> None:
    split = md.split_by_molecule(store_path, (0.5, 0.5), seed=2)
    with md.Store(store_path) as store:
        molecule = store.molecule_index
    train_mols, val_mols = set(molecule[split["train"]]), set(molecule[split["val"]])
    assert len(train_mols) == len(val_mols) == 3 and not train_mols & val_mols
    assert split["train"].size + split["val"].size == 210


def test_bad_fractions(store_path: Path) -> None:
    with pytest.raises(md.DataError, match="must be two or three non-negative numbers"):
        md.split_within_molecules(store_path, (0.8, 0.1), seed=0)


def test_official_split_needs_tags(store_path: Path) -> None:
    with pytest.raises(md.DataError, match="store.h5: the store has no official split"):
        md.official_split(store_path)


def test_subset_and_exclude() -> None:
    indices = np.arange(100, 200)
    small = md.subset(indices, 10, seed=0)
    assert small.size == 10 and np.isin(small, indices).all()
    assert np.array_equal(small, md.subset(indices, 10, seed=0))
    assert md.subset(indices, 0.25, seed=0).size == 25
    with pytest.raises(md.DataError, match="subset of 101 from 100"):
        md.subset(indices, 101)
    kept = md.exclude(indices, np.arange(150, 300))
    assert np.array_equal(kept, np.arange(100, 150))


def test_stratified_subset_keeps_every_molecules_share() -> None:
    # ANI-1-like: six molecules, one with 3% of the conformations
    counts = np.array([2700, 1800, 450, 4235, 2880, 1440])
    molecule = np.repeat(np.arange(6), counts)
    indices = np.arange(molecule.size) + 7
    for seed in range(5):
        chosen = md.stratified_subset(indices, molecule, 50, seed=seed)
        assert chosen.size == 50 and np.unique(chosen).size == 50
        assert np.isin(chosen, indices).all()
        per_molecule = np.bincount(molecule[chosen - 7], minlength=6)
        assert (per_molecule >= 1).all()
        share = 50 * counts / counts.sum()
        assert (np.abs(per_molecule - share) < 2).all()  # proportional up to rounding
        assert np.array_equal(chosen, md.stratified_subset(indices, molecule, 50, seed=seed))
    assert md.stratified_subset(indices, molecule, 0.1, seed=0).size == round(0.1 * 13505)
    # fewer conformations than molecules: no minimum, the largest shares win
    assert md.stratified_subset(indices, molecule, 3, seed=0).size == 3
    # one molecule: exactly the plain random subset (earlier runs keep their draws)
    single = np.zeros(100, dtype=np.int64)
    assert np.array_equal(
        md.stratified_subset(np.arange(100), single, 10, seed=3), md.subset(np.arange(100), 10, 3)
    )
    with pytest.raises(md.DataError, match="subset of 101 from 100"):
        md.stratified_subset(np.arange(100), single, 101)
    with pytest.raises(md.DataError, match="5 molecule labels for 100 conformations"):
        md.stratified_subset(np.arange(100), single[:5], 10)


def test_save_and_load_split(tmp_path: Path, store_path: Path) -> None:
    split = md.split_within_molecules(store_path, seed=0)
    path = md.save_split(tmp_path / "s.npz", split)
    loaded = md.load_split(path)
    assert list(loaded) == list(split)
    assert all(np.array_equal(loaded[k], split[k]) for k in split)
    with pytest.raises(md.DataError, match="no such split file"):
        md.load_split(tmp_path / "absent.npz")

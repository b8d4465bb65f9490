"""Engine pieces: mixing stores, splits within molecules, RNG and training-state files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from denoisepot.engine.data import KEY_STORE_SHIFT, MixedConformations, split_stores
from denoisepot.engine.state import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)


@pytest.fixture(scope="module")
def two_stores(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from molgraph_data import ensure_store

    work = tmp_path_factory.mktemp("stores")
    return [ensure_store(shared_data / "ani1" / "ani_gdb_s01.h5", work),
            ensure_store(shared_data / "md17" / "ethanol_ccsd_t-train.npz", work)]


def test_mixed_stores_give_one_batch_with_distinct_noise_keys(two_stores: list[Path]) -> None:
    from molgraph_data import Store

    rows_a, rows_b = np.array([5, 100, 7000]), np.array([0, 999])
    dataset = MixedConformations([(two_stores[0], rows_a), (two_stores[1], rows_b)])
    assert len(dataset) == 5
    batch = dataset.__getitems__([4, 0, 3, 2])
    assert batch.num_graphs == 4
    keys = batch.noise_key.tolist()
    assert sorted(keys) == sorted([5, 7000, 0 + (1 << KEY_STORE_SHIFT),
                                   999 + (1 << KEY_STORE_SHIFT)])
    with Store(two_stores[1]) as store:
        ethanol = store.read([999])
    position = keys.index(999 + (1 << KEY_STORE_SHIFT))
    atoms = batch.batch == position
    assert torch.equal(batch.pos[atoms], torch.from_numpy(ethanol.pos))


def test_split_is_95_5_within_every_molecule_and_seeded(two_stores: list[Path]) -> None:
    from molgraph_data import Store

    first, again = (split_stores(two_stores, val_fraction=0.05, seed=4) for _ in range(2))
    other_seed = split_stores(two_stores, val_fraction=0.05, seed=5)
    for part, same, other in zip(first, again, other_seed, strict=True):
        assert np.array_equal(part.train, same.train) and np.array_equal(part.val, same.val)
        assert not np.array_equal(part.val, other.val)
        assert np.intersect1d(part.train, part.val).size == 0
        with Store(part.path) as store:
            molecule = store.molecule_index
            assert part.train.size + part.val.size == store.n_conformations
        for mol in np.unique(molecule):
            n_val = np.sum(molecule[part.val] == mol)
            assert n_val == round(0.05 * np.sum(molecule == mol))
    small = split_stores(two_stores, val_fraction=0.05, seed=4, train_size=100, val_size=0.5)
    assert [s.train.size for s in small] == [100, 100]
    assert all(np.isin(s.train, f.train).all() for s, f in zip(small, first, strict=True))
    assert [s.val.size for s in small] == [round(f.val.size / 2) for f in first]


def test_training_state_round_trips_rng_and_loads_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    path = save_training_state(tmp_path / "state.pt", {
        "rng": state, "model": {"w": torch.ones(2)}, "counters": {"global_step": 4}})
    loaded = load_training_state(path)
    torch.load(path, weights_only=True)
    restore_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    assert loaded["counters"]["global_step"] == 4
    assert not list(tmp_path.glob(".*tmp"))


def test_worker_processes_serve_the_same_batches(two_stores: list[Path]) -> None:
    from denoisepot.engine.data import epoch_batches, iterate

    dataset = MixedConformations([(two_stores[0], np.arange(0, 10800, 50)),
                                  (two_stores[1], np.arange(0, 1000, 10))])
    batches = epoch_batches(len(dataset), 16, seed=0, epoch=0, rank=0, world_size=1)[:4]
    in_process = list(iterate(dataset, batches, num_workers=0))
    with_workers = list(iterate(dataset, batches, num_workers=2))
    assert len(in_process) == len(with_workers) == 4
    for a, b in zip(in_process, with_workers, strict=True):
        assert torch.equal(a.noise_key, b.noise_key)
        assert torch.equal(a.pos, b.pos) and torch.equal(a.z, b.z)

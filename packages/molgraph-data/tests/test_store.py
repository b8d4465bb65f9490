"""The store round-trips every array exactly; the dataset and collate serve it lazily."""

from __future__ import annotations

import pickle
from pathlib import Path

import molgraph_data as md
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from molgraph_data.records import MoleculeRecord, validate_record
from molgraph_data.store import StoreWriter


@st.composite
def molecules(draw: st.DrawFn) -> list[MoleculeRecord]:
    """1-4 molecules of 1-6 atoms, 1-5 conformations each; atoms ≥ 1 Å apart."""
    with_forces = draw(st.booleans())
    with_energy = draw(st.booleans())
    records = []
    for m in range(draw(st.integers(1, 4))):
        n_atoms, n_conf = draw(st.integers(1, 6)), draw(st.integers(1, 5))
        z = np.array(draw(st.lists(st.integers(1, 118), min_size=n_atoms, max_size=n_atoms)))
        jitter = draw(
            st.lists(
                st.floats(-0.25, 0.25, width=32),
                min_size=n_conf * n_atoms * 3,
                max_size=n_conf * n_atoms * 3,
            )
        )
        pos = np.asarray(jitter, np.float32).reshape(n_conf, n_atoms, 3)
        pos[:, :, 0] += 2.0 * np.arange(n_atoms, dtype=np.float32)
        energy = np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=n_conf, max_size=n_conf)))
        forces = np.asarray(
            draw(
                st.lists(
                    st.floats(-50, 50, width=32),
                    min_size=n_conf * n_atoms * 3,
                    max_size=n_conf * n_atoms * 3,
                )
            ),
            np.float32,
        ).reshape(n_conf, n_atoms, 3)
        records.append(
            MoleculeRecord(
                name=f"mol{m}",
                z=z,
                pos=pos,
                energy=energy if with_energy else None,
                forces=forces if with_forces else None,
                location=f"memory:{m}",
            )
        )
    return records


def _write(records: list[MoleculeRecord], path: Path) -> Path:
    writer = StoreWriter(path)
    writer.begin_source("none")
    for record in records:
        writer.add(validate_record(record)[0])
    writer.finish({"sources": []})
    return path


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=molecules())
def test_store_round_trips_every_array(records: list[MoleculeRecord], tmp_path: Path) -> None:
    path = _write(records, tmp_path / "s.h5")
    n_conf = sum(r.n_conformations for r in records)
    with md.Store(path) as store:
        assert store.n_conformations == n_conf and store.n_molecules == len(records)
        assert store.has_forces == (records[0].forces is not None)
        assert store.has_energy == (records[0].energy is not None)
        assert store.molecule_names == [r.name for r in records]
        assert store.elements.tolist() == sorted({int(z) for r in records for z in r.z})
        order = np.random.default_rng(0).permutation(n_conf)
        block = store.read(order)
        expected = []
        for m, r in enumerate(records):
            for c in range(r.n_conformations):
                expected.append((m, r, c))
        starts = np.concatenate(([0], np.cumsum(block.n_atoms)))
        for k, i in enumerate(order):
            m, r, c = expected[i]
            atoms = slice(starts[k], starts[k + 1])
            np.testing.assert_array_equal(block.z[atoms], r.z)
            np.testing.assert_array_equal(block.pos[atoms], r.pos[c])
            if r.forces is not None:
                np.testing.assert_array_equal(block.forces[atoms], r.forces[c])
            if r.energy is not None:
                assert block.energy[k] == r.energy[c]
            else:
                assert np.isnan(block.energy[k])
            assert block.mol_id[k] == m and block.conf_id[k] == i
        np.testing.assert_array_equal(store.energies(order), block.energy)
        ranged, direct = store.read_range(1, n_conf), store.read(np.arange(1, n_conf))
        for field in ("z", "pos", "forces", "energy", "n_atoms", "mol_id", "conf_id"):
            np.testing.assert_array_equal(getattr(ranged, field), getattr(direct, field))
        np.testing.assert_array_equal(store.n_atoms, [r.z.size for _, r, _ in expected])


def _toy_store(tmp_path: Path, write_rmd17) -> Path:
    sources = [
        write_rmd17(
            tmp_path / f"rmd17_m{i}_train_01.npz", n_conf=20 + i, z=(6, 8, 1, 1)[: 2 + i], seed=i
        )
        for i in range(3)
    ]
    return md.convert(sources, tmp_path / "toy.h5")


def test_collate_fields_and_dtypes(tmp_path: Path, write_rmd17) -> None:
    path = _toy_store(tmp_path, write_rmd17)
    dataset = md.ConformationDataset(path, indices=np.array([25, 3, 60]))
    batch = md.collate_conformations(dataset.__getitems__([0, 1, 2]))
    assert batch.num_graphs == 3
    assert batch.z.dtype == torch.int64 and batch.pos.dtype == torch.float32
    assert batch.energy.dtype == torch.float64 and batch.forces.dtype == torch.float32
    assert batch.n_atoms.tolist() == [3, 2, 4]
    assert batch.batch.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert batch.conf_id.tolist() == [25, 3, 60] and batch.mol_id.tolist() == [1, 0, 2]
    with md.Store(path) as store:
        block = store.read([25, 3, 60])
    np.testing.assert_array_equal(batch.pos.numpy(), block.pos)
    # single items collate the same way as a batched read
    same = md.collate_conformations([dataset[0], dataset[1], dataset[2]])
    for key in ("z", "pos", "batch", "energy", "forces", "n_atoms", "mol_id", "conf_id"):
        assert torch.equal(same[key], batch[key])
    assert batch.get_example(1).z.tolist() == block.z[3:5].tolist()


def test_collate_without_forces(tmp_path: Path, write_ani1, ani1_group) -> None:
    src = write_ani1(tmp_path / "a.h5", {"m": ani1_group()})
    path = md.convert([src], tmp_path / "a_store.h5")
    batch = md.collate_conformations(md.ConformationDataset(path).__getitems__([0, 1]))
    assert "forces" not in batch and batch.energy.shape == (2,)


def test_dataloader_is_deterministic_with_and_without_workers(tmp_path: Path, write_rmd17) -> None:
    path = _toy_store(tmp_path, write_rmd17)

    def order(seed: int, workers: int) -> list[list[int]]:
        loader = md.make_dataloader(
            path, np.arange(60), 8, shuffle=True, seed=seed, num_workers=workers
        )
        return [b.conf_id.tolist() for b in loader]

    first = order(3, 0)
    assert first == order(3, 0) == order(3, 2)
    assert first != order(4, 0)
    assert sorted(sum(first, [])) == list(range(60))


def test_dataset_pickles_without_open_file(tmp_path: Path, write_rmd17) -> None:
    path = _toy_store(tmp_path, write_rmd17)
    dataset = md.ConformationDataset(path)
    first = dataset[5]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._reader._fd is None
    np.testing.assert_array_equal(clone[5].pos, first.pos)


def test_ensure_store_converts_once_and_reuses(tmp_path: Path, write_rmd17) -> None:
    src = write_rmd17(tmp_path / "rmd17_x_train_01.npz")
    work = tmp_path / "work"
    store = md.ensure_store(src, work)
    assert store == work / "rmd17_x_train_01.h5" and md.is_store(store)
    stamp = store.stat().st_mtime_ns
    assert md.ensure_store(src, work) == store and store.stat().st_mtime_ns == stamp
    assert md.ensure_store(store, tmp_path / "elsewhere") == store
    write_rmd17(src, n_conf=7, seed=5)  # the source changed: converted again
    with md.Store(md.ensure_store(src, work)) as again:
        assert again.n_conformations == 7


def test_batch_sampler_epochs_and_shards() -> None:
    sampler = md.BatchIndexSampler(103, 10, shuffle=True, seed=7)
    first, second = [b.tolist() for b in sampler], [b.tolist() for b in sampler]
    assert len(first) == len(sampler) == 11 and first != second
    assert sorted(sum(first, [])) == list(range(103))
    sampler.set_epoch(0)
    assert [b.tolist() for b in sampler] == first
    shards = [
        md.BatchIndexSampler(103, 10, shuffle=True, seed=7, drop_last=True, rank=r, world_size=3)
        for r in range(3)
    ]
    batches = [b.tolist() for shard in shards for b in shard]
    assert len(batches) == 10 and sum(len(s) for s in shards) == 10
    assert sorted(sum(batches, [])) == sorted(sum(first[:10], []))
    ordered = md.BatchIndexSampler(25, 10, shuffle=False, seed=0)
    assert [b.tolist() for b in ordered][-1] == list(range(20, 25))


def _block(n_atoms: int, with_forces: bool) -> md.ConformationBlock:
    rng = np.random.default_rng(n_atoms)
    return md.ConformationBlock(
        z=np.ones(n_atoms, dtype=np.int64),
        pos=rng.normal(size=(n_atoms, 3)).astype(np.float32),
        forces=rng.normal(size=(n_atoms, 3)).astype(np.float32) if with_forces else None,
        energy=np.array([-1.0]),
        n_atoms=np.array([n_atoms]),
        mol_id=np.array([0]),
        conf_id=np.array([0]),
    )


def test_collating_blocks_with_and_without_forces_keeps_forces_only_when_all_have_them():
    mixed = md.collate_conformations([_block(2, True), _block(3, False)])
    assert "forces" not in mixed and mixed.pos.shape == (5, 3)
    mixed_other_order = md.collate_conformations([_block(3, False), _block(2, True)])
    assert "forces" not in mixed_other_order
    both = md.collate_conformations([_block(2, True), _block(3, True)])
    assert both.forces.shape == (5, 3)

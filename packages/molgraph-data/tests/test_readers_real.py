"""Acceptance on the real release-format samples: counts, exact unit conversion, round trips."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import h5py
import molgraph_data as md
import numpy as np
import pytest
from molgraph_data import units


def test_ani1_s01_counts_and_exact_energies(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "ani1" / "ani_gdb_s01.h5"
    assert md.detect_format(src) == "ani1"
    out = md.convert([src], tmp_path / "s01.h5")
    with md.Store(out) as store, h5py.File(src) as raw:
        assert store.n_conformations == 10_800 and store.n_molecules == 3
        assert store.elements.tolist() == [1, 6, 7, 8]
        assert not store.has_forces and store.has_energy
        assert store.metadata["sources"][0]["source_units"]["energy"] == "Hartree"
        row = 0
        for mol, name in enumerate(store.molecule_names):
            group = raw[name]
            hartree = group["energies"][()]
            n = hartree.size
            idx = np.arange(row, row + n)
            assert (store.molecule_index[idx] == mol).all()
            np.testing.assert_allclose(
                store.energies(idx), hartree * 27.211386245988, rtol=1e-12, atol=0
            )
            block = store.read(idx)
            np.testing.assert_array_equal(block.pos, group["coordinates"][()].reshape(-1, 3))
            symbols = [s.decode() for s in group["species"][()]]
            expected_z = [{"H": 1, "C": 6, "N": 7, "O": 8}[s] for s in symbols] * n
            np.testing.assert_array_equal(block.z, expected_z)
            row += n


def test_ani1_s02_counts_and_high_energy_switch(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "ani1" / "gdb_HC_s02.h5"
    with md.Store(md.convert([src], tmp_path / "s02.h5")) as store:
        assert store.n_conformations == 17_109 and store.n_molecules == 3
    with md.Store(md.convert([src], tmp_path / "s02he.h5", high_energy=True)) as store:
        # coordinatesHE adds 171 conformations to the first molecule, none to the others
        assert store.n_conformations == 17_109 + 171 and store.n_molecules == 3
        with h5py.File(src) as raw:
            he = raw["gdb11_s02/gdb11_s02-0/energiesHE"][()]
        first = np.nonzero(store.molecule_index == 0)[0]
        np.testing.assert_allclose(
            store.energies(first[-171:]), he * units.HARTREE_IN_EV, rtol=1e-12
        )


def test_spice_bohr_and_hartree_converted(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "spice" / "SPICE-1.1.4_n2.hdf5"
    assert md.detect_format(src) == "spice"
    with md.Store(md.convert([src], tmp_path / "spice.h5")) as store, h5py.File(src) as raw:
        assert store.n_conformations == 55 and store.has_forces
        assert store.elements.tolist() == [1, 6, 7, 11]
        block = store.read(np.arange(55))
        names = store.molecule_names
        bohr = np.concatenate([raw[n]["conformations"][()].reshape(-1, 3) for n in names])
        expected = (bohr.astype(np.float64) * 0.529177210903).astype(np.float32)
        np.testing.assert_array_equal(block.pos, expected)
        gradient = np.concatenate([raw[n]["dft_total_gradient"][()].reshape(-1, 3) for n in names])
        factor = units.HARTREE_IN_EV / units.BOHR_IN_ANGSTROM
        np.testing.assert_allclose(block.forces, -gradient * factor, rtol=1e-6)
        hartree = np.concatenate([raw[n]["dft_total_energy"][()] for n in names])
        np.testing.assert_allclose(block.energy, hartree * units.HARTREE_IN_EV, rtol=1e-12)
        np.testing.assert_array_equal(
            block.z,
            np.concatenate(
                [
                    np.tile(raw[n]["atomic_numbers"][()], 50 if i == 0 else 5)
                    for i, n in enumerate(names)
                ]
            ),
        )
    formation = md.convert([src], tmp_path / "f.h5", energy="formation", subsets=["DES370K"])
    with md.Store(formation) as store, h5py.File(src) as raw:
        assert store.n_conformations == 5 and store.molecule_names == ["C#C.[Na+]"]
        np.testing.assert_allclose(
            store.energies(), raw["C#C.[Na+]/formation_energy"][()] * units.HARTREE_IN_EV
        )


def test_ani1x_property_sets_mask_nan(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "ani1x" / "ani1x_sample_n5.h5"
    assert md.detect_format(src) == "ani1x"
    with md.Store(md.convert([src], tmp_path / "dz.h5")) as store, h5py.File(src) as raw:
        assert store.n_conformations == 8 and store.n_molecules == 5 and store.has_forces
        assert store.metadata["n_dropped_nan"] == 0
        hartree = np.concatenate([raw[n]["wb97x_dz.energy"][()] for n in store.molecule_names])
        np.testing.assert_allclose(store.energies(), hartree * units.HARTREE_IN_EV, rtol=1e-12)
        forces = np.concatenate(
            [raw[n]["wb97x_dz.forces"][()].reshape(-1, 3) for n in store.molecule_names]
        )
        np.testing.assert_allclose(
            store.read(np.arange(8)).forces, forces * units.HARTREE_IN_EV, rtol=1e-6
        )
        n_cc = sum(int(np.isfinite(raw[n]["ccsd(t)_cbs.energy"][()]).sum()) for n in raw)
    cc = md.convert([src], tmp_path / "cc.h5", property_set="ccsd(t)_cbs")
    with md.Store(cc) as store:
        assert store.n_conformations == n_cc < 8
        assert store.metadata["n_dropped_nan"] == 8 - n_cc
        assert not store.has_forces
        assert store.metadata["sources"][0]["level_of_theory"] == "CCSD(T)*/CBS"
    with md.Store(md.convert([src], tmp_path / "tz.h5", property_set="wb97x_tz")) as store:
        assert store.n_conformations == 8


def test_rmd17_train_and_test_files_give_official_split(shared_data: Path, tmp_path: Path) -> None:
    train = shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"
    test = shared_data / "rmd17" / "rmd17_ethanol_test_01.npz"
    assert md.detect_format(train) == "rmd17"
    out = md.convert([train, test], tmp_path / "eth.h5")
    with md.Store(out) as store:
        assert store.n_conformations == 2_000 and store.n_molecules == 1 and store.has_forces
        assert store.molecule_names == ["ethanol"]
        block = store.read(np.arange(2_000))
        raw = [np.load(train), np.load(test)]
        kcal_forces = np.concatenate([r["forces"].reshape(-1, 3) for r in raw])
        np.testing.assert_allclose(block.forces, kcal_forces * units.KCAL_PER_MOL_IN_EV, rtol=1e-6)
        kcal = np.concatenate([r["energies"] for r in raw])
        np.testing.assert_allclose(block.energy, kcal * units.KCAL_PER_MOL_IN_EV, rtol=1e-12)
        coords = np.concatenate([r["coords"].reshape(-1, 3) for r in raw]).astype(np.float32)
        np.testing.assert_array_equal(block.pos, coords)
        split = md.official_split(store, val_fraction=0.1, seed=0)
    assert {k: v.size for k, v in split.items()} == {"train": 900, "val": 100, "test": 1_000}
    np.testing.assert_array_equal(split["test"], np.arange(1_000, 2_000))
    assert np.intersect1d(split["train"], split["val"]).size == 0
    assert np.array_equal(np.union1d(split["train"], split["val"]), np.arange(1_000))


def test_md17_sgdml_npz(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "md17" / "ethanol_ccsd_t-train.npz"
    assert md.detect_format(src) == "sgdml"
    with md.Store(md.convert([src], tmp_path / "md17.h5")) as store:
        raw = np.load(src)
        assert store.n_conformations == 1_000 and store.molecule_names == ["ethanol_ccsd"]
        assert store.metadata["sources"][0]["level_of_theory"] == "Psi4: CCSD(T), cc-pVTZ"
        np.testing.assert_allclose(
            store.energies(), raw["E"].reshape(-1) * units.KCAL_PER_MOL_IN_EV, rtol=1e-12
        )
        np.testing.assert_allclose(
            store.read(np.arange(1000)).forces,
            raw["F"].reshape(-1, 3) * units.KCAL_PER_MOL_IN_EV,
            rtol=1e-6,
        )


def _md22_like(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """The same 3 frames of a 42-atom system as sGDML npz and as MD22 extended XYZ."""
    rng = np.random.default_rng(1)
    n_atoms, n_conf = 42, 3
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    R = 1.6 * grid + rng.uniform(-0.1, 0.1, (n_conf, n_atoms, 3))
    z = rng.choice([1, 6, 7, 8], n_atoms)
    E = -6.2e5 + rng.standard_normal((n_conf, 1))
    F = rng.standard_normal((n_conf, n_atoms, 3))
    npz = tmp_path / "md22_Ac-Ala3-NHMe.npz"
    np.savez(npz, R=R, z=z, E=E, F=F, name=np.array("Ac-Ala3-NHMe"), theory=np.array("PBE+MBD"))
    xyz = tmp_path / "md22_Ac-Ala3-NHMe.xyz"
    symbols = {1: "H", 6: "C", 7: "N", 8: "O"}
    with open(xyz, "w") as handle:
        for c in range(n_conf):
            handle.write(f"{n_atoms}\nEnergy={float(E[c, 0])!r}\n")
            for a in range(n_atoms):
                values = " ".join(repr(float(v)) for v in (*R[c, a], *F[c, a]))
                handle.write(f"{symbols[int(z[a])]} {values}\n")
    return npz, xyz, {"R": R, "z": z, "E": E, "F": F}


def test_md22_npz_and_extended_xyz_agree(tmp_path: Path) -> None:
    npz, xyz, raw = _md22_like(tmp_path)
    assert md.detect_format(npz) == "sgdml" and md.detect_format(xyz) == "md22-xyz"
    with (
        md.Store(md.convert([npz], tmp_path / "a.h5")) as a,
        md.Store(md.convert([xyz], tmp_path / "b.h5")) as b,
    ):
        assert a.n_conformations == b.n_conformations == 3
        ba, bb = a.read(np.arange(3)), b.read(np.arange(3))
        for field in ("z", "pos", "forces", "energy", "n_atoms"):
            np.testing.assert_array_equal(getattr(ba, field), getattr(bb, field))
        np.testing.assert_allclose(
            ba.energy, raw["E"].reshape(-1) * units.KCAL_PER_MOL_IN_EV, rtol=1e-12
        )
        np.testing.assert_array_equal(ba.pos, raw["R"].reshape(-1, 3).astype(np.float32))


def test_ase_extxyz_with_custom_keys(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.io import write

    frames = []
    rng = np.random.default_rng(2)
    for i in range(4):
        n_atoms = 3 if i < 2 else 5
        positions = np.zeros((n_atoms, 3))
        positions[:, 0] = 1.4 * np.arange(n_atoms)
        atoms = Atoms("OH2" if i < 2 else "CH4", positions=positions)
        atoms.info["dft_energy"] = -10.0 * (i + 1)
        atoms.arrays["dft_forces"] = rng.standard_normal((len(atoms), 3))
        frames.append(atoms)
    path = tmp_path / "mine.extxyz"
    write(path, frames, format="extxyz")
    assert md.detect_format(path) == "ase"
    out = md.convert(
        [path],
        tmp_path / "mine.h5",
        energy_key="dft_energy",
        forces_key="dft_forces",
        energy_unit="kcal/mol",
    )
    with md.Store(out) as store:
        assert store.n_conformations == 4 and store.molecule_names == ["H2O", "CH4"]
        np.testing.assert_allclose(
            store.energies(), -10.0 * np.arange(1, 5) * units.KCAL_PER_MOL_IN_EV, rtol=1e-12
        )
        forces = np.concatenate([f.arrays["dft_forces"] for f in frames])
        np.testing.assert_allclose(
            store.read(np.arange(4)).forces, forces * units.KCAL_PER_MOL_IN_EV, rtol=1e-6
        )
    with pytest.raises(md.DataError, match="frame 0: no energy under key 'total'"):
        md.convert([path], tmp_path / "bad.h5", energy_key="total")
    assert not (tmp_path / "bad.h5").exists()
    # without the keys, a file without 'energy'/'forces' holds positions only
    with md.Store(md.convert([path], tmp_path / "positions.h5")) as store:
        assert not store.has_energy and not store.has_forces
        assert np.isnan(store.energies()).all()


def _copy_rows(source: Path, target: Path, ids: list[int]) -> None:
    import ase.db

    with ase.db.connect(str(source)) as src, ase.db.connect(str(target), append=False) as dst:
        for i in ids:
            row = src.get(id=i)
            dst.write(row.toatoms(), key_value_pairs=row.key_value_pairs, data=row.data)


def test_iso17_sample_db_and_release_folder_official_split(
    shared_data: Path, tmp_path: Path
) -> None:
    src = shared_data / "iso17" / "iso17_sample.db"
    assert md.detect_format(src) == "iso17"
    with md.Store(md.convert([src], tmp_path / "iso.h5")) as store:
        assert store.n_conformations == 40 and store.has_forces
        con = sqlite3.connect(src)
        assert con.execute("select count(*) from systems").fetchone()[0] == 40
        con.close()
        import ase.db

        energies = [row.total_energy for row in ase.db.connect(str(src)).select()]
        np.testing.assert_array_equal(store.energies(), energies)
        with pytest.raises(md.DataError, match="no official split"):
            md.official_split(store)
    # a release folder made of the sample's rows: 30 reference, 5 test_within, 5 test_other
    folder = tmp_path / "iso17"
    folder.mkdir()
    _copy_rows(src, folder / "reference.db", list(range(1, 31)))
    _copy_rows(src, folder / "test_within.db", list(range(31, 36)))
    _copy_rows(src, folder / "test_other.db", list(range(36, 41)))
    (folder / "train_ids.txt").write_text("\n".join(str(i) for i in range(1, 21)) + "\n")
    (folder / "validation_ids.txt").write_text("\n".join(str(i) for i in range(21, 28)) + "\n")
    assert md.detect_format(folder) == "iso17"
    with md.Store(md.convert([folder], tmp_path / "iso17.h5")) as store:
        assert store.n_conformations == 40
        split = md.official_split(store)
    np.testing.assert_array_equal(split["train"], np.arange(0, 20))
    np.testing.assert_array_equal(split["val"], np.arange(20, 27))
    np.testing.assert_array_equal(split["test"], np.arange(30, 35))
    np.testing.assert_array_equal(split["test_other"], np.arange(35, 40))
    shutil.rmtree(folder)

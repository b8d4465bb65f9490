"""The real-data benchmark generates pretraining geometries of each rMD17 molecule from a
SMILES; they must be the molecule rMD17 holds (the same atoms bonded the same way), or the
pretraining measures transfer from another molecule. Checked against the samples."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data_comparison.py"
#: heavy atoms closer than this are bonded (in the rMD17 samples of these molecules bonded
#: heavy atoms stay within 1.78 Å and non-bonded ones at least 2.10 Å apart)
HEAVY_BOND_A = 1.9


def _benchmark():
    spec = importlib.util.spec_from_file_location("real_data_comparison", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _signature_from_smiles(smiles: str) -> Counter:
    """Every heavy atom as (element, hydrogens, heavy neighbours), counted."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Counter(
        (atom.GetAtomicNum(), atom.GetTotalNumHs(), atom.GetDegree()) for atom in mol.GetAtoms()
    )


def _signature_from_geometry(z: np.ndarray, pos: np.ndarray) -> Counter:
    """The same from one conformation: each H counts for its nearest heavy atom."""
    heavy = np.flatnonzero(z > 1)
    hydrogens = np.flatnonzero(z == 1)
    distance = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    owner = heavy[np.argmin(distance[np.ix_(hydrogens, heavy)], axis=1)]
    h_count = Counter(owner.tolist())
    between = distance[np.ix_(heavy, heavy)]
    degree = ((between < HEAVY_BOND_A) & (between > 0)).sum(axis=1)
    return Counter((int(z[i]), h_count[i], int(d)) for i, d in zip(heavy, degree, strict=True))


@pytest.mark.parametrize("molecule", ["ethanol", "malonaldehyde", "uracil"])
def test_generated_geometries_are_the_rmd17_molecule(shared_data: Path, molecule: str) -> None:
    benchmark = _benchmark()
    assert molecule in benchmark.RMD17_MOLECULES
    sample = np.load(shared_data / "rmd17" / f"rmd17_{molecule}_train_01.npz")
    z, coords = sample["nuclear_charges"], sample["coords"]
    expected = _signature_from_smiles(benchmark.RMD17_SMILES[molecule])
    # every 50th conformation: the bonding holds along the whole trajectory
    for pos in coords[::50]:
        assert _signature_from_geometry(z, pos) == expected


def test_geometry_signature_tells_tautomers_apart() -> None:
    """The check above can fail: the enol and the dialdehyde of malonaldehyde differ."""
    assert _signature_from_smiles("OC=CC=O") != _signature_from_smiles("O=CCC=O")


def test_generated_store_name_follows_the_smiles(tmp_path: Path, monkeypatch) -> None:
    """A store generated from other SMILES (an earlier, wrong one) is not reused."""
    benchmark = _benchmark()
    made: list[Path] = []

    def fake_generate(specs, recipe, out, description):
        made.append(out)
        return out

    import denoisepot.datagen as datagen

    monkeypatch.setattr(datagen, "generate_store", fake_generate)
    first = benchmark._generated(["malonaldehyde"], 10, tmp_path)
    monkeypatch.setitem(benchmark.RMD17_SMILES, "malonaldehyde", "OC=CC=O")
    second = benchmark._generated(["malonaldehyde"], 10, tmp_path)
    assert first != second
    assert made == [first, second]

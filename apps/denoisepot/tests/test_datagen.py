"""Built-in data generation: determinism, units, labels against tblite, cache repair, bad input."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from denoisepot.cli.generate import register
from denoisepot.datagen import (
    BUILTIN_MOLECULES,
    GenerationRecipe,
    MoleculeSpec,
    ensure_builtin_store,
    generate_store,
    read_smiles_file,
)
from denoisepot.errors import DenoisepotError
from molgraph_data.store import Store
from molgraph_data.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV
from typer.testing import CliRunner

TINY = [MoleculeSpec("water", "O"), MoleculeSpec("methane", "C"), MoleculeSpec("ethylene", "C=C")]
RECIPE = GenerationRecipe(
    conformers=4,
    temperatures_kelvin=(300.0, 800.0),
    seed=3,
    equilibration_steps=10,
    steps_between_frames=3,
)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with Store(path) as store:
        block = store.read(np.arange(store.n_conformations))
        return {
            "pos": block.pos,
            "z": block.z,
            "energy": block.energy,
            "forces": block.forces,
            "mol": block.mol_id,
        }


def test_builtin_list_is_small_chno_organics() -> None:
    from rdkit import Chem

    names = [name for name, _ in BUILTIN_MOLECULES]
    assert 45 <= len(BUILTIN_MOLECULES) <= 60 and len(set(names)) == len(names)
    for _, smiles in BUILTIN_MOLECULES:
        mol = Chem.MolFromSmiles(smiles)
        assert mol.GetNumHeavyAtoms() <= 9
        assert {atom.GetSymbol() for atom in mol.GetAtoms()} <= {"C", "N", "O"}


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = generate_store(TINY, RECIPE, tmp_path / "a.h5", workers=2, progress=False)
    second = generate_store(TINY, RECIPE, tmp_path / "b.h5", workers=2, progress=False)
    other = generate_store(
        TINY, dataclasses.replace(RECIPE, seed=4), tmp_path / "c.h5", workers=1, progress=False
    )
    a, b, c = _arrays(first), _arrays(second), _arrays(other)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["pos"], c["pos"])
    with Store(first) as store:
        assert store.n_conformations == 3 * 4 and store.n_molecules == 3
        assert store.molecule_names == ["water", "methane", "ethylene"]
        assert store.metadata["level_of_theory"].startswith("GFN2-xTB")
        assert store.metadata["units"]["energy"] == "eV"


@pytest.mark.parametrize("sampling", ["md", "normal-modes"])
def test_labels_equal_a_direct_tblite_call_in_ev(tmp_path: Path, sampling: str) -> None:
    from tblite.interface import Calculator

    recipe = dataclasses.replace(RECIPE, sampling=sampling)
    path = generate_store(TINY[1:], recipe, tmp_path / "s.h5", workers=1, progress=False)
    with Store(path) as store:
        offsets = store.atom_offset
        block = store.read(np.arange(store.n_conformations))
        for i in range(store.n_conformations):
            rows = slice(offsets[i], offsets[i + 1])
            calc = Calculator(
                "GFN2-xTB", block.z[rows], block.pos[rows].astype(np.float64) / BOHR_IN_ANGSTROM
            )
            calc.set("verbosity", 0)
            result = calc.singlepoint()
            energy_ev = result.get("energy") * HARTREE_IN_EV
            forces_ev_per_a = -result.get("gradient") * HARTREE_IN_EV / BOHR_IN_ANGSTROM
            # stored positions are float32 and the SCF restarts along a trajectory
            assert block.energy[i] == pytest.approx(energy_ev, abs=1e-4)
            np.testing.assert_allclose(block.forces[rows], forces_ev_per_a, atol=2e-3)
    # nonequilibrium: sampled geometries carry real forces (eV/Å, not Hartree/bohr)
    assert 0.05 < np.abs(block.forces).mean() < 10.0


def test_normal_mode_samples_stay_near_the_minimum_energy(tmp_path: Path) -> None:
    recipe = dataclasses.replace(
        RECIPE, sampling="normal-modes", conformers=12, temperatures_kelvin=(300.0,)
    )
    path = generate_store(
        [MoleculeSpec("methane", "C")], recipe, tmp_path / "nm.h5", workers=1, progress=False
    )
    energy = _arrays(path)["energy"]
    # harmonic bound: at most 1.5 N kT (N = 5 atoms, kT = 0.0259 eV) above the minimum, plus
    # anharmonicity; the sampling must not blow molecules apart
    assert np.ptp(energy) < 0.6


def test_cache_is_reused_and_a_corrupt_store_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    tiny = TINY[:2]
    recipe = dataclasses.replace(RECIPE, conformers=2)
    monkeypatch.setenv("DENOISEPOT_CACHE", str(tmp_path / "env-cache"))
    path = ensure_builtin_store(progress=False, workers=1, recipe=recipe, molecules=tiny)
    assert path.parent == tmp_path / "env-cache"
    original = _arrays(path)
    stamp = path.stat().st_mtime_ns
    assert ensure_builtin_store(progress=False, workers=1, recipe=recipe, molecules=tiny) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not regenerated

    # half-written: truncated file in place of the store
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rebuilt = ensure_builtin_store(progress=False, workers=1, recipe=recipe, molecules=tiny)
    for key, value in original.items():
        np.testing.assert_array_equal(_arrays(rebuilt)[key], value)

    # corrupt: same size, flipped bytes; and a missing receipt
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(100)
    path.write_bytes(bytes(data))
    ensure_builtin_store(progress=False, workers=1, recipe=recipe, molecules=tiny)
    np.testing.assert_array_equal(_arrays(path)["energy"], original["energy"])
    path.with_suffix(".json").unlink()
    ensure_builtin_store(progress=False, workers=1, recipe=recipe, molecules=tiny)
    assert path.with_suffix(".json").is_file()

    # an explicit folder wins over the environment variable
    explicit = ensure_builtin_store(
        cache_dir=tmp_path / "opt", progress=False, workers=1, recipe=recipe, molecules=tiny
    )
    assert explicit.parent == tmp_path / "opt"
    assert not [p for p in os.listdir(tmp_path / "opt") if p.endswith(".tmp")]


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _group() -> None:
        """data"""

    return app


def test_bad_smiles_file_is_one_clear_line(tmp_path: Path) -> None:
    smiles = tmp_path / "mols.smi"
    smiles.write_text("# my molecules\nCCO ethanol\nC1CC(  broken\n")
    with pytest.raises(DenoisepotError) as info:
        read_smiles_file(smiles)
    message = str(info.value)
    assert "\n" not in message and str(smiles) in message and "line 3" in message

    out = tmp_path / "out.h5"
    result = CliRunner().invoke(_cli(), ["generate", "--smiles", str(smiles), "--out", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, DenoisepotError)
    assert not out.exists()
    with pytest.raises(DenoisepotError, match="no such SMILES file"):
        read_smiles_file(tmp_path / "missing.smi")


def test_cli_generates_from_a_smiles_file(tmp_path: Path) -> None:
    smiles = tmp_path / "mols.smi"
    smiles.write_text("C#C acetylene\nN\n")
    out = tmp_path / "gen.h5"
    result = CliRunner().invoke(
        _cli(),
        [
            "generate",
            "--smiles",
            str(smiles),
            "--conformers",
            "3",
            "--sampling",
            "normal-modes",
            "--temperature",
            "300",
            "--temperature",
            "500",
            "--seed",
            "1",
            "--out",
            str(out),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    with Store(out) as store:
        assert store.molecule_names == ["acetylene", "N"] and store.n_conformations == 6
    again = CliRunner().invoke(_cli(), ["generate", "--builtin", "--out", str(out)])
    assert isinstance(again.exception, DenoisepotError) and "--overwrite" in str(again.exception)


def test_a_terminated_generation_stops_its_workers_and_writes_nothing(
    tmp_path: Path, sigterm_when
) -> None:
    """SIGTERM to ``data generate`` (``kill``, a batch system's time limit) stops its worker
    processes with it, exits with status 143 and one line, and leaves no store or temporary
    file; the workers used to go on labelling with nobody to collect their results."""
    import sys

    smiles = tmp_path / "mols.smi"
    smiles.write_text("CCO ethanol\nCC=O acetaldehyde\n")
    stopped = sigterm_when(
        [sys.executable, "-m", "denoisepot", "data", "generate", "--smiles", str(smiles),
         "--conformers", "100000", "--workers", "2", "--out", str(tmp_path / "gen.h5")],
        workers=2,
    )
    assert stopped.workers_left == []
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr[-1] == ("error: terminated (SIGTERM); nothing was written; the same "
                                  "command starts it again")
    assert [p.name for p in tmp_path.iterdir()] == ["mols.smi"]

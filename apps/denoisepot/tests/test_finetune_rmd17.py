"""Acceptance on real data (rMD17 ethanol, 1,000 train + 1,000 test conformations): a short CPU
fine-tuning of a small SchNet, from scratch and from a (tiny) denoise pretraining, beats the
predict-the-mean baseline by far; `evaluate` reproduces the reported test metrics from the
saved checkpoint; the ASE calculator of the fine-tuned model gives forces equal to finite
differences of its energies, conserves energy in NVE and relaxes with BFGS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from denoisepot.engine.finetune import (
    FinetuneConfig,
    FinetuneResult,
    evaluate_checkpoint,
    run_finetuning,
)
from denoisepot.engine.pretrain import PretrainConfig, run_pretraining
from finetune_heads import DenoisepotCalculator
from molgraph_data import Store, convert

SMALL = {"hidden_channels": 32, "num_filters": 32, "num_interactions": 2, "num_gaussians": 16,
         "cutoff": 5.0}
EPOCHS = 5


@pytest.fixture(scope="module")
def runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The store, and the from-scratch and pretrained fine-tunings (official split: 900 train,
    100 validation from the train file; the 1,000 test conformations)."""
    folder = tmp_path_factory.mktemp("rmd17")
    train = shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"
    test = shared_data / "rmd17" / "rmd17_ethanol_test_01.npz"
    store = convert([train, test], folder / "ethanol.h5")
    # pretraining sees the training file's geometries only, never the test conformations
    geometries = convert([train], folder / "ethanol_train_geometries.h5")
    pretraining = run_pretraining(PretrainConfig(
        backbone="schnet", out=folder / "pretrain", data=[geometries], epochs=1, batch_size=32,
        lr=5e-4, backbone_hparams=SMALL, progress=False, accelerator="cpu", seed=0))
    common = {"data": store, "split": "official", "epochs": EPOCHS, "batch_size": 16,
              "lr": 5e-3, "progress_bar": False, "accelerator": "cpu", "seed": 0}
    scratch = run_finetuning(FinetuneConfig(out_dir=folder / "scratch", backbone="schnet",
                                            backbone_hparams=SMALL, **common))
    pretrained = run_finetuning(FinetuneConfig(
        out_dir=folder / "pretrained", init_checkpoint=pretraining.best_checkpoint, **common))
    return {"store": store, "scratch": scratch, "pretrained": pretrained}


@pytest.mark.slow
@pytest.mark.parametrize("row", ["scratch", "pretrained"])
def test_fine_tuning_beats_the_mean_by_far(runs: dict[str, object], row: str) -> None:
    result = runs[row]
    assert isinstance(result, FinetuneResult)
    assert (result.n_train, result.n_val, result.n_test) == (900, 100, 1000)
    assert result.used_forces and result.epochs_run == EPOCHS
    test, baseline = result.test_metrics, result.baseline_metrics
    print(f"{row}: energy MAE {test.energy_mae * 1000:.1f} meV (mean baseline "
          f"{baseline.energy_mae * 1000:.1f}), force MAE {test.force_mae * 1000:.0f} meV/Å "
          f"(baseline {baseline.force_mae * 1000:.0f})")
    assert test.energy_mae < 0.6 * baseline.energy_mae
    assert test.force_mae < 0.4 * baseline.force_mae
    rows = result.results_csv.read_text().splitlines()
    assert len(rows) == 1 + 1000


@pytest.mark.slow
def test_evaluate_reproduces_the_reported_test_metrics(
    runs: dict[str, object], tmp_path: Path
) -> None:
    for row in ("scratch", "pretrained"):
        result = runs[row]
        assert isinstance(result, FinetuneResult)
        evaluated = evaluate_checkpoint(result.best_checkpoint, None, "test", tmp_path / row)
        assert evaluated.n_conformations == 1000
        reported, again = result.test_metrics.as_dict(), evaluated.metrics.as_dict()
        for key, value in reported.items():
            assert again[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def _test_molecule(runs: dict[str, object], row: int, dtype: torch.dtype) -> Atoms:
    store_path = runs["store"]
    assert isinstance(store_path, Path)
    with Store(store_path) as store:
        block = store.read([1000 + row])
    result = runs["scratch"]
    assert isinstance(result, FinetuneResult)
    calculator = DenoisepotCalculator.from_checkpoint(result.best_checkpoint, dtype=dtype)
    return Atoms(numbers=block.z, positions=block.pos.astype(np.float64), calculator=calculator)


@pytest.mark.slow
def test_calculator_forces_are_finite_differences_of_its_energies(
    runs: dict[str, object]
) -> None:
    atoms = _test_molecule(runs, 0, torch.float64)
    forces = atoms.get_forces()
    step = 1e-4
    for atom, axis in [(0, 0), (1, 2), (2, 1), (4, 0), (8, 2)]:
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[atom, axis] += sign * step
            shifted.append(moved.get_potential_energy())
        numeric = -(shifted[0] - shifted[1]) / (2 * step)
        assert forces[atom, axis] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_nve_dynamics_conserves_total_energy(runs: dict[str, object]) -> None:
    atoms = _test_molecule(runs, 1, torch.float32)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    total, potential = [], []

    def record() -> None:
        potential.append(atoms.get_potential_energy())
        total.append(potential[-1] + atoms.get_kinetic_energy())

    dynamics.attach(record, interval=1)
    dynamics.run(200)
    total_ev, potential_ev = np.array(total), np.array(potential)
    drift = abs(np.polyfit(np.arange(total_ev.size) * 0.5, total_ev, 1)[0]) * 100.0
    fluctuation = potential_ev.std()
    print(f"NVE 200 × 0.5 fs: total-energy drift {drift * 1000:.3f} meV over 100 fs, "
          f"potential-energy fluctuation (std) {fluctuation * 1000:.1f} meV, "
          f"ratio {drift / fluctuation:.4f}; total-energy std {total_ev.std() * 1000:.3f} meV")
    assert np.isfinite(total_ev).all()
    assert drift < 0.05 * fluctuation
    assert total_ev.std() < 0.1 * fluctuation


@pytest.mark.slow
def test_bfgs_relaxation_converges(runs: dict[str, object]) -> None:
    atoms = _test_molecule(runs, 2, torch.float64)
    start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    assert np.abs(atoms.get_forces()).max() < 0.01
    assert atoms.get_potential_energy() < start

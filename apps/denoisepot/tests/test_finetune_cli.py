"""`denoisepot finetune` and `denoisepot evaluate` on tiny synthetic data: outputs, evaluation
reproducing the reported test metrics, determinism, freezing, and every bad input as one line
with exit status 1."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from denoisepot.cli import main
from denoisepot.engine.finetune import FinetuneConfig, run_finetuning
from equivariant_backbones import atomic_torch_save, backbone_to_dict, build_backbone
from molgraph_data import convert

TINY = ["--hparam", "hidden_channels=8", "--hparam", "num_filters=8", "--hparam",
        "num_interactions=1", "--hparam", "num_gaussians=8"]
TINY_HPARAMS = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1,
                "num_gaussians": 8}


def _water_frames(with_forces: bool, count: int = 40) -> list[Atoms]:
    """Water molecules jiggled around a fixed geometry, labelled with Lennard-Jones energies
    (eV) and forces (eV/Å)."""
    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    frames = []
    for _ in range(count):
        atoms = Atoms("OH2", positions=base + 0.05 * rng.standard_normal((3, 3)))
        atoms.calc = LennardJones(sigma=0.9, epsilon=0.1, rc=4.0)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy,
                                           forces=forces if with_forces else None)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny stores of water: with forces and with energies only."""
    folder = tmp_path_factory.mktemp("stores")
    paths = {}
    for name, with_forces in (("forces", True), ("energy_only", False)):
        xyz = folder / f"water_{name}.extxyz"
        ase.io.write(xyz, _water_frames(with_forces), format="extxyz")
        paths[name] = convert([xyz], folder / f"water_{name}.h5")
    return paths


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["denoisepot", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


def _user_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                *args: str) -> str:
    capsys.readouterr()
    assert _run(monkeypatch, *args) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.fixture(scope="module")
def finetuned(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny from-scratch run on the water store with forces (2 epochs)."""
    out = tmp_path_factory.mktemp("run") / "scratch"
    monkeypatch = pytest.MonkeyPatch()
    try:
        code = _run(monkeypatch, "finetune", "--data", stores["forces"], "--backbone", "schnet",
                    *TINY, "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--out", out,
                    "--accelerator", "cpu")
    finally:
        monkeypatch.undo()
    assert code == 0
    return out


def test_progress_written_to_a_log_is_one_bar(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Written to a log file, a fine-tuning's progress bar is the last epoch's alone, not a
    line or two for each of its (often thousands of) epochs."""
    capsys.readouterr()
    assert _run(monkeypatch, "finetune", "--data", stores["forces"], "--backbone", "schnet",
                *TINY, "--epochs", "4", "--batch-size", "8", "--out", tmp_path / "run",
                "--accelerator", "cpu", "--progress") == 0
    bars = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    assert len(bars) == 1 and bars[0].startswith("Epoch 3/3"), bars


def test_finetune_writes_checkpoint_predictions_plots_and_evaluate_reproduces_them(
    finetuned: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("best.pt", "results.csv", "metrics.json", "split.npz", "parity.png",
                 "error_histogram.png"):
        assert (finetuned / name).is_file(), name
    reported = json.loads((finetuned / "metrics.json").read_text())
    rows = (finetuned / "results.csv").read_text().splitlines()
    assert rows[0].startswith("conf_id,mol_id,n_atoms,energy_ref_ev,energy_pred_ev")
    assert len(rows) - 1 == reported["n_test"] == 4
    payload = torch.load(finetuned / "best.pt", weights_only=True)
    assert payload["kind"] == "finetune" and payload["format_version"] == 1
    assert payload["recipe"]["lr"] == 1e-3 and payload["units"]["forces"] == "eV/Angstrom"

    assert _run(monkeypatch, "evaluate", finetuned / "best.pt", "--out", tmp_path) == 0
    evaluated = json.loads((tmp_path / "metrics.json").read_text())["metrics_ev"]
    for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
        assert evaluated[key] == pytest.approx(reported["test_metrics"][key], rel=1e-9)
    assert (tmp_path / "parity.png").stat().st_size > 0
    assert (tmp_path / "error_histogram.png").stat().st_size > 0


def test_the_same_seed_gives_the_same_numbers_and_a_finished_run_resumes(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    def config(k: int, resume: bool = False) -> FinetuneConfig:
        return FinetuneConfig(
            out_dir=tmp_path / f"run{k}", data=stores["forces"], backbone="schnet",
            backbone_hparams=TINY_HPARAMS, epochs=1, batch_size=8, progress_bar=False,
            accelerator="cpu", seed=7, resume=resume)

    results = [run_finetuning(config(k)) for k in range(2)]
    assert results[0].test_metrics == results[1].test_metrics
    assert results[0].epochs_run == 1 and results[0].n_train == 32
    assert (tmp_path / "run0" / "lightning" / "last.ckpt").is_file()
    resumed = run_finetuning(config(0, resume=True))
    assert resumed.epochs_run == 1 and resumed.test_metrics == results[0].test_metrics
    # whether the rate ended at its floor: one plateau epoch leaves it where it started, above
    # min_lr, unless min_lr is the rate itself
    plateau = run_finetuning(dataclasses.replace(config(2), lr_schedule="plateau",
                                                 protocol="converged"))
    assert plateau.lr_at_floor is False
    floored = run_finetuning(dataclasses.replace(config(3), lr_schedule="plateau",
                                                 protocol="converged", min_lr=1e-3))
    assert floored.lr_at_floor is True
    assert json.loads((tmp_path / "run3" / "metrics.json").read_text())["lr_at_floor"] is True


def test_frozen_backbone_keeps_the_pretrained_weights(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    torch.manual_seed(3)
    backbone = build_backbone("schnet", **TINY_HPARAMS)
    atomic_torch_save({"kind": "pretrain", "format_version": 1,
                       "backbone": backbone_to_dict(backbone), "elements": [1, 8]},
                      tmp_path / "pre.pt")
    result = run_finetuning(FinetuneConfig(
        out_dir=tmp_path / "run", data=stores["forces"], init_checkpoint=tmp_path / "pre.pt",
        epochs=2, freeze_backbone_epochs=2, batch_size=8, progress_bar=False,
        accelerator="cpu"))
    payload = torch.load(result.best_checkpoint, weights_only=True)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(payload["backbone"]["state_dict"][key], value)
    assert payload["pretrained_from"] == str(tmp_path / "pre.pt")


def test_bad_inputs_are_one_line_and_exit_status_one(
    stores: dict[str, Path], finetuned: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["finetune", "--data", stores["forces"], "--epochs", "1", "--accelerator", "cpu"]
    line = _user_error(monkeypatch, capsys, "finetune", "--data", stores["energy_only"],
                       "--backbone", "schnet", *TINY, "--forces", "--out", tmp_path / "a")
    assert "no forces" in line and "--energy-only" in line
    assert not (tmp_path / "a").exists()

    line = _user_error(monkeypatch, capsys, *base, "--from", finetuned / "best.pt",
                       "--out", tmp_path / "b")
    assert "finetune checkpoint, but a pretrain checkpoint is needed" in line

    payload = torch.load(finetuned / "best.pt", weights_only=True)
    atomic_torch_save({**payload, "kind": "pretrain"}, tmp_path / "pre.pt")
    line = _user_error(monkeypatch, capsys, "evaluate", tmp_path / "pre.pt")
    assert "a pretraining checkpoint is evaluated on labelled data" in line
    assert "pass --data" in line
    atomic_torch_save({**payload, "format_version": 2}, tmp_path / "v2.pt")
    line = _user_error(monkeypatch, capsys, "evaluate", tmp_path / "v2.pt")
    assert "format version 2" in line and str(tmp_path / "v2.pt") in line

    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--from",
                       tmp_path / "pre.pt", "--out", tmp_path / "c")
    assert "not both" in line
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--out", finetuned)
    assert "--resume" in line and "--overwrite" in line
    before = (finetuned / "best.pt").read_bytes()
    line = _user_error(monkeypatch, capsys, "finetune", "--data", stores["forces"], "--backbone",
                       "schnet", *TINY, "--epochs", "2", "--batch-size", "8", "--lr", "5e-3",
                       "--out", finetuned, "--accelerator", "cpu", "--resume")
    assert "run.json" in line and "lr: 0.001 -> 0.005" in line
    assert (finetuned / "best.pt").read_bytes() == before
    # a run file cut short (a full disk, an edit): named, not a JSON traceback
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "run.json").write_text((finetuned / "run.json").read_text()[:40])
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", *TINY,
                       "--out", tmp_path / "cut", "--resume")
    assert str(tmp_path / "cut" / "run.json") in line and "--overwrite" in line
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--train-size",
                       "1.5", "--out", tmp_path / "d")
    assert "(0, 1]" in line
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "nonesuch", "--out",
                       tmp_path / "e")
    assert "nonesuch" in line
    assert not (tmp_path / "e").exists()
    # compare's backbone:key=value form, a name the backbone lacks, a value it rejects: one
    # line before the output folder is made (it was after, leaving run.json and split.npz)
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--hparam",
                       "schnet:hidden_channels=16", "--out", tmp_path / "g")
    assert "--hparam schnet:hidden_channels" in line and "num_filters" in line
    assert "backbone:key=value is compare's form" in line
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--hparam",
                       "hidden_channels=-4", "--out", tmp_path / "g")
    assert "--hparam" in line and "schnet rejects these values" in line
    assert not (tmp_path / "g").exists()
    line = _user_error(monkeypatch, capsys, *base, "--backbone", "schnet", "--strategy", "fsdp",
                       "--out", tmp_path / "f")
    assert "--strategy 'fsdp'" in line
    assert not (tmp_path / "f").exists()


def test_a_terminated_finetuning_exits_143_saying_how_to_continue(
    stores: dict[str, Path], tmp_path: Path, sigterm_when
) -> None:
    """SIGTERM (``kill``, a batch system's time limit) ends a fine-tuning with exit status 143
    and one line naming --resume, not with Lightning's 0 that a scheduler or ``&&`` would
    take for a finished run; the last finished epoch is kept to continue from."""
    out = tmp_path / "run"
    stopped = sigterm_when(
        [sys.executable, "-m", "denoisepot", "finetune", "--data", str(stores["forces"]),
         "--backbone", "schnet", *TINY, "--epochs", "100000", "--patience", "100000",
         "--batch-size", "8", "--out", str(out), "--accelerator", "cpu", "--no-progress"],
        (out / "lightning" / "last.ckpt").is_file,
    )
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr[-1].startswith(
        "error: terminated (SIGTERM); the same command with --resume")
    assert (out / "lightning" / "last.ckpt").is_file() and not (out / "metrics.json").exists()


def test_converged_protocol_stops_after_patience_and_keeps_the_best_epoch(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    result = run_finetuning(FinetuneConfig(
        out_dir=tmp_path / "run", data=stores["forces"], backbone="schnet",
        backbone_hparams=TINY_HPARAMS, protocol="converged", epochs=6, patience=1, lr=0.5,
        batch_size=8, progress_bar=False, accelerator="cpu"))
    # lr 0.5 overshoots, so validation stops improving: stop `patience` epochs after the best
    assert result.epochs_run < 6
    assert result.epochs_run - 1 - result.best_epoch == 1
    payload = torch.load(result.best_checkpoint, weights_only=True)
    assert payload["epoch"] == result.best_epoch
    assert payload["recipe"]["protocol"] == "converged"


def test_lightning_cloud_adverts_are_dropped_and_other_notices_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from denoisepot.engine.finetune import _hide_lightning_adverts
    from lightning.pytorch.utilities import rank_zero_info

    _hide_lightning_adverts()
    _hide_lightning_adverts()  # idempotent: one filter
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing something")
        rank_zero_info("GPU available: False")
    assert "GPU available: False" in caplog.text and "Tip" not in caplog.text


def test_plateau_schedule_halves_the_rate_before_early_stopping_ends_the_run(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """``lr_schedule="plateau"``: after the warmup the rate stays at its peak while validation
    improves and halves after ``patience // 4`` epochs without progress, so the run early
    stopping ends has been annealed; the choice is recorded with the run."""
    import csv

    result = run_finetuning(FinetuneConfig(
        out_dir=tmp_path / "run", data=stores["forces"], backbone="schnet",
        backbone_hparams=TINY_HPARAMS, protocol="converged", epochs=30, patience=4, lr=0.5,
        batch_size=8, lr_schedule="plateau", progress_bar=False, accelerator="cpu"))
    assert result.epochs_run < 30  # early stopping, not the cap
    with open(tmp_path / "run" / "logs" / "metrics.csv") as table:
        rates = [float(row["lr-AdamW/head"]) for row in csv.DictReader(table)
                 if row.get("lr-AdamW/head")]
    peak = max(rates)
    assert peak == pytest.approx(0.5)
    after_peak = rates[rates.index(peak):]
    # only ever lowered after the peak, each time by half, and lowered at least once
    assert after_peak == sorted(after_peak, reverse=True) and after_peak[-1] < peak
    assert {round(np.log2(peak / rate), 6) % 1 for rate in after_peak} == {0.0}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["lr_schedule"] == "plateau"

"""From a real (tiny) denoise pretraining to the potential that fine-tuning starts from:
every backbone parameter comes from the checkpoint and differs from its random
initialisation, the energy head is new (the same as the from-scratch row's), and the dropped
noise-head keys are in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from denoisepot.engine.finetune import FinetuneConfig, build_potential
from denoisepot.engine.pretrain import PretrainConfig, run_pretraining
from equivariant_backbones import build_backbone
from molgraph_data import convert, fit_reference_energies

TINY = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 2, "num_gaussians": 8}


@pytest.fixture(scope="module")
def pretrained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch SchNet pretraining on 64 rMD17 ethanol geometries: (checkpoint, store)."""
    folder = tmp_path_factory.mktemp("pretrained")
    store = convert([shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"], folder / "eth.h5")
    result = run_pretraining(PretrainConfig(
        backbone="schnet", out=folder / "pre", data=[store], epochs=1, batch_size=16,
        train_size=64, backbone_hparams=TINY, progress=False, accelerator="cpu", seed=5,
    ))
    return result.best_checkpoint, store


def test_every_backbone_parameter_is_pretrained_and_the_head_is_new(
    pretrained: tuple[Path, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    checkpoint, store = pretrained
    payload = torch.load(checkpoint, weights_only=True)
    torch.manual_seed(5)
    initial = dict(build_backbone("schnet", **TINY).named_parameters())
    reference = fit_reference_energies(store)
    with caplog.at_level(logging.INFO, logger="finetune_heads"):
        potential = build_potential(
            FinetuneConfig(out_dir=tmp_path, init_checkpoint=checkpoint, seed=1), reference,
            [1, 6, 8])
    for name, parameter in potential.backbone.named_parameters():
        torch.testing.assert_close(parameter.detach(), payload["backbone"]["state_dict"][name])
        assert not torch.equal(parameter.detach(), initial[name].detach()), name
    noise_keys = list(payload["noise_head"]["state_dict"])
    assert noise_keys
    for key in noise_keys:
        assert f"noise_head.{key}" in caplog.text

    scratch = build_potential(
        FinetuneConfig(out_dir=tmp_path, backbone="schnet", backbone_hparams=TINY, seed=1),
        reference, [1, 6, 8])
    for (name, head_param), scratch_param in zip(
        potential.head.named_parameters(), scratch.head.parameters(), strict=True
    ):
        torch.testing.assert_close(head_param, scratch_param, msg=name)
    torch.testing.assert_close(potential.head.reference_energies_ev,
                               torch.from_numpy(reference.per_element_ev))


def _cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    """Run the installed command line in this process; its exit status."""
    import sys

    from denoisepot.cli import main

    monkeypatch.setattr(sys, "argv", ["denoisepot", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


def test_denoiser_alignment_matches_a_direct_computation_and_the_cli_writes_it(
    pretrained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`denoisepot evaluate PRETRAIN.pt --data STORE`: the cosine between the denoiser's noise
    at the clean geometries and the forces, each molecule's mean removed, computed in batches
    of 16 equals one NumPy pass over the same 40 conformations."""
    import json

    import numpy as np
    from denoise_objective import DenoisingModel, noise_head_from_dict
    from denoisepot.engine.alignment import denoiser_alignment
    from equivariant_backbones import backbone_from_dict
    from molgraph_data import Store, make_dataloader
    from molgraph_data.units import BOLTZMANN_EV_PER_K

    checkpoint, store = pretrained
    result = denoiser_alignment(checkpoint, store, np.arange(40), batch_size=16)
    payload = torch.load(checkpoint, weights_only=True)
    model = DenoisingModel(backbone_from_dict(payload["backbone"]),
                           noise_head_from_dict(payload["noise_head"])).eval()
    batch = next(iter(make_dataloader(store, np.arange(40), 40, shuffle=False, seed=0)))
    noise = model(batch.z, batch.pos, batch.batch).detach().double().numpy().reshape(40, 9, 3)
    forces = batch.forces.double().numpy().reshape(40, 9, 3)
    noise -= noise.mean(axis=1, keepdims=True)
    forces -= forces.mean(axis=1, keepdims=True)
    cosine = (noise * forces).sum() / np.sqrt((noise**2).sum() * (forces**2).sum())
    assert result.cosine == pytest.approx(cosine, rel=1e-5)
    slope = (noise * forces).sum() / (forces**2).sum()
    sigma = payload["objective"]["sigma_angstrom"]
    if slope < 0:
        assert result.implied_temperature_k == pytest.approx(
            -sigma**2 / slope / BOLTZMANN_EV_PER_K, rel=1e-5)
    assert result.n_conformations == 40 and result.baseline > 0 and result.loss > 0
    # SchNet's gradient head: noise = -dU/dx; U against the DFT energies (one molecule here)
    with torch.no_grad():
        u = model.head.energy(model.backbone(batch.z, batch.pos, batch.batch).scalar)
    u = u.double().numpy().reshape(40, 9).sum(axis=1)
    energy = batch.energy.double().numpy()
    assert result.energy_correlation == pytest.approx(np.corrcoef(u, energy)[0, 1], rel=1e-5)

    with Store(store) as opened:
        total = opened.n_conformations
    out = tmp_path / "evaluated"
    assert _cli(monkeypatch, "evaluate", checkpoint, "--data", store, "--out", out) == 0
    written = json.loads((out / "alignment.json").read_text())
    assert written["n_conformations"] == total
    assert -1.0 <= written["cosine"] <= 1.0 and written["sigma_angstrom"] == sigma
    assert "cos(predicted noise, forces)" in capsys.readouterr().out


def test_a_denoiser_on_a_store_without_forces_gets_its_loss_and_energy_correlation(
    pretrained: tuple[Path, Path], shared_data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """ANI-1 holds energies only: the force comparison is left out (NaN, None in the JSON,
    said in the table) while the loss and the gradient head's corr(U, E) are measured, and
    they are the numbers the same data give when they do hold forces."""
    import json

    import numpy as np
    from denoisepot.engine.alignment import denoiser_alignment
    from molgraph_data import Store

    checkpoint, rmd17 = pretrained
    indices = np.arange(0, 60, 3)
    with_forces = denoiser_alignment(checkpoint, rmd17, indices)
    with monkeypatch.context() as patch:
        patch.setattr(Store, "has_forces", property(lambda self: False))
        hidden = denoiser_alignment(checkpoint, rmd17, indices)
    assert np.isnan(hidden.cosine) and np.isnan(hidden.implied_temperature_k)
    assert not np.isnan(with_forces.cosine)
    assert hidden.loss == with_forces.loss and hidden.baseline == with_forces.baseline
    assert hidden.energy_correlation == with_forces.energy_correlation

    ani1 = convert([shared_data / "ani1" / "ani_gdb_s01.h5"], tmp_path / "ani1.h5")
    out = tmp_path / "evaluated"
    capsys.readouterr()
    assert _cli(monkeypatch, "evaluate", checkpoint, "--data", ani1, "--out", out) == 0
    written = json.loads((out / "alignment.json").read_text())
    assert written["cosine"] is None and written["implied_temperature_k"] is None
    assert written["loss"] > 0 and -1.0 <= written["energy_correlation"] <= 1.0
    assert "no forces in --data" in capsys.readouterr().out


@pytest.mark.parametrize("use_forces", [False, True])
def test_head_from_the_denoiser_is_its_scalar_fitted_to_the_training_labels(
    pretrained: tuple[Path, Path], tmp_path: Path, use_forces: bool
) -> None:
    """`--head-init denoiser`: the energy head starts as slope·U + shift·n (+ reference
    energies) with U the denoiser's gradient-head scalar; energy-only, slope and shift are the
    least-squares fit to the training energies (residuals orthogonal to U and n); with forces,
    the slope is the least-squares fit of -slope·∂U/∂x to the training forces."""
    import numpy as np
    from denoise_objective import noise_head_from_dict
    from denoisepot.engine.finetune import transfer_denoiser_head
    from molgraph_data import make_dataloader

    checkpoint, store = pretrained
    train = np.arange(0, 60, 2)
    reference = fit_reference_energies(store, train)
    potential = build_potential(
        FinetuneConfig(out_dir=tmp_path, init_checkpoint=checkpoint, seed=1), reference,
        [1, 6, 8])
    slope, shifts = transfer_denoiser_head(potential, checkpoint, store, train,
                                           use_forces=use_forces)
    # one composition: a shift per element is one per atom
    assert set(shifts) == {1, 6, 8} and len(set(shifts.values())) == 1
    shift = shifts[1]
    potential.eval()
    potential.compute_forces = False
    payload = torch.load(checkpoint, weights_only=True)
    noise_head = noise_head_from_dict(payload["noise_head"])
    batch = next(iter(make_dataloader(store, train, 64, shuffle=False, seed=0)))
    pos = batch.pos.clone().requires_grad_(True)
    u_atoms = noise_head.energy(potential.backbone(batch.z, pos, batch.batch).scalar)
    (gradient,) = torch.autograd.grad(u_atoms.sum(), pos)
    u = u_atoms.detach().double().reshape(30, 9).sum(dim=1)
    predicted = potential(batch.z, batch.pos, batch.batch, 30)["energy"].double()
    references = potential.head.reference_energies_ev[batch.z].reshape(30, 9).sum(dim=1)
    torch.testing.assert_close(predicted, references + slope * u + shift * 9, rtol=0, atol=1e-4)
    residual = batch.energy.double() - predicted
    if use_forces:
        g, f = gradient.double(), batch.forces.double()
        assert slope == pytest.approx(float(-(g * f).sum() / (g * g).sum()), rel=1e-4)
        assert float(residual.mean()) == pytest.approx(0.0, abs=1e-6)
    else:
        assert float((residual * (u - u.mean())).sum()) == pytest.approx(0.0, abs=1e-6)
        assert float(residual.mean()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("use_forces", [False, True])
def test_head_from_the_denoiser_fits_a_shift_per_element_on_several_molecules(
    pretrained: tuple[Path, Path], shared_data: Path, tmp_path: Path, use_forces: bool
) -> None:
    """On ethanol and malonaldehyde together, U's slope is fitted with a shift per atom of
    each element (the normal equations hold for U, where the forces do not give the slope,
    and for each element's count), which fits the training energies at least as well as one
    shift per atom; on one molecule both give the same head."""
    import numpy as np
    from denoisepot.engine.finetune import transfer_denoiser_head
    from molgraph_data import Store, make_dataloader

    checkpoint, _ = pretrained
    store = convert([shared_data / "rmd17" / "rmd17_ethanol_train_01.npz",
                     shared_data / "rmd17" / "rmd17_malonaldehyde_train_01.npz"],
                    tmp_path / "two.h5")
    with Store(store) as opened:
        molecule = opened.molecule_index[:]
    train = np.concatenate([np.nonzero(molecule == m)[0][:20] for m in np.unique(molecule)])
    reference = fit_reference_energies(store, train)

    def fitted(shift: str) -> tuple[float, dict[int, float], np.ndarray, np.ndarray]:
        potential = build_potential(
            FinetuneConfig(out_dir=tmp_path, init_checkpoint=checkpoint, seed=1), reference,
            [1, 6, 8])
        slope, shifts = transfer_denoiser_head(potential, checkpoint, store, train,
                                               use_forces=use_forces, shift=shift)
        potential.eval()
        potential.compute_forces = False
        batch = next(iter(make_dataloader(store, train, 64, shuffle=False, seed=0)))
        predicted = potential(batch.z, batch.pos, batch.batch, int(batch.num_graphs))["energy"]
        counts = np.stack([np.bincount(batch.batch.numpy()[batch.z.numpy() == z],
                                       minlength=int(batch.num_graphs)) for z in (1, 6, 8)], 1)
        return slope, shifts, (batch.energy.double() - predicted.double()).numpy(), counts

    slope, shifts, residual, counts = fitted("element")
    atom_slope, atom_shifts, atom_residual, _ = fitted("atom")
    assert set(shifts) == {1, 6, 8} and len(set(atom_shifts.values())) == 1
    np.testing.assert_allclose(counts.T @ residual, 0.0, atol=1e-4)
    assert (residual**2).sum() <= (atom_residual**2).sum() * (1 + 1e-9)
    if use_forces:
        assert slope == pytest.approx(atom_slope, rel=1e-9)
    else:
        assert slope != pytest.approx(atom_slope, rel=1e-3)

    one = train[:20]  # ethanol alone
    heads = []
    for shift in ("element", "atom"):
        potential = build_potential(
            FinetuneConfig(out_dir=tmp_path, init_checkpoint=checkpoint, seed=1), reference,
            [1, 6, 8])
        heads.append((transfer_denoiser_head(potential, checkpoint, store, one,
                                             use_forces=use_forces, shift=shift),
                      potential.head.state_dict()))
    assert heads[0][0] == heads[1][0]
    for key, value in heads[0][1].items():
        assert torch.equal(value, heads[1][1][key]), key


def test_head_from_the_denoiser_needs_a_pretrained_backbone(tmp_path: Path) -> None:
    from denoisepot.engine.finetune_config import check_config
    from denoisepot.errors import DenoisepotError

    with pytest.raises(DenoisepotError, match="--head-init denoiser .* give its checkpoint"):
        check_config(FinetuneConfig(out_dir=tmp_path, backbone="schnet", head_init="denoiser"))
    with pytest.raises(DenoisepotError, match="--head-init 'copy'"):
        check_config(FinetuneConfig(out_dir=tmp_path, backbone="schnet", head_init="copy"))
    with pytest.raises(DenoisepotError, match="--head-shift 'molecule'"):
        check_config(FinetuneConfig(out_dir=tmp_path, backbone="schnet", head_shift="molecule"))


def test_a_run_with_the_head_from_the_denoiser_records_where_it_started(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """The test errors of the potential before the first optimizer step are kept in the
    result and metrics.json, equal to rebuilding that start from the settings alone (how
    `compare` fills them in for runs recorded earlier); a new head records none."""
    import dataclasses
    import json

    from denoisepot.engine.finetune import denoiser_start_metrics, run_finetuning
    from denoisepot.errors import DenoisepotError

    checkpoint, store = pretrained
    config = FinetuneConfig(
        out_dir=tmp_path / "a", data=store, init_checkpoint=checkpoint, head_init="denoiser",
        split="conformation", train_size=30, epochs=2, batch_size=16, forces=False, seed=3,
        progress_bar=False, accelerator="cpu",
    )
    result = run_finetuning(config)
    start = result.start_metrics.as_dict()
    assert start["energy_mae"] > 0 and start["force_mae"] > 0  # forces: the store has them
    rebuilt = denoiser_start_metrics(dataclasses.replace(config, out_dir=tmp_path / "b"))
    assert rebuilt.as_dict() == pytest.approx(start, rel=1e-6)
    written = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert written["start_metrics"] == pytest.approx(start, rel=1e-12)

    new_head = run_finetuning(dataclasses.replace(config, out_dir=tmp_path / "d",
                                                  head_init="new"))
    assert new_head.start_metrics is None
    with pytest.raises(DenoisepotError, match="head from the denoiser"):
        denoiser_start_metrics(dataclasses.replace(config, head_init="new"))


def test_validate_start_keeps_a_start_that_training_does_not_beat(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """--validate-start: the starting weights are the first validation candidate. A learning
    rate that wrecks the fitted head leaves the start as the best checkpoint (epoch -1: the
    report's 0; its test errors are the start's), early stopping counts its patience from the
    start, and the start's validation loss is the one training logs for nearly equal weights."""
    import csv
    import dataclasses

    from denoisepot.engine.finetune import run_finetuning

    checkpoint, store = pretrained
    config = FinetuneConfig(
        out_dir=tmp_path / "wrecked", data=store, init_checkpoint=checkpoint,
        head_init="denoiser", split="conformation", train_size=30, protocol="converged",
        epochs=12, patience=3, batch_size=16, lr=3.0, forces=False, seed=3,
        validate_start=True, progress_bar=False, accelerator="cpu",
    )
    wrecked = run_finetuning(config)
    assert wrecked.best_epoch == -1 and wrecked.epochs_run == 3
    assert wrecked.test_metrics.energy_mae == pytest.approx(wrecked.start_metrics.energy_mae,
                                                            rel=1e-5)
    without = run_finetuning(dataclasses.replace(config, out_dir=tmp_path / "without",
                                                 validate_start=False))
    assert without.best_epoch >= 0
    assert without.test_metrics.energy_mae > wrecked.test_metrics.energy_mae

    still = run_finetuning(dataclasses.replace(config, out_dir=tmp_path / "still", lr=1e-9,
                                               epochs=1))
    payload = torch.load(still.best_checkpoint, weights_only=True)
    start_loss = payload["val_metrics_ev"]["energy_rmse"] ** 2
    with open(tmp_path / "still" / "logs" / "metrics.csv") as handle:
        logged = [float(row["val_loss"]) for row in csv.DictReader(handle) if row["val_loss"]]
    assert logged == [pytest.approx(start_loss, rel=1e-4)]


def test_validate_start_is_where_the_plateau_schedule_counts_from(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """--validate-start with --lr-schedule plateau: the start's validation loss is the
    schedule's first best, as it is early stopping's. When no epoch beats the start (a rate
    that wrecks the fitted head), the rate halves after every lr-patience + 1 validations from
    the first, not from the wrecked first epoch's loss."""
    import csv

    from denoisepot.engine.finetune import PLATEAU_PATIENCE_SHARE, run_finetuning

    checkpoint, store = pretrained
    patience = 8
    result = run_finetuning(FinetuneConfig(
        out_dir=tmp_path / "run", data=store, init_checkpoint=checkpoint,
        head_init="denoiser", split="conformation", train_size=30, protocol="converged",
        epochs=20, patience=patience, batch_size=16, lr=3.0, forces=False, seed=3,
        validate_start=True, lr_schedule="plateau", progress_bar=False, accelerator="cpu",
    ))
    assert result.best_epoch == -1 and result.epochs_run == patience
    with open(tmp_path / "run" / "logs" / "metrics.csv") as table:
        rows = list(csv.DictReader(table))
    # a rate is logged on its own row; the training loss of the same step says its epoch
    epoch_of = {row["step"]: int(row["epoch"]) for row in rows if row["train_loss"]}
    rates = [(epoch_of[row["step"]], float(row["lr-AdamW/head"]))
             for row in rows if row["lr-AdamW/head"]]
    peak = max(rate for _, rate in rates)
    assert peak == pytest.approx(3.0)
    every = patience // PLATEAU_PATIENCE_SHARE + 1  # validations without progress per halving
    warmed = next(i for i, (_, rate) in enumerate(rates) if rate == pytest.approx(peak))
    # after the warmup each epoch's rate is halved once per whole group of validations before it
    assert [rate for _, rate in rates[warmed:]] == pytest.approx(
        [peak / 2 ** (epoch // every) for epoch, _ in rates[warmed:]])
    assert rates[-1][0] == patience - 1 and rates[-1][1] < peak / 2  # halved at least twice


def test_warmup_steps_stretch_the_learning_rate_warmup(
    pretrained: tuple[Path, Path], tmp_path: Path
) -> None:
    """--warmup-steps: the learning rate rises linearly from 1e-3 × lr to lr over that many
    optimizer steps (logged per step and parameter group in logs/metrics.csv), where the
    default 0.3 epoch is a single step; the default leaves the schedule as it was."""
    import csv
    import dataclasses

    from denoisepot.engine.finetune import run_finetuning
    from denoisepot.errors import DenoisepotError

    checkpoint, store = pretrained
    config = FinetuneConfig(
        out_dir=tmp_path / "warm", data=store, init_checkpoint=checkpoint,
        head_init="denoiser", split="conformation", train_size=20, protocol="paper",
        epochs=8, batch_size=32, lr=1e-3, forces=False, seed=3, warmup_steps=5,
        progress_bar=False, accelerator="cpu",
    )

    def learning_rates(run: Path) -> list[float]:
        with open(run / "logs" / "metrics.csv") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("lr-AdamW/head")]
        assert all(row["lr-AdamW/backbone"] == row["lr-AdamW/head"] for row in rows)
        return [float(row["lr-AdamW/head"]) for row in sorted(rows, key=lambda r: int(r["step"]))]

    run_finetuning(config)
    warm = learning_rates(tmp_path / "warm")
    assert len(warm) == 8  # one step per epoch (20 conformations, batch 32)
    expected = [1e-3 * (1e-3 + (1 - 1e-3) * step / 5) for step in range(5)]
    assert warm[:5] == pytest.approx(expected, rel=1e-6)
    assert warm[5] == pytest.approx(1e-3, rel=1e-6)

    run_finetuning(dataclasses.replace(config, out_dir=tmp_path / "default", warmup_steps=0))
    default = learning_rates(tmp_path / "default")
    assert default[0] == pytest.approx(1e-6, rel=1e-6)
    assert default[1] == pytest.approx(1e-3, rel=1e-6)

    with pytest.raises(DenoisepotError, match="--warmup-steps"):
        run_finetuning(dataclasses.replace(config, out_dir=tmp_path / "bad", warmup_steps=-1))

"""--val-every (fine-tuning) and --val-every-steps (compare): validating every N epochs keeps
the patience, the plateau schedule's wait and the epoch cap in epochs, rounded to whole
validations, and the best checkpoint is one of the validated epochs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from denoisepot.compare.config import CompareConfig
from denoisepot.engine.finetune import FinetuneConfig, run_finetuning
from denoisepot.errors import DenoisepotError

_HPARAMS = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8}


def _config(store: Path, out: Path, **changes: object) -> FinetuneConfig:
    settings: dict[str, object] = {
        "out_dir": out, "data": store, "backbone": "schnet", "backbone_hparams": _HPARAMS,
        "batch_size": 8, "lr": 5e-3, "seed": 3, "accelerator": "cpu", "forces": False,
        "progress_bar": False, **changes}
    return FinetuneConfig(**settings)  # type: ignore[arg-type]


def _validated_epochs(run: Path) -> list[int]:
    with open(run / "logs" / "metrics.csv") as table:
        return [int(row["epoch"]) for row in csv.DictReader(table) if row["val_loss"]]


def test_validating_every_third_epoch(water_store: Path, tmp_path: Path) -> None:
    """A cap of 7 epochs validated every 3 becomes 9, validated after epochs 3, 6 and 9 (2, 5,
    8 from 0); the best checkpoint is one of them; the recipe records the rounded cap."""
    import torch

    result = run_finetuning(_config(water_store, tmp_path / "every3", protocol="converged",
                                    epochs=7, patience=30, val_every=3))
    assert result.epochs_run == 9
    assert _validated_epochs(tmp_path / "every3") == [2, 5, 8]
    assert result.best_epoch in (2, 5, 8)
    payload = torch.load(result.best_checkpoint, weights_only=True)
    assert payload["recipe"]["max_epochs"] == 9 and payload["recipe"]["val_every"] == 3

    every = run_finetuning(_config(water_store, tmp_path / "every1", protocol="converged",
                                   epochs=7, patience=30))
    assert _validated_epochs(tmp_path / "every1") == list(range(7))
    assert every.epochs_run == 7


def test_patience_stays_in_epochs(water_store: Path, tmp_path: Path) -> None:
    """With a rate too small to change any weight (the validation loss is the same every
    time), a patience of 8 epochs validated every 2 stops after 4 more validations (after
    epoch 10 of 40), as 8 epochs validated every epoch stop after 8 more (after epoch 9); the
    plateau schedule's wait (patience // 4 epochs) is converted the same way, rounded up."""
    from denoisepot.engine.finetune import validations

    settings = {"protocol": "converged", "epochs": 40, "patience": 8, "lr": 1e-30,
                "lr_schedule": "plateau"}
    coarse = run_finetuning(_config(water_store, tmp_path / "coarse", val_every=2, **settings))
    fine = run_finetuning(_config(water_store, tmp_path / "fine", **settings))
    assert _validated_epochs(tmp_path / "coarse") == [1, 3, 5, 7, 9]
    assert coarse.best_epoch == 1 and coarse.epochs_run == 10
    assert _validated_epochs(tmp_path / "fine") == list(range(9))
    assert fine.best_epoch == 0 and fine.epochs_run == 9
    assert [validations(e, 2) for e in (1, 2, 3, 8)] == [1, 1, 2, 4]
    assert [validations(e, 1) for e in (1, 8)] == [1, 8]


def test_paper_protocol_needs_whole_validations(water_store: Path, tmp_path: Path) -> None:
    """The paper protocol's fixed epochs are not rounded: a --val-every that does not divide
    them is one line before anything is written; compare refuses --val-every-steps with it."""
    with pytest.raises(DenoisepotError, match="--val-every 3 does not divide the paper "
                       "protocol's 8 epochs"):
        run_finetuning(_config(water_store, tmp_path / "paper", protocol="paper", epochs=8,
                               val_every=3))
    assert not (tmp_path / "paper").exists()
    with pytest.raises(DenoisepotError, match="--val-every-steps needs --protocol converged"):
        CompareConfig(out=tmp_path / "c", protocol="paper", val_every_steps=20).check()


def test_compare_validates_every_whole_epochs_of_the_steps() -> None:
    """--val-every-steps 20 at batch 32: every 10th epoch at 50 conformations (2 steps), every
    epoch at 1,000 (32 steps); the epoch cap is rounded up to whole validations, the patience
    is unchanged (in epochs), and 0 (the default) validates every epoch."""
    config = CompareConfig(out=Path("o"), val_every_steps=20, finetune_batch_size=32,
                           finetune_max_steps=2001)
    assert [config.val_every_for(n) for n in (50, 200, 1000)] == [10, 2, 1]
    assert config.epoch_cap(50) == 1010 and config.epoch_cap(1000) == 63
    assert config.patience_for(50) == CompareConfig(out=Path("o")).patience_for(50)
    default = CompareConfig(out=Path("o"), finetune_max_steps=2001)
    assert default.val_every_for(50) == 1 and default.epoch_cap(50) == 1001

"""Data-parallel fine-tuning on the CPU (2 processes, gloo): the ranks train on disjoint shares
of every epoch and validate on disjoint shares of the validation set, and the validation
errors that pick the best checkpoint are those of the whole validation set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from denoisepot.engine.finetune import (
    FinetuneData,
    evaluate_checkpoint,
    make_split,
    steps_per_epoch,
    validation_batch_size,
)
from denoisepot.errors import DenoisepotError

_HPARAMS = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8}


def _positions(loader: object, epoch: int) -> list[np.ndarray]:
    sampler = loader.batch_sampler  # type: ignore[attr-defined]
    sampler.set_epoch(epoch)
    return list(sampler)


def test_ranks_share_every_epoch_and_the_validation_set_disjointly(water_store: Path) -> None:
    split = make_split(water_store, "conformation", seed=0)
    assert (split["train"].size, split["val"].size) == (48, 6)
    data = FinetuneData(water_store, split, batch_size=8, seed=4)
    for epoch in (0, 3):
        whole = _positions(data.train_loader(), epoch)
        shares = [_positions(data.train_loader(rank, 2), epoch) for rank in (0, 1)]
        assert [len(share) for share in shares] == [steps_per_epoch(48, 8, 2)] * 2 == [3, 3]
        # rank r takes batches r, r + 2, ... of the one-process order of the same epoch
        for rank, share in enumerate(shares):
            assert all(np.array_equal(a, b) for a, b in zip(share, whole[rank::2], strict=True))
        together = np.concatenate([np.concatenate(share) for share in shares])
        assert np.array_equal(np.sort(together), np.arange(48))
    assert not np.array_equal(np.concatenate(_positions(data.train_loader(), 0)),
                              np.concatenate(_positions(data.train_loader(), 1)))

    for world_size in (1, 2, 3, 6):
        shares = [np.concatenate(_positions(data.val_loader(rank, world_size), 0))
                  for rank in range(world_size)]
        assert all(share.size > 0 for share in shares)
        assert np.array_equal(np.sort(np.concatenate(shares)), np.arange(6))

    # uneven: 7 batches on 2 processes make 3 steps each; too few batches or conformations fail
    assert steps_per_epoch(50, 8, 2) == 3 and steps_per_epoch(50, 8, 1) == 7
    assert validation_batch_size(5, 8, 4) == 1
    with pytest.raises(DenoisepotError, match="--batch-size"):
        steps_per_epoch(12, 8, 3)
    with pytest.raises(DenoisepotError, match="validation"):
        validation_batch_size(3, 8, 4)


def test_two_process_ddp_keeps_whole_set_validation_and_reports_every_test_conformation(
    water_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    hparams = [arg for key, value in _HPARAMS.items() for arg in ("--hparam", f"{key}={value}")]
    completed = subprocess.run(
        [sys.executable, "-m", "denoisepot", "finetune", "--data", str(water_store),
         "--backbone", "schnet", *hparams, "--epochs", "3", "--batch-size", "8", "--lr", "5e-3",
         "--seed", "2", "--out", str(out), "--accelerator", "cpu", "--devices", "2",
         "--no-progress"],
        env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    # every rank took half of each epoch's 6 batches
    state = torch.load(out / "lightning" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 3 * steps_per_epoch(48, 8, 2) == 9

    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert best["recipe"]["devices"] == 2
    recorded = best["val_metrics_ev"]
    evaluated = evaluate_checkpoint(out / "best.pt", None, "val", tmp_path / "val").metrics
    assert recorded["num_molecules"] == evaluated.num_molecules == 6
    assert recorded["num_force_components"] == evaluated.num_force_components == 6 * 3 * 3
    for key in ("energy_mae", "energy_rmse", "energy_per_atom_mae", "force_mae", "force_rmse"):
        assert recorded[key] == pytest.approx(getattr(evaluated, key), rel=1e-6), key

    reported = json.loads((out / "metrics.json").read_text())
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert reported["test_metrics"]["num_molecules"] == reported["n_test"] == len(rows) == 6
    assert reported["best_epoch"] == best["epoch"]

"""Data-parallel pretraining on the CPU (2 processes, gloo): the ranks read disjoint parts of
every batch, and the run ends where a one-process run with the same global batch ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from denoisepot.engine.data import epoch_batches, validation_batches

_HPARAMS = {"hidden_channels": 16, "num_filters": 16, "num_interactions": 1, "num_gaussians": 8}


@pytest.fixture(scope="module")
def ani1_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from molgraph_data import ensure_store

    return ensure_store(shared_data / "ani1" / "ani_gdb_s01.h5", tmp_path_factory.mktemp("s"))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_shares_of_the_one_process_batches(world_size: int) -> None:
    n_items, batch = 1000, 24
    single = epoch_batches(n_items, batch, seed=5, epoch=2, rank=0, world_size=1)
    shares = [epoch_batches(n_items, batch, seed=5, epoch=2, rank=r, world_size=world_size)
              for r in range(world_size)]
    for step, whole in enumerate(single):
        parts = [share[step] for share in shares]
        assert all(part.size == batch // world_size for part in parts)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(whole))
    # a resumed epoch starts at its batch
    later = epoch_batches(n_items, batch, seed=5, epoch=2, rank=1, world_size=world_size,
                          start=10)
    assert all(np.array_equal(a, b) for a, b in zip(later, shares[1][10:], strict=True))
    validation = [np.concatenate(validation_batches(101, 8, rank=r, world_size=world_size))
                  for r in range(world_size)]
    assert np.array_equal(np.sort(np.concatenate(validation)), np.arange(101))


def test_two_process_ddp_matches_one_process(ani1_store: Path, tmp_path: Path) -> None:
    from denoisepot.engine.pretrain import PretrainConfig, run_pretraining

    single = run_pretraining(PretrainConfig(
        backbone="schnet", out=tmp_path / "single", data=[ani1_store], epochs=1, batch_size=32,
        lr=5e-3, train_size=320, val_size=64, seed=1, backbone_hparams=_HPARAMS,
        accelerator="cpu", progress=False,
    ))
    hparams = [arg for key, value in _HPARAMS.items() for arg in ("--hparam", f"{key}={value}")]
    ddp_out = tmp_path / "ddp"
    completed = subprocess.run(
        [sys.executable, "-m", "denoisepot", "pretrain", "--backbone", "schnet",
         "--data", str(ani1_store), "--out", str(ddp_out), "--epochs", "1",
         "--batch-size", "32", "--lr", "5e-3", "--train-size", "320", "--val-size", "64",
         "--seed", "1", *hparams, "--accelerator", "cpu", "--devices", "2",
         "--strategy", "ddp", "--no-progress"],
        env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = torch.load(ddp_out / "last.pt", map_location="cpu", weights_only=True)
    assert payload["training"]["processes"] == 2
    assert payload["training"]["conformations_seen"] == single.conformations_seen == 320
    assert payload["training"]["val_baseline"] == pytest.approx(single.baseline_val_loss,
                                                                rel=1e-9)
    assert payload["training"]["val_loss"] == pytest.approx(single.final_val_loss, rel=1e-4)

"""A pretraining process killed with SIGKILL mid-epoch resumes (--resume) to the same final
validation loss as an uninterrupted run with the same seed, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def ani1_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from molgraph_data import ensure_store

    return ensure_store(shared_data / "ani1" / "ani_gdb_s01.h5", tmp_path_factory.mktemp("s"))


#: settings of both runs (command line and Python API)
_HPARAMS = {"hidden_channels": 16, "num_filters": 16, "num_interactions": 1, "num_gaussians": 8}


def _command(store: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "denoisepot", "pretrain", "--backbone", "schnet",
        "--data", str(store), "--out", str(out), "--epochs", "2", "--batch-size", "16",
        "--lr", "5e-3", "--train-size", "320", "--val-size", "64", "--seed", "3",
        "--hparam", "hidden_channels=16", "--hparam", "num_filters=16",
        "--hparam", "num_interactions=1", "--hparam", "num_gaussians=8",
        "--accelerator", "cpu", "--state-every", "1", "--no-progress", *extra,
    ]


def _steps_saved(state_file: Path) -> int:
    if not state_file.exists():
        return 0
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    return int(state["counters"]["global_step"])


def _final_val_loss(out: Path) -> float:
    payload = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert payload["training"]["epoch"] == 2
    return float(payload["training"]["val_loss"])


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_result(
    ani1_store: Path, tmp_path: Path, kill_9_when: Callable[..., None]
) -> None:
    from denoisepot.engine.pretrain import PretrainConfig, run_pretraining

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    reference = tmp_path / "reference"
    run_pretraining(PretrainConfig(
        backbone="schnet", out=reference, data=[ani1_store], epochs=2, batch_size=16, lr=5e-3,
        train_size=320, val_size=64, seed=3, backbone_hparams=_HPARAMS, accelerator="cpu",
        progress=False,
    ))

    killed = tmp_path / "killed"
    # 20 steps per epoch: kill somewhere in the first epoch, after a few saved steps
    kill_9_when(_command(ani1_store, killed),
                lambda: _steps_saved(killed / "training_state.pt") >= 7)
    assert not (killed / "last.pt").exists()
    saved = _steps_saved(killed / "training_state.pt")
    assert 7 <= saved < 20

    resumed = subprocess.run(_command(ani1_store, killed, "--resume"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _final_val_loss(killed) == pytest.approx(_final_val_loss(reference), rel=1e-5)
    reference_best = torch.load(reference / "best.pt", weights_only=True)
    resumed_best = torch.load(killed / "best.pt", weights_only=True)
    for key, value in reference_best["backbone"]["state_dict"].items():
        torch.testing.assert_close(resumed_best["backbone"]["state_dict"][key], value,
                                   rtol=1e-5, atol=1e-6)

"""A pretraining process killed with SIGKILL, or stopped by SIGTERM, mid-epoch resumes
(--resume) to the same final validation loss as an uninterrupted run with the same seed, on
the CPU."""

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


def _config(store: Path, out: Path, **changes):
    from denoisepot.engine.pretrain import PretrainConfig

    return PretrainConfig(
        backbone="schnet", out=out, data=[store], epochs=2, batch_size=16, lr=5e-3,
        train_size=320, val_size=64, seed=3, backbone_hparams=_HPARAMS, accelerator="cpu",
        progress=False, **changes,
    )


def _final_val_loss(out: Path) -> float:
    payload = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert payload["training"]["epoch"] == 2
    return float(payload["training"]["val_loss"])


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_result(
    ani1_store: Path, tmp_path: Path, kill_9_when: Callable[..., None]
) -> None:
    from denoisepot.engine.pretrain import run_pretraining

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    reference = tmp_path / "reference"
    run_pretraining(_config(ani1_store, reference))

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


def test_sigterm_keeps_the_step_it_came_at_and_resume_gives_the_uninterrupted_result(
    ani1_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (a batch system's time limit) mid-epoch: the step under way finishes, the
    training state is saved at it (the periodic save every 500 steps would have lost them
    all) and the run ends with Terminated, exit status 143; --resume then ends where the
    uninterrupted run does."""
    import signal

    from denoisepot.engine.pretrain import run_pretraining
    from denoisepot.engine.progress import TrainingProgress
    from denoisepot.errors import Terminated

    reference = tmp_path / "reference"
    run_pretraining(_config(ani1_store, reference))

    step = TrainingProgress.step
    steps: list[int] = []

    def step_and_sigterm_at_the_seventh(self, loss: float, conformations: int) -> float:
        steps.append(len(steps) + 1)
        if len(steps) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, loss, conformations)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(TrainingProgress, "step", step_and_sigterm_at_the_seventh)
    with pytest.raises(Terminated) as info:
        run_pretraining(_config(ani1_store, stopped))
    monkeypatch.undo()
    assert info.value.code == 143 and steps == list(range(1, 8))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back
    assert _steps_saved(stopped / "training_state.pt") == 7
    assert not (stopped / "last.pt").exists()

    run_pretraining(_config(ani1_store, stopped, resume=True))
    assert _final_val_loss(stopped) == pytest.approx(_final_val_loss(reference), rel=1e-5)

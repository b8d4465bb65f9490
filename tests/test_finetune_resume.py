"""A fine-tuning process killed with SIGKILL in its third epoch or later resumes (--resume)
from its last completed epoch to the best checkpoint, best epoch and test errors of an
uninterrupted run with the same seed, on the CPU, under either learning-rate schedule (with
``plateau`` the rate's halvings and the early stop fall on the same epochs); resuming a
finished run trains no further, an early-stopped one included; a checkpoint write that fails
leaves the previous one whole."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from denoisepot.engine.finetune import (
    AtomicCheckpointIO,
    FinetuneConfig,
    FinetuneResult,
    run_finetuning,
)

_HPARAMS = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8}
_EPOCHS = 8


def _config(store: Path, out: Path, **changes: object) -> FinetuneConfig:
    settings: dict[str, object] = {
        "out_dir": out, "data": store, "backbone": "schnet", "backbone_hparams": _HPARAMS,
        "epochs": _EPOCHS, "batch_size": 4, "lr": 5e-3, "seed": 3, "accelerator": "cpu",
        "progress_bar": False, **changes}
    return FinetuneConfig(**settings)  # type: ignore[arg-type]


def _command(store: Path, out: Path, *extra: str, epochs: int = _EPOCHS, lr: float = 5e-3
             ) -> list[str]:
    hparams = [arg for key, value in _HPARAMS.items() for arg in ("--hparam", f"{key}={value}")]
    return [sys.executable, "-m", "denoisepot", "finetune", "--data", str(store),
            "--backbone", "schnet", *hparams, "--epochs", str(epochs), "--batch-size", "4",
            "--lr", str(lr), "--seed", "3", "--out", str(out), "--accelerator", "cpu",
            "--no-progress", *extra]


def _completed_epoch(resume_file: Path) -> int:
    """The last epoch (from 0) whose end the resume checkpoint holds; -1 before the first."""
    if not resume_file.exists():
        return -1
    return int(torch.load(resume_file, map_location="cpu", weights_only=True)["epoch"])


def _assert_same_run(resumed: FinetuneResult, reference: FinetuneResult) -> None:
    assert (resumed.epochs_run, resumed.best_epoch) == (reference.epochs_run,
                                                        reference.best_epoch)
    for key, value in reference.test_metrics.as_dict().items():
        assert getattr(resumed.test_metrics, key) == pytest.approx(value, rel=1e-5), key
    expected = torch.load(reference.best_checkpoint, weights_only=True)
    actual = torch.load(resumed.best_checkpoint, weights_only=True)
    assert actual["epoch"] == expected["epoch"]
    for part in ("backbone", "head"):
        for key, value in expected[part]["state_dict"].items():
            torch.testing.assert_close(actual[part]["state_dict"][key], value, rtol=1e-5,
                                       atol=1e-7)


def test_kill_9_in_a_later_epoch_then_resume_gives_the_uninterrupted_result(
    water_store: Path, tmp_path: Path, record_epochs: Callable[[], list[int]],
    kill_9_when: Callable[..., None],
) -> None:
    reference = run_finetuning(_config(water_store, tmp_path / "reference"))
    assert reference.epochs_run == _EPOCHS

    killed = tmp_path / "killed"
    resume_file = killed / "lightning" / "last.ckpt"
    # kill once epochs 0 and 1 are complete: in epoch 2 or a little later
    kill_9_when(_command(water_store, killed), lambda: _completed_epoch(resume_file) >= 1)
    assert not (killed / "metrics.json").exists()
    completed = _completed_epoch(resume_file)
    assert 1 <= completed < _EPOCHS - 1
    # the best epoch comes after the kill, so best.pt depends on the resumed training
    assert reference.best_epoch > completed

    trained = record_epochs()
    resumed = run_finetuning(_config(water_store, killed, resume=True))
    assert trained == list(range(completed + 1, _EPOCHS))
    _assert_same_run(resumed, reference)
    # the CSV log keeps the epochs before the kill; the resumed ones go to logs/resumed-1
    before = _logged_epochs(killed / "logs" / "metrics.csv")
    after = _logged_epochs(killed / "logs" / "resumed-1" / "metrics.csv")
    assert set(range(completed + 1)) <= before
    assert after == set(range(completed + 1, _EPOCHS))


def test_kill_9_of_a_plateau_run_then_resume_keeps_its_halvings_and_early_stop(
    water_store: Path, tmp_path: Path, kill_9_when: Callable[..., None],
) -> None:
    # lr 1e-2: the validation loss is best at epoch 2; patience 8 halves the rate after 2
    # epochs without a better one (twice here) and ends the run by early stopping, not the cap
    settings = {"protocol": "converged", "lr_schedule": "plateau", "patience": 8,
                "epochs": 12, "lr": 1e-2}
    reference = run_finetuning(_config(water_store, tmp_path / "reference", **settings))
    assert reference.epochs_run < 12
    expected = _logged_rates(tmp_path / "reference" / "logs" / "metrics.csv")

    killed = tmp_path / "killed"
    resume_file = killed / "lightning" / "last.ckpt"
    command = _command(water_store, killed, "--protocol", "converged", "--lr-schedule",
                       "plateau", "--patience", "8", epochs=12, lr=1e-2)
    # killed after the best epoch, so the plateau's record of it decides the next halving
    kill_9_when(command, lambda: _completed_epoch(resume_file) >= reference.best_epoch + 1)
    completed = _completed_epoch(resume_file)
    assert reference.best_epoch < completed < reference.epochs_run - 1
    # the resumed epochs run at a halved rate at some point, so they depend on the plateau's
    # state (the rate is logged at each epoch's last step)
    steps_per_epoch = min(expected) + 1
    later = [rate for step, rate in expected.items()
             if step >= (completed + 1) * steps_per_epoch]
    assert min(later) < max(expected.values())

    resumed = run_finetuning(_config(water_store, killed, resume=True, **settings))
    _assert_same_run(resumed, reference)
    logged = {**_logged_rates(killed / "logs" / "metrics.csv"),
              **_logged_rates(killed / "logs" / "resumed-1" / "metrics.csv")}
    assert logged == pytest.approx(expected)


def _logged_rates(metrics_csv: Path) -> dict[int, float]:
    """The backbone's learning rate by optimizer step in a Lightning CSV log."""
    with open(metrics_csv) as handle:
        return {int(row["step"]): float(row["lr-AdamW/backbone"])
                for row in csv.DictReader(handle) if row.get("lr-AdamW/backbone")}


def _logged_epochs(metrics_csv: Path) -> set[int]:
    """Epochs with a validation row in a Lightning CSV log."""
    with open(metrics_csv) as handle:
        return {int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val_loss")}


def test_an_early_stopped_run_resumed_trains_no_further(
    water_store: Path, tmp_path: Path, record_epochs: Callable[[], list[int]]
) -> None:
    # lr 0.5 overshoots, so validation stops improving and patience 1 ends the run early
    settings = {"protocol": "converged", "epochs": 6, "patience": 1, "lr": 0.5,
                "batch_size": 8}
    finished = run_finetuning(_config(water_store, tmp_path / "run", **settings))
    assert finished.epochs_run < 6
    trained = record_epochs()
    again = run_finetuning(_config(water_store, tmp_path / "run", resume=True, **settings))
    assert trained == []
    _assert_same_run(again, finished)


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        writer.save_checkpoint({"epoch": 2, "not_picklable": lambda: None}, path)
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_run_recorded_before_newer_settings_existed_still_resumes(
    water_store: Path, tmp_path: Path
) -> None:
    """A run.json written before --train-subset, --head-init, --head-shift, --validate-start
    and --warmup-steps existed resumes with the values such runs were made with, and a
    different value is named in one line (the old run drew its subset at random)."""
    import json

    from denoisepot.errors import DenoisepotError

    settings = {"protocol": "converged", "epochs": 6, "patience": 1, "lr": 0.5,
                "batch_size": 8, "train_subset": "random", "head_shift": "atom"}
    finished = run_finetuning(_config(water_store, tmp_path / "run", **settings))
    run_file = tmp_path / "run" / "run.json"
    recorded = json.loads(run_file.read_text())
    for key in ("train_subset", "head_init", "head_shift", "validate_start", "warmup_steps"):
        del recorded[key]
    run_file.write_text(json.dumps(recorded))
    again = run_finetuning(_config(water_store, tmp_path / "run", resume=True, **settings))
    _assert_same_run(again, finished)
    with pytest.raises(DenoisepotError, match=r"train_subset: 'random' -> 'stratified'"):
        run_finetuning(_config(water_store, tmp_path / "run", resume=True,
                               **{**settings, "train_subset": "stratified"}))


def test_a_higher_epoch_cap_continues_only_a_plateau_run(
    water_store: Path, tmp_path: Path, record_epochs: Callable[[], list[int]]
) -> None:
    """--resume with a higher --epochs: under the plateau schedule the run trains on from its
    cap to where a run given the higher cap from the start ends (nothing before the cap
    depends on it), and run.json records the new cap; under the cosine schedule, whose decay
    runs to the cap, and with any other setting changed too, it is refused in one line and
    run.json is left as it was."""
    import json

    from denoisepot.errors import DenoisepotError

    plateau = {"protocol": "converged", "lr_schedule": "plateau", "patience": 8, "lr": 1e-2}
    reference = run_finetuning(_config(water_store, tmp_path / "reference", epochs=12,
                                       **plateau))
    run = tmp_path / "run"
    capped = run_finetuning(_config(water_store, run, epochs=3, **plateau))
    assert capped.epochs_run == 3 < reference.epochs_run
    run_file = run / "run.json"
    recorded = run_file.read_text()
    with pytest.raises(DenoisepotError, match=r"run\.json: --resume .*\(seed: 3 -> 4\)"):
        run_finetuning(_config(water_store, run, resume=True, epochs=12, seed=4, **plateau))
    assert run_file.read_text() == recorded

    trained = record_epochs()
    continued = run_finetuning(_config(water_store, run, resume=True, epochs=12, **plateau))
    assert trained == list(range(3, reference.epochs_run))
    _assert_same_run(continued, reference)
    assert json.loads(run_file.read_text())["epochs"] == 12

    cosine = tmp_path / "cosine"
    run_finetuning(_config(water_store, cosine, epochs=3, protocol="converged", patience=8))
    recorded = (cosine / "run.json").read_text()
    with pytest.raises(DenoisepotError, match=r"\(epochs: 3 -> 12\)"):
        run_finetuning(_config(water_store, cosine, resume=True, epochs=12,
                               protocol="converged", patience=8))
    assert (cosine / "run.json").read_text() == recorded

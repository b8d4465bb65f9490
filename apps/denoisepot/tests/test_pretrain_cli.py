"""`denoisepot pretrain` refuses bad input with one clear line and exit status 1, before any
training starts, and leaves nothing half-written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from denoisepot.cli import main

_TINY = ["--hparam", "hidden_channels=8", "--hparam", "num_filters=8",
         "--hparam", "num_interactions=1", "--hparam", "num_gaussians=4"]


@pytest.fixture(scope="module")
def ani1_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from molgraph_data import ensure_store

    return ensure_store(shared_data / "ani1" / "ani_gdb_s01.h5", tmp_path_factory.mktemp("s"))


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid store with no conformations."""
    from molgraph_data.store import StoreWriter

    path = tmp_path_factory.mktemp("empty") / "empty.h5"
    writer = StoreWriter(path)
    writer.finish({"sources": []})
    return path


def _fail(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *args: str) -> str:
    """Run the CLI expecting a user error; return its one stderr line."""
    monkeypatch.setattr(sys, "argv", ["denoisepot", "pretrain", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_unknown_backbone(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                          ani1_store: Path, tmp_path: Path) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "painn", "--data", str(ani1_store),
                 "--out", str(tmp_path / "run"))
    assert "--backbone" in line and "'painn'" in line and "schnet" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sigma", ["0", "-0.1", "nan"])
def test_sigma_must_be_positive(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], ani1_store: Path,
                                tmp_path: Path, sigma: str) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "schnet", "--data", str(ani1_store),
                 "--out", str(tmp_path / "run"), "--sigma", sigma)
    assert "--sigma must be a positive number of Å" in line
    assert not (tmp_path / "run").exists()


def test_unknown_hyperparameter(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], ani1_store: Path,
                                tmp_path: Path) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "schnet", "--data", str(ani1_store),
                 "--out", str(tmp_path / "run"), "--hparam", "hidden=3")
    assert "--hparam hidden" in line and "hidden_channels" in line


def test_noise_head_that_does_not_fit(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], ani1_store: Path,
                                      tmp_path: Path) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "schnet", "--data", str(ani1_store),
                 "--out", str(tmp_path / "run"), "--noise-head", "displacement", *_TINY)
    assert "--noise-head" in line and "displacement" in line


def test_store_without_conformations(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], empty_store: Path,
                                     tmp_path: Path) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "schnet", "--data", str(empty_store),
                 "--out", str(tmp_path / "run"), *_TINY)
    assert str(empty_store) in line and "no conformations" in line
    assert not (tmp_path / "run" / "run.json").exists()


def test_missing_data_file(monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _fail(monkeypatch, capsys, "--backbone", "schnet", "--data",
                 str(tmp_path / "nope.h5"), "--out", str(tmp_path / "run"), *_TINY)
    assert "nope.h5" in line
    assert not (tmp_path / "run" / "run.json").exists()


def test_output_folder_of_another_run_needs_resume_or_overwrite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ani1_store: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    args = ["--backbone", "schnet", "--data", str(ani1_store), "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--train-size", "32", "--val-size", "16",
            "--accelerator", "cpu", "--no-progress", *_TINY]
    monkeypatch.setattr(sys, "argv", ["denoisepot", "pretrain", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    first = (out / "best.pt").read_bytes()
    capsys.readouterr()

    line = _fail(monkeypatch, capsys, *args)
    assert str(out) in line and "--resume" in line and "--overwrite" in line
    assert (out / "best.pt").read_bytes() == first

    line = _fail(monkeypatch, capsys, *args, "--resume", "--sigma", "0.1")
    assert "run.json" in line and "sigma_angstrom" in line

    line = _fail(monkeypatch, capsys, *args, "--resume", "--overwrite")
    assert "--resume and --overwrite" in line

    # --resume of a finished run changes nothing; --overwrite trains again, identically
    monkeypatch.setattr(sys, "argv", ["denoisepot", "pretrain", *args, "--resume"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    assert (out / "best.pt").read_bytes() == first
    monkeypatch.setattr(sys, "argv", ["denoisepot", "pretrain", *args, "--overwrite"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    assert "validation loss" in capsys.readouterr().out

    # a run file that is not a JSON object of settings is named, and nothing is touched
    kept = (out / "best.pt").read_bytes()
    (out / "run.json").write_text("[1, 2]")
    line = _fail(monkeypatch, capsys, *args, "--resume")
    assert str(out / "run.json") in line and "not a run file" in line
    assert (out / "best.pt").read_bytes() == kept


def test_hparam_values_are_parsed_as_json_or_text() -> None:
    from denoisepot.cli.pretrain import parse_hparams
    from denoisepot.errors import DenoisepotError

    assert parse_hparams(["a=3", "b=0.5", "c=true", "d=silu", "e=[1, 2]"]) == {
        "a": 3, "b": 0.5, "c": True, "d": "silu", "e": [1, 2]}
    with pytest.raises(DenoisepotError, match="key=value"):
        parse_hparams(["hidden"])


def test_progress_keeps_one_bar_and_a_line_per_epoch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ani1_store: Path,
    tmp_path: Path,
) -> None:
    """Written to a log file, a pretraining's progress is one line per epoch and one bar,
    the last epoch's: not a bar for every epoch (hundreds of lines for a long run)."""
    monkeypatch.setattr(sys, "argv", [
        "denoisepot", "pretrain", "--backbone", "schnet", "--data", str(ani1_store), "--out",
        str(tmp_path / "run"), "--epochs", "4", "--batch-size", "16", "--train-size", "32",
        "--val-size", "16", "--accelerator", "cpu", *_TINY])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if ": validation loss" in line] == [
        f"epoch {n}" for n in range(1, 5)]
    bars = [line for line in lines if line.startswith("epoch ") and "━" in line]
    assert len(bars) == 1 and bars[0].startswith("epoch 4/4"), bars


def test_the_closing_table_of_a_long_run_shows_a_dozen_epochs_and_the_best() -> None:
    """Hundreds of epochs (480 pretrain the rMD17 molecules) would make the closing table
    as long as the per-epoch log above it: it shows the first, the last, evenly spaced
    epochs between and the best; a short run shows every epoch."""
    from denoisepot.cli.pretrain import SUMMARY_EPOCHS, summary_epochs

    history = [{"epoch": e, "val_loss": 1.0 / e} for e in range(1, 481)]
    history[300]["val_loss"] = 0.0  # the best, between the evenly spaced epochs
    epochs = [row["epoch"] for row in summary_epochs(history)]
    assert epochs[0] == 1 and epochs[-1] == 480 and 301 in epochs
    assert len(epochs) == SUMMARY_EPOCHS + 1 and epochs == sorted(set(epochs))
    assert summary_epochs(history[:5]) == history[:5]

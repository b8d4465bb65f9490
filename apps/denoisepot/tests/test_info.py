"""`denoisepot info CKPT` prints pretraining and fine-tuning checkpoints; bad files get one
clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from denoise_objective import build_noise_head, noise_head_to_dict
from denoisepot.cli import main
from denoisepot.engine.state import save_pretrain_checkpoint
from equivariant_backbones import atomic_torch_save, backbone_to_dict, build_backbone


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["denoisepot", "info", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_info_prints_a_pretraining_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    backbone = build_backbone("egnn", hidden_channels=8, num_layers=1)
    path = save_pretrain_checkpoint(tmp_path / "best.pt", {
        "backbone": backbone_to_dict(backbone),
        "noise_head": noise_head_to_dict(build_noise_head(backbone)),
        "objective": {"sigma_angstrom": 0.2},
        "elements": list(range(1, 40)),
        "training": {"val_loss": 0.0123456789},
    })
    assert _run(monkeypatch, str(path)) == 0
    out = capsys.readouterr().out
    assert "pretrain checkpoint, format 1" in out
    assert "backbone.name" in out and "egnn" in out
    assert "backbone.hparams.hidden_channels" in out
    n_values = sum(t.numel() for t in backbone.state_dict().values())
    assert f"{n_values:,} values" in out
    assert "noise_head.kind" in out and "displacement" in out
    assert "0.0123457" in out
    assert "(39 items)" in out


def test_info_prints_a_finetune_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = atomic_torch_save({"kind": "finetune", "format_version": 1,
                              "reference_energies": torch.zeros(119, dtype=torch.float64),
                              "head": {"state_dict": {"w": torch.ones(4, 4)}}},
                             tmp_path / "ft.pt")
    assert _run(monkeypatch, str(path)) == 0
    out = capsys.readouterr().out
    assert "finetune checkpoint" in out
    assert "tensor (119,) torch.float64" in out
    assert "1 tensors, 16 values" in out


def test_info_on_a_file_that_is_not_a_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    assert _run(monkeypatch, str(bad)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert _run(monkeypatch, str(tmp_path / "missing.pt")) == 1
    assert "no such checkpoint" in capsys.readouterr().err

"""Loading a pretraining checkpoint: strict weights, the noise head dropped and logged, unseen
elements warned about, wrong files refused with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from equivariant_backbones import (
    CheckpointError,
    atomic_torch_save,
    backbone_to_dict,
    build_backbone,
)
from finetune_heads import UnseenElementsWarning, load_pretrained_backbone


def _pretrain_checkpoint(
    path: Path, hparams: dict[str, float], **changes: object
) -> dict[str, object]:
    torch.manual_seed(123)
    backbone = build_backbone("schnet", **hparams)
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.01)
    payload: dict[str, object] = {
        "kind": "pretrain",
        "format_version": 1,
        "backbone": backbone_to_dict(backbone),
        "noise_head": {"kind": "gradient", "hparams": {"in_features": 16},
                       "state_dict": {"mlp.0.weight": torch.zeros(8, 16),
                                      "mlp.0.bias": torch.zeros(8)}},
        "sigma_angstrom": 0.2,
        "elements": [1, 6, 8],
        "seed": 0,
    }
    payload.update(changes)
    atomic_torch_save(payload, path)
    return payload


def test_every_backbone_weight_is_loaded_and_the_noise_head_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, schnet_hparams: dict[str, float]
) -> None:
    payload = _pretrain_checkpoint(tmp_path / "pre.pt", schnet_hparams)
    torch.manual_seed(0)
    fresh = build_backbone("schnet", **schnet_hparams)
    with caplog.at_level(logging.INFO, logger="finetune_heads"):
        loaded = load_pretrained_backbone(tmp_path / "pre.pt", finetune_elements=[1, 6, 8])
    stored = payload["backbone"]["state_dict"]  # type: ignore[index]
    for name, parameter in loaded.backbone.named_parameters():
        torch.testing.assert_close(parameter.detach(), stored[name])
        assert not torch.equal(parameter.detach(), dict(fresh.named_parameters())[name].detach())
    assert loaded.backbone.hparams == payload["backbone"]["hparams"]  # type: ignore[index]
    assert loaded.dropped_keys == ["noise_head.mlp.0.bias", "noise_head.mlp.0.weight"]
    assert "noise_head.mlp.0.weight" in caplog.text and "noise_head.mlp.0.bias" in caplog.text
    assert loaded.unseen_elements == []


def test_unseen_elements_warn_with_their_atomic_numbers(
    tmp_path: Path, schnet_hparams: dict[str, float]
) -> None:
    _pretrain_checkpoint(tmp_path / "pre.pt", schnet_hparams)
    with pytest.warns(UnseenElementsWarning, match=r"\[9, 16\]"):
        loaded = load_pretrained_backbone(tmp_path / "pre.pt", finetune_elements=[1, 6, 9, 16])
    assert loaded.unseen_elements == [9, 16]


def test_mismatched_weights_are_an_error_listing_the_keys(
    tmp_path: Path, schnet_hparams: dict[str, float]
) -> None:
    payload = _pretrain_checkpoint(tmp_path / "pre.pt", schnet_hparams)
    state = payload["backbone"]["state_dict"]  # type: ignore[index]
    state["stray.weight"] = torch.zeros(2)
    del state["embedding.weight"]
    state["filter_bias1"] = torch.zeros(3)
    atomic_torch_save(payload, tmp_path / "pre.pt")
    with pytest.raises(CheckpointError) as info:
        load_pretrained_backbone(tmp_path / "pre.pt")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "pre.pt") in message
    for key in ("missing embedding.weight", "unexpected stray.weight",
                "wrong shape filter_bias1"):
        assert key in message


def test_a_finetuned_or_foreign_version_checkpoint_is_refused(
    tmp_path: Path, schnet_hparams: dict[str, float]
) -> None:
    _pretrain_checkpoint(tmp_path / "fine.pt", schnet_hparams, kind="finetune")
    with pytest.raises(CheckpointError, match="finetune checkpoint, but a pretrain"):
        load_pretrained_backbone(tmp_path / "fine.pt")
    _pretrain_checkpoint(tmp_path / "v9.pt", schnet_hparams, format_version=9)
    with pytest.raises(CheckpointError, match="format version 9"):
        load_pretrained_backbone(tmp_path / "v9.pt")

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


def _gradient_head_state(in_features: int, hidden: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "energy.0.weight": torch.randn(hidden, in_features, generator=generator),
        "energy.0.bias": torch.randn(hidden, generator=generator),
        "energy.2.weight": torch.randn(1, hidden, generator=generator),
        "energy.2.bias": torch.randn(1, generator=generator),
    }


def test_the_energy_head_starts_as_the_denoisers_scalar_then_scales_to_a_line(
    tmp_path: Path,
) -> None:
    from finetune_heads import EnergyHead, load_denoiser_energy, scale_energy_head

    state = _gradient_head_state(16, 8, seed=4)
    _pretrain_checkpoint(tmp_path / "pre.pt", {"hidden_channels": 16, "num_filters": 16},
                         noise_head={"kind": "gradient", "hparams": {}, "state_dict": state})
    reference = torch.zeros(119, dtype=torch.float64)
    reference[[1, 6, 8]] = torch.tensor([-13.6, -1029.0, -2041.0], dtype=torch.float64)
    head = EnergyHead(16, hidden_features=8, reference_energies_ev=reference,
                      residual_scale_ev=0.3, residual_shift_ev=-0.05)
    load_denoiser_energy(head, tmp_path / "pre.pt")
    features = torch.randn(7, 16, generator=torch.Generator().manual_seed(1))
    z = torch.tensor([8, 1, 1, 6, 1, 1, 1])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    u_atoms = torch.nn.functional.silu(features @ state["energy.0.weight"].T
                                       + state["energy.0.bias"]) @ state["energy.2.weight"].T
    u = torch.zeros(2, dtype=torch.float64).index_add(
        0, batch, (u_atoms.squeeze(-1) + state["energy.2.bias"]).double())
    scale_energy_head(head, slope_ev=-2.5, shift_ev_per_atom=0.125)
    expected = (torch.zeros(2, dtype=torch.float64).index_add(0, batch, reference[z])
                - 2.5 * u + 0.125 * torch.tensor([3.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(head(features, z, batch, 2), expected, rtol=1e-6, atol=1e-5)


def test_only_a_fitting_gradient_noise_head_can_start_the_energy_head(tmp_path: Path) -> None:
    from finetune_heads import EnergyHead, load_denoiser_energy

    hparams = {"hidden_channels": 16, "num_filters": 16}
    _pretrain_checkpoint(tmp_path / "vector.pt", hparams,
                         noise_head={"kind": "vector", "hparams": {}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="only a gradient noise head"):
        load_denoiser_energy(EnergyHead(16, hidden_features=8), tmp_path / "vector.pt")
    _pretrain_checkpoint(tmp_path / "grad.pt", hparams, noise_head={
        "kind": "gradient", "hparams": {}, "state_dict": _gradient_head_state(16, 8, seed=0)})
    for head in (EnergyHead(16, hidden_features=12), EnergyHead(16, hidden_features=8,
                                                                readout="sum_then_mlp")):
        with pytest.raises(CheckpointError, match="does not fit the energy head"):
            load_denoiser_energy(head, tmp_path / "grad.pt")

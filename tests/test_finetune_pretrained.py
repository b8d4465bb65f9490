"""From a real (tiny) denoise pretraining to the potential that fine-tuning starts from:
every backbone parameter comes from the checkpoint and differs from its random
initialisation, the energy head is new (the same as the from-scratch row's), and the dropped
noise-head keys are in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from denoisepot.engine.finetune import FinetuneConfig, build_potential
from denoisepot.engine.pretrain import PretrainConfig, run_pretraining
from equivariant_backbones import build_backbone
from molgraph_data import convert, fit_reference_energies

TINY = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 2, "num_gaussians": 8}


@pytest.fixture(scope="module")
def pretrained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch SchNet pretraining on 64 rMD17 ethanol geometries: (checkpoint, store)."""
    folder = tmp_path_factory.mktemp("pretrained")
    store = convert([shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"], folder / "eth.h5")
    result = run_pretraining(PretrainConfig(
        backbone="schnet", out=folder / "pre", data=[store], epochs=1, batch_size=16,
        train_size=64, backbone_hparams=TINY, progress=False, accelerator="cpu", seed=5,
    ))
    return result.best_checkpoint, store


def test_every_backbone_parameter_is_pretrained_and_the_head_is_new(
    pretrained: tuple[Path, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    checkpoint, store = pretrained
    payload = torch.load(checkpoint, weights_only=True)
    torch.manual_seed(5)
    initial = dict(build_backbone("schnet", **TINY).named_parameters())
    reference = fit_reference_energies(store)
    with caplog.at_level(logging.INFO, logger="finetune_heads"):
        potential = build_potential(
            FinetuneConfig(out_dir=tmp_path, init_checkpoint=checkpoint, seed=1), reference,
            [1, 6, 8])
    for name, parameter in potential.backbone.named_parameters():
        torch.testing.assert_close(parameter.detach(), payload["backbone"]["state_dict"][name])
        assert not torch.equal(parameter.detach(), initial[name].detach()), name
    noise_keys = list(payload["noise_head"]["state_dict"])
    assert noise_keys
    for key in noise_keys:
        assert f"noise_head.{key}" in caplog.text

    scratch = build_potential(
        FinetuneConfig(out_dir=tmp_path, backbone="schnet", backbone_hparams=TINY, seed=1),
        reference, [1, 6, 8])
    for (name, head_param), scratch_param in zip(
        potential.head.named_parameters(), scratch.head.parameters(), strict=True
    ):
        torch.testing.assert_close(head_param, scratch_param, msg=name)
    torch.testing.assert_close(potential.head.reference_energies_ev,
                               torch.from_numpy(reference.per_element_ev))

"""The registry, the portable form and checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from equivariant_backbones import (
    Backbone,
    CheckpointError,
    UnknownBackboneError,
    atomic_torch_save,
    backbone_from_dict,
    backbone_to_dict,
    build_backbone,
    list_backbones,
    load_checkpoint,
    register_backbone,
)

TINY = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 4}


def test_list_contains_the_paper_networks() -> None:
    names = list_backbones()
    assert names == sorted(names)
    assert {"schnet", "egnn"} <= set(names)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownBackboneError) as info:
        build_backbone("painn")
    message = str(info.value)
    assert "painn" in message
    assert all(name in message for name in list_backbones())


def test_overrides_reach_the_network() -> None:
    backbone = build_backbone("schnet", **TINY, cutoff=3.0)
    assert backbone.cutoff == 3.0 and backbone.scalar_dim == 8
    assert backbone.hparams == {**TINY, "cutoff": 3.0}


def test_registering_a_name_twice_is_refused() -> None:
    class Other(Backbone):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_backbone("schnet")(Other)


def test_bad_noise_head_is_refused() -> None:
    class Odd(Backbone):
        default_noise_head = "telepathy"

    with pytest.raises(ValueError, match="default_noise_head"):
        register_backbone("odd-test-only")(Odd)
    assert "odd-test-only" not in list_backbones()


def test_portable_form_rebuilds_identical_network() -> None:
    original = build_backbone("schnet", **TINY)
    rebuilt = backbone_from_dict(backbone_to_dict(original))
    z = torch.tensor([6, 1, 1, 8])
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.2]])
    batch = torch.zeros(4, dtype=torch.long)
    assert torch.equal(original(z, pos, batch).scalar, rebuilt(z, pos, batch).scalar)


def test_portable_form_checks_version_and_weights() -> None:
    spec = backbone_to_dict(build_backbone("schnet", **TINY))
    with pytest.raises(CheckpointError, match="portable_version"):
        backbone_from_dict({**spec, "portable_version": 99})
    broken = {**spec, "state_dict": dict(list(spec["state_dict"].items())[1:])}
    with pytest.raises(RuntimeError, match="Missing key"):
        backbone_from_dict(broken)
    assert isinstance(backbone_from_dict(broken, load_weights=False), Backbone)


def _checkpoint(kind: str = "pretrain", version: int = 1) -> dict:
    return {"kind": kind, "format_version": version,
            "backbone": backbone_to_dict(build_backbone("schnet", **TINY))}


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    path = atomic_torch_save(_checkpoint(), tmp_path / "sub" / "model.ckpt")
    assert path.is_file() and list(path.parent.iterdir()) == [path]
    payload = load_checkpoint(path, expected_kind="pretrain")
    assert payload["backbone"]["name"] == "schnet"
    backbone_from_dict(payload["backbone"])


def test_checkpoint_wrong_kind(tmp_path: Path) -> None:
    path = atomic_torch_save(_checkpoint("finetune"), tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="finetune checkpoint, but a pretrain"):
        load_checkpoint(path, expected_kind="pretrain")


def test_checkpoint_wrong_version(tmp_path: Path) -> None:
    path = atomic_torch_save(_checkpoint(version=7), tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="format version 7 is not supported"):
        load_checkpoint(path)


def test_checkpoint_corrupt_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable denoisepot checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.ckpt")
    atomic_torch_save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="no kind/format_version header"):
        load_checkpoint(path)


def test_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"kind": "pretrain", "format_version": 1, "object": Path("x")}, path)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)

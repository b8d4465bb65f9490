"""Every registered backbone through the reusable suite in ``equivariant_backbones.testing``,
with tiny hyperparameters so that the whole suite stays fast."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from equivariant_backbones import backbone_class, build_backbone, list_backbones
from equivariant_backbones import testing as suite

#: tiny hyperparameters per backbone (keys the constructor does not accept are dropped);
#: names not listed get GENERIC_SMALL where they accept it
SMALL: dict[str, dict[str, Any]] = {
    "schnet": {"hidden_channels": 16, "num_filters": 16, "num_interactions": 2,
               "num_gaussians": 8},
    "egnn": {"hidden_channels": 16, "num_layers": 2},
    "et": {"hidden_channels": 16, "num_layers": 2, "num_rbf": 8, "num_heads": 2},
    "se3t": {"channels": 4, "max_degree": 2, "num_layers": 2, "num_heads": 2,
             "scalar_channels": 8, "num_basis": 6, "radial_hidden": 8},
}

GENERIC_SMALL: dict[str, Any] = {
    "hidden_channels": 16, "num_filters": 16, "num_interactions": 2, "num_layers": 2,
    "num_gaussians": 8, "num_rbf": 8, "num_radial": 8, "num_heads": 2, "channels": 4,
}

#: how each network compiles (check_compiles's answer); names not listed are not pinned.
#: None would mean neither works. TorchScript works for none (torch 2.15 deprecates it).
COMPILE_MODE: dict[str, str | None] = {
    "schnet": "torch.compile",
    "egnn": "torch.compile",
    "et": "torch.compile",
    "se3t": "torch.compile",
}


def small_overrides(name: str) -> dict[str, Any]:
    """The tiny hyperparameters used for ``name`` in these tests."""
    accepted = inspect.signature(backbone_class(name).__init__).parameters
    wanted = SMALL.get(name, GENERIC_SMALL)
    return {key: value for key, value in wanted.items() if key in accepted}


CHECKS = [check for check in suite.ALL_CHECKS if check is not suite.check_compiles]

#: switches past the paper that change a backbone's function, run through the same suite
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "egnn-rbf": ("egnn", {"num_rbf": 8}),
    "se3t-plain-radial": ("se3t", {"radial_norm": False}),
}


@pytest.mark.parametrize("name", [*list_backbones(), *VARIANTS])
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_backbone_property(name: str, check) -> None:
    backbone, extra = VARIANTS.get(name, (name, {}))
    check(lambda: build_backbone(backbone, **small_overrides(backbone), **extra))


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_compiles(name: str, record_property) -> None:
    mode = suite.check_compiles(lambda: build_backbone(name, **small_overrides(name)))
    record_property("compile_mode", mode)
    if name in COMPILE_MODE:
        assert mode == COMPILE_MODE[name]


def test_paper_defaults() -> None:
    schnet = build_backbone("schnet")
    assert schnet.hparams == {"hidden_channels": 256, "num_filters": 256, "num_interactions": 5,
                              "num_gaussians": 32, "cutoff": 5.0}
    assert schnet.scalar_dim == 256 and schnet.default_noise_head == "gradient"
    egnn = build_backbone("egnn")
    assert egnn.hparams == {"hidden_channels": 256, "num_layers": 5, "cutoff": 5.0,
                            "num_rbf": 0}
    assert egnn.outputs_position and egnn.default_noise_head == "displacement"


def test_egnn_radial_basis_switch() -> None:
    """``num_rbf=0`` is the paper's EGNN (raw d^2, no basis); N >= 2 gives every layer an
    N-function Gaussian expansion of the distance; a single function is refused."""
    import math

    import torch

    paper = build_backbone("egnn", hidden_channels=8, num_layers=2)
    assert paper.rbf is None and all(hasattr(layer, "edge_distance") for layer in paper.layers)
    switched = build_backbone("egnn", hidden_channels=8, num_layers=2, num_rbf=6)
    assert switched.rbf.centres.shape == (6,)
    assert all(layer.edge_rbf.in_features == 6 for layer in switched.layers)
    # each Gaussian peaks (value 1) at its own centre; neighbours there are exp(-1/2)
    values = switched.rbf(switched.rbf.centres)
    assert torch.allclose(values.diagonal(), torch.ones(6))
    assert torch.allclose(values.diagonal(1), torch.full((5,), math.exp(-0.5)))
    with pytest.raises(ValueError, match="num_rbf"):
        build_backbone("egnn", num_rbf=1)

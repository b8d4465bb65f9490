"""The equivariant transformer: symmetry, exact gradients, continuity at the cutoff,
portable form and torch.compile, on a tiny network in float64."""

from __future__ import annotations

import json

import pytest
import torch
from equivariant_backbones import backbone_from_dict, backbone_to_dict, build_backbone
from equivariant_backbones.et import EquivariantTransformer, ExpNormalBasis

TINY = {"hidden_channels": 16, "num_layers": 2, "num_rbf": 8, "num_heads": 4, "cutoff": 3.0}


def _tiny(seed: int = 0) -> EquivariantTransformer:
    torch.manual_seed(seed)
    model = build_backbone("et", **TINY).double()
    # Non-zero biases and filters, so that no term is trivially zero at initialisation.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _molecules() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    z = torch.tensor([6, 1, 1, 8, 7, 1, 1, 6, 9])
    pos = 1.2 * torch.randn(9, 3, generator=generator, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    return z, pos, batch


def _orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if reflect else q


def test_registered_with_paper_defaults() -> None:
    model = build_backbone("et")
    assert model.default_noise_head == "vector"
    assert (model.scalar_dim, model.vector_dim, model.cutoff) == (256, 256, 5.0)
    assert len(model.layers) == 6 and model.layers[0].num_heads == 8
    assert model.rbf.means.numel() == 32 and model.rbf.means.requires_grad
    assert model.embedding.num_embeddings == 119


@pytest.mark.parametrize("reflect", [False, True])
def test_scalars_invariant_and_vectors_equivariant(reflect: bool) -> None:
    model = _tiny()
    z, pos, batch = _molecules()
    rotation = _orthogonal(3, reflect)
    out = model(z, pos, batch)
    moved = model(z, pos @ rotation.T + torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64),
                  batch)
    assert out.vector is not None and moved.vector is not None
    assert out.scalar.shape == (9, 16) and out.vector.shape == (9, 3, 16)
    assert out.vector.abs().max() > 1e-3
    torch.testing.assert_close(moved.scalar, out.scalar, rtol=0, atol=1e-10)
    torch.testing.assert_close(moved.vector, torch.einsum("ij,njf->nif", rotation, out.vector),
                               rtol=0, atol=1e-10)


def test_forces_of_sum_readout_match_finite_differences() -> None:
    model = _tiny()
    z, pos, batch = _molecules()
    readout = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def energy(positions: torch.Tensor) -> torch.Tensor:
        out = model(z, positions, batch)
        assert out.vector is not None
        return out.scalar @ readout + (out.vector ** 2).sum(dim=(1, 2))

    assert torch.autograd.gradcheck(energy, (pos.clone().requires_grad_(),), eps=1e-6,
                                    atol=1e-7)


def test_energy_continuous_as_atom_leaves_cutoff() -> None:
    model = _tiny()
    z = torch.tensor([6, 8, 1])
    batch = torch.zeros(3, dtype=torch.long)
    readout = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def energy(separation: float) -> float:
        pos = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [separation, 0.4, 0.0]],
                           dtype=torch.float64)
        with torch.no_grad():
            return float((model(z, pos, batch).scalar @ readout).sum())

    edge = (TINY["cutoff"] ** 2 - 0.4 ** 2) ** 0.5  # atom 2 crosses atom 0's cutoff here
    inside, outside = energy(edge - 1e-9), energy(edge + 1e-9)
    assert abs(inside - outside) < 1e-8
    assert abs(energy(edge - 0.5) - inside) > 1e-4  # the probe atom does interact


def test_radial_basis_vanishes_at_cutoff() -> None:
    basis = ExpNormalBasis(8, 5.0).double()
    values = basis(torch.tensor([0.5, 4.999999, 5.0, 6.0], dtype=torch.float64))
    assert values[0].abs().min() > 0
    assert values[1:].abs().max() < 1e-9


def test_portable_form_round_trip() -> None:
    model = _tiny().float()
    spec = backbone_to_dict(model)
    assert json.loads(json.dumps(spec["hparams"])) == TINY
    rebuilt = backbone_from_dict(spec)
    z, pos, batch = _molecules()
    pos = pos.float()
    expected, got = model(z, pos, batch), rebuilt(z, pos, batch)
    torch.testing.assert_close(got.scalar, expected.scalar, rtol=0, atol=0)
    torch.testing.assert_close(got.vector, expected.vector, rtol=0, atol=0)


def test_rejects_heads_that_do_not_divide_features() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_backbone("et", hidden_channels=10, num_heads=4)


def test_torch_compile_gives_same_features_and_forces() -> None:
    model = _tiny().float()
    z, pos, batch = _molecules()
    pos = pos.float()
    compiled = torch.compile(model, backend="aot_eager")
    results = []
    for module in (model, compiled):
        positions = pos.clone().requires_grad_()
        out = module(z, positions, batch)
        (force,) = torch.autograd.grad(-out.scalar.sum(), positions)
        results.append((out.scalar.detach(), force))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-5)

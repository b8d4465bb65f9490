"""The SE(3)-Transformer: E(3) symmetry, exact forces through the spherical harmonics and the
radial networks, continuity of the cutoff-weighted attention, exact float64 constants and
the portable form, on a tiny network."""

from __future__ import annotations

import json

import pytest
import torch
from e3nn import o3
from equivariant_backbones import backbone_from_dict, backbone_to_dict, build_backbone
from equivariant_backbones.se3t import EquivariantKernel, SE3Transformer

TINY = {"channels": 4, "max_degree": 3, "num_layers": 2, "num_heads": 2, "scalar_channels": 6,
        "num_basis": 8, "radial_hidden": 8, "cutoff": 3.0}


@pytest.fixture(scope="module")
def model() -> SE3Transformer:
    """A tiny float64 network with perturbed weights, so that no path is trivially zero."""
    torch.manual_seed(0)
    network = build_backbone("se3t", **TINY)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return network.double()


def _molecules() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    z = torch.tensor([6, 1, 1, 8, 7, 1, 1, 6])
    pos = 1.2 * torch.randn(8, 3, generator=generator, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    return z, pos, batch


def _readout(model: SE3Transformer) -> torch.Tensor:
    return torch.randn(model.scalar_dim, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(2))


def test_registered_with_paper_defaults() -> None:
    network = build_backbone("se3t")
    assert network.default_noise_head == "gradient"
    assert str(network.irreps_hidden) == "8x0e+8x1o+8x2e+8x3o"
    assert len(network.attention) == 3 and network.attention[0].num_heads == 2
    assert (network.vector_dim, network.cutoff) == (8, 5.0)
    assert network.embedding.num_embeddings == 119
    # the original's radial networks normalise their hidden layers
    assert network.hparams["radial_norm"] is True
    radial = network.attention[0].kernel.radial
    assert [type(layer) for layer in radial] == [torch.nn.Linear, torch.nn.LayerNorm,
                                                 torch.nn.SiLU] * 2


@pytest.mark.parametrize("reflect", [False, True])
def test_scalars_invariant_and_vectors_equivariant(model: SE3Transformer, reflect: bool) -> None:
    z, pos, batch = _molecules()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        rotation = o3.rand_matrix(dtype=torch.float64)
    rotation = -rotation if reflect else rotation
    with torch.no_grad():
        out = model(z, pos, batch)
        moved = model(z, pos @ rotation.T + torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64),
                      batch)
    assert out.vector is not None and moved.vector is not None
    assert out.scalar.shape == (8, 6) and out.vector.shape == (8, 3, 4)
    assert out.vector.abs().max() > 1e-2
    torch.testing.assert_close(moved.scalar, out.scalar, rtol=0, atol=1e-12)
    torch.testing.assert_close(moved.vector, torch.einsum("ij,njf->nif", rotation, out.vector),
                               rtol=0, atol=1e-12)


def test_degree_three_features_reach_the_scalars(model: SE3Transformer) -> None:
    z, pos, batch = _molecules()
    features = {}
    hook = model.final_norm.register_forward_hook(
        lambda module, args, output: features.setdefault("final", output))
    try:
        positions = pos.clone().requires_grad_()
        scalar = model(z, positions, batch).scalar
    finally:
        hook.remove()
    degree3 = slice(model.irreps_hidden.slices()[3].start, model.irreps_hidden.dim)
    (gradient,) = torch.autograd.grad(scalar.sum(), features["final"])
    assert features["final"][:, degree3].abs().max() > 1e-2
    assert gradient[:, degree3].abs().max() > 1e-4


def test_forces_of_sum_readout_match_finite_differences(model: SE3Transformer) -> None:
    z, pos, batch = _molecules()
    readout = _readout(model)
    assert torch.autograd.gradcheck(
        lambda positions: model(z, positions, batch).scalar @ readout,
        (pos.clone().requires_grad_(),), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("crowded", [False, True])
def test_energy_continuous_as_atom_leaves_cutoff(model: SE3Transformer, crowded: bool) -> None:
    """The leaving atom is an atom's only neighbour, or one of several (then the attention
    weights of the others must not jump when it goes)."""
    z = torch.tensor([6, 8, 1])
    batch = torch.zeros(3, dtype=torch.long)
    readout = _readout(model)
    first = [1.1, 0.0, 0.0] if crowded else [-2.0, 2.5, 0.0]

    def energy(distance: float) -> float:
        pos = torch.tensor([[0.0, 0.0, 0.0], first, [-distance, 0.0, 0.0]],
                           dtype=torch.float64)
        with torch.no_grad():
            return float((model(z, pos, batch).scalar @ readout).sum())

    cutoff = model.cutoff
    inside, outside = energy(cutoff - 1e-9), energy(cutoff + 1e-9)
    assert abs(inside - outside) < 1e-7
    assert abs(energy(cutoff - 0.5) - inside) > 1e-4  # the leaving atom does interact


def test_float64_constants_are_exact_after_conversion(model: SE3Transformer) -> None:
    buffers = [(name, tensor) for name, tensor in model.named_buffers() if "_w3j_" in name]
    assert buffers
    for name, tensor in buffers:
        degrees = [int(part) for part in name.split("_")[-3:]]
        assert tensor.dtype == torch.float64
        assert torch.equal(tensor, o3.wigner_3j(*degrees, dtype=torch.float64))


def test_portable_form_round_trip() -> None:
    torch.manual_seed(5)
    network = build_backbone("se3t", **TINY)
    spec = backbone_to_dict(network)
    assert json.loads(json.dumps(spec["hparams"])) == {**TINY, "radial_norm": True}
    rebuilt = backbone_from_dict(spec)
    z, pos, batch = _molecules()
    with torch.no_grad():
        expected, got = network(z, pos.float(), batch), rebuilt(z, pos.float(), batch)
    assert torch.equal(got.scalar, expected.scalar)
    assert expected.vector is not None and torch.equal(got.vector, expected.vector)


def test_checkpoint_from_before_radial_norm_rebuilds_its_network() -> None:
    """A portable form or pretraining checkpoint written before ``radial_norm`` existed
    records no such key; it was a network with plain radial MLPs, and loads as one."""
    torch.manual_seed(7)
    network = build_backbone("se3t", **TINY, radial_norm=False)
    spec = backbone_to_dict(network)
    del spec["hparams"]["radial_norm"]
    rebuilt = backbone_from_dict(spec)
    assert rebuilt.hparams["radial_norm"] is False
    # the radial MLPs' parameters are named as in those checkpoints
    radial = {key for key in rebuilt.state_dict() if key.startswith("attention.0.kernel.radial.")}
    assert radial == {f"attention.0.kernel.radial.{layer}.{kind}" for layer in (0, 2)
                      for kind in ("weight", "bias")}
    z, pos, batch = _molecules()
    with torch.no_grad():
        expected, got = network(z, pos.float(), batch), rebuilt(z, pos.float(), batch)
    assert torch.equal(got.scalar, expected.scalar)


def test_rejects_heads_that_do_not_divide_channels() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_backbone("se3t", channels=6, num_heads=4)


def test_kernel_is_equivariant_for_every_degree() -> None:
    torch.manual_seed(6)
    kernel = EquivariantKernel([2, 2, 2, 2], 3, out_mul=3, num_basis=4, radial_hidden=8).double()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        rotation = -o3.rand_matrix(dtype=torch.float64)  # an improper rotation
    # e3nn builds Wigner D matrices in the default dtype: float32 would limit them to 1e-7.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wigner = [o3.Irrep(degree, (-1) ** degree).D_from_matrix(rotation)
                  for degree in range(4)]
    finally:
        torch.set_default_dtype(default_dtype)
    edges = torch.randn(5, 3, dtype=torch.float64)
    features = [torch.randn(5, 2, 2 * degree + 1, dtype=torch.float64) for degree in range(4)]
    basis = torch.rand(5, 4, dtype=torch.float64)

    def harmonics(vectors: torch.Tensor) -> list[torch.Tensor]:
        flat = o3.spherical_harmonics([0, 1, 2, 3], vectors, normalize=True,
                                      normalization="component")
        return list(flat.split([1, 3, 5, 7], dim=-1))

    out = kernel(features, harmonics(edges), basis)
    moved = kernel([f @ d.T for f, d in zip(features, wigner, strict=True)],
                   harmonics(edges @ rotation.T), basis)
    for degree in range(4):
        assert out[degree].shape == (5, 3, 2 * degree + 1)
        assert out[degree].abs().max() > 1e-2
        torch.testing.assert_close(moved[degree], out[degree] @ wigner[degree].T, rtol=0,
                                   atol=1e-12)

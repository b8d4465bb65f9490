"""Unit tests of the perturbation, the noise heads and the loss."""

from __future__ import annotations

import math

import pytest
import torch
from denoise_objective import (
    DenoisingModel,
    NoiseHeadError,
    build_noise_head,
    conformation_noise,
    denoising_loss,
    denoising_target,
    expected_baseline,
    noise_head_from_dict,
    noise_head_to_dict,
    perturb,
    predict_zero_baseline,
)
from equivariant_backbones import Backbone, BackboneOutput, build_backbone
from torch import nn


class _ToyVectorBackbone(Backbone):
    """A tiny rotation-equivariant network with scalar and vector features (tests only)."""

    name = "toy_vector"
    default_noise_head = "vector"

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.scalar_dim = channels
        self.vector_dim = channels
        self.cutoff = 5.0
        self.embedding = nn.Embedding(119, channels)
        self.radial = nn.Linear(1, channels)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        same = batch.unsqueeze(0) == batch.unsqueeze(1)
        same.fill_diagonal_(False)
        target, source = same.nonzero(as_tuple=True)
        diff = pos[target] - pos[source]
        weight = torch.tanh(self.radial(diff.norm(dim=-1, keepdim=True)))
        scalar = self.embedding(z).index_add(0, target, weight)
        vector = torch.zeros(pos.shape[0], 3, self.vector_dim, dtype=pos.dtype)
        vector = vector.index_add(0, target, diff.unsqueeze(-1) * weight.unsqueeze(1))
        return BackboneOutput(scalar=scalar, vector=vector)


def _molecules(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """Two small molecules (5 and 3 atoms) with positions in Å."""
    generator = torch.Generator().manual_seed(0)
    z = torch.tensor([6, 1, 1, 1, 1, 8, 1, 1])
    pos = torch.randn(8, 3, generator=generator, dtype=dtype) * 1.2
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    return z, pos, batch


def _rotation(dtype: torch.dtype) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3),
                                       dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def test_perturb_draws_sigma_scaled_noise_from_the_generator() -> None:
    pos = torch.zeros(20_000, 3)
    noisy, noise = perturb(pos, 0.2, torch.Generator().manual_seed(1))
    assert torch.equal(noisy, pos + noise)
    assert abs(noise.std().item() - 0.2) < 0.005
    assert abs(noise.mean().item()) < 0.005
    _, again = perturb(pos, 0.2, torch.Generator().manual_seed(1))
    assert torch.equal(noise, again)


@pytest.mark.parametrize("sigma", [0.0, -0.1, math.nan, math.inf])
def test_perturb_rejects_non_positive_sigma(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        perturb(torch.zeros(2, 3), sigma)


def test_conformation_noise_is_standard_normal_times_sigma() -> None:
    conf_id = torch.arange(4000)
    batch = torch.arange(4000).repeat_interleave(5)
    noise = conformation_noise(conf_id, batch, 0.3, seed=7, stream=0, dtype=torch.float64)
    assert noise.shape == (20_000, 3)
    standard = (noise / 0.3).reshape(-1)
    assert abs(standard.mean().item()) < 0.02
    assert abs(standard.std().item() - 1.0) < 0.02
    # fourth moment of a normal is 3; a bad Box-Muller or hash shows up here
    assert abs((standard ** 4).mean().item() - 3.0) < 0.15
    # neighbouring counters are uncorrelated
    flat = standard.reshape(-1)
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.02


def test_conformation_noise_depends_only_on_the_conformation_not_the_batch() -> None:
    sizes = torch.tensor([5, 3, 4])
    conf_ids = torch.tensor([10, 11, 2**40 + 3])
    batch = torch.arange(3).repeat_interleave(sizes)
    together = conformation_noise(conf_ids, batch, 0.2, seed=1, stream=4)
    pieces = together.split(sizes.tolist())
    # the same conformations, another order and alone
    reordered = conformation_noise(conf_ids.flip(0), torch.arange(3).repeat_interleave(
        sizes.flip(0)), 0.2, seed=1, stream=4).split(sizes.flip(0).tolist())
    alone = conformation_noise(conf_ids[1:2], torch.zeros(3, dtype=torch.long), 0.2, seed=1,
                               stream=4)
    assert torch.equal(pieces[0], reordered[2])
    assert torch.equal(pieces[2], reordered[0])
    assert torch.equal(pieces[1], alone)
    other_stream = conformation_noise(conf_ids, batch, 0.2, seed=1, stream=5)
    other_seed = conformation_noise(conf_ids, batch, 0.2, seed=2, stream=4)
    assert not torch.allclose(together, other_stream)
    assert not torch.allclose(together, other_seed)


def test_predict_zero_baseline_is_three_sigma_squared_per_atom() -> None:
    sigma = 0.2
    batch = torch.arange(5000).repeat_interleave(4)
    noise = conformation_noise(torch.arange(5000), batch, sigma, seed=0, stream=0)
    raw = predict_zero_baseline(noise, batch).item()
    assert raw == pytest.approx(3 * sigma**2, rel=0.02)
    centred = predict_zero_baseline(noise, batch, centre=True).item()
    assert centred == pytest.approx(3 * sigma**2 * (1 - 1 / 4), rel=0.02)
    assert centred == pytest.approx(
        expected_baseline(torch.full((5000,), 4), sigma, centre=True, normalised=False), rel=0.02
    )
    normalised = predict_zero_baseline(noise, batch, sigma_angstrom=sigma).item()
    assert normalised == pytest.approx(3.0, rel=0.02)
    total = predict_zero_baseline(noise, batch, reduction="sum").item()
    assert total == pytest.approx(raw * batch.numel(), rel=1e-5)


def test_centred_target_has_zero_mean_per_molecule_and_loss_is_summed_over_xyz() -> None:
    _, _, batch = _molecules()
    noise = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    target = denoising_target(noise, batch, centre=True)
    means = torch.zeros(2, 3).index_add(0, batch, target)
    assert torch.allclose(means, torch.zeros(2, 3), atol=1e-6)
    prediction = torch.zeros(8, 3)
    prediction[0, 0] = 1.0
    expected = ((prediction - noise) ** 2).sum() / 8
    assert denoising_loss(prediction, noise, batch).item() == pytest.approx(expected.item())


def test_gradient_head_predicts_minus_the_energy_gradient_and_is_equivariant() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("schnet", hidden_channels=16, num_filters=16,
                              num_interactions=2, num_gaussians=8).double()
    head = build_noise_head(backbone).double()
    assert head.kind == "gradient"
    model = DenoisingModel(backbone, head)
    z, pos, batch = _molecules(torch.float64)
    predicted = model(z, pos, batch)
    # finite differences of the energy readout
    def energy(p: torch.Tensor) -> float:
        return head.energy(backbone(z, p, batch).scalar).sum().item()
    step = 1e-6
    shifted = pos.clone()
    shifted[2, 1] += step
    lowered = pos.clone()
    lowered[2, 1] -= step
    numeric = -(energy(shifted) - energy(lowered)) / (2 * step)
    assert predicted[2, 1].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    # a sum of pair forces has no net shift, and it rotates with the molecule
    assert torch.allclose(torch.zeros(2, 3, dtype=torch.float64).index_add(0, batch, predicted),
                          torch.zeros(2, 3, dtype=torch.float64), atol=1e-10)
    rotation = _rotation(torch.float64)
    assert torch.allclose(model(z, pos @ rotation.T, batch), predicted @ rotation.T, atol=1e-9)


def test_gradient_head_trains_through_second_derivatives_and_runs_without_grad() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("schnet", hidden_channels=8, num_filters=8, num_interactions=1,
                              num_gaussians=4)
    model = DenoisingModel(backbone, build_noise_head(backbone))
    z, pos, batch = _molecules()
    loss = denoising_loss(model(z, pos, batch), torch.ones(8, 3), batch, centre=True)
    loss.backward()
    assert backbone.filter_weight1.grad is not None
    assert backbone.filter_weight1.grad.abs().sum() > 0
    with torch.no_grad():
        predicted = model(z, pos, batch)
    assert not predicted.requires_grad
    assert torch.allclose(predicted, model(z, pos, batch).detach())


def test_displacement_head_is_the_move_of_egnn_positions() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("egnn", hidden_channels=16, num_layers=2).double()
    head = build_noise_head(backbone)
    assert head.kind == "displacement"
    assert noise_head_to_dict(head)["state_dict"] == {}
    model = DenoisingModel(backbone, head)
    z, pos, batch = _molecules(torch.float64)
    predicted = model(z, pos, batch)
    assert torch.allclose(predicted, backbone(z, pos, batch).position - pos)
    rotation = _rotation(torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert torch.allclose(model(z, pos @ rotation.T + shift, batch), predicted @ rotation.T,
                          atol=1e-9)


def test_vector_head_gives_one_equivariant_vector_per_atom() -> None:
    torch.manual_seed(0)
    backbone = _ToyVectorBackbone().double()
    head = build_noise_head(backbone).double()
    assert head.kind == "vector"
    model = DenoisingModel(backbone, head)
    z, pos, batch = _molecules(torch.float64)
    predicted = model(z, pos, batch)
    assert predicted.shape == (8, 3)
    assert predicted.abs().sum() > 0
    rotation = _rotation(torch.float64)
    assert torch.allclose(model(z, pos @ rotation.T, batch), predicted @ rotation.T, atol=1e-9)


def test_head_choice_is_checked_against_the_backbone() -> None:
    schnet = build_backbone("schnet", hidden_channels=8, num_filters=8, num_interactions=1,
                            num_gaussians=4)
    with pytest.raises(NoiseHeadError, match="displacement.*schnet"):
        build_noise_head(schnet, "displacement")
    with pytest.raises(NoiseHeadError, match="vector.*schnet"):
        build_noise_head(schnet, "vector")
    with pytest.raises(NoiseHeadError, match="unknown noise head 'noise'"):
        build_noise_head(schnet, "noise")
    egnn = build_backbone("egnn", hidden_channels=8, num_layers=1)
    assert build_noise_head(egnn, "gradient").kind == "gradient"


def test_noise_head_round_trips_through_plain_data() -> None:
    torch.manual_seed(0)
    backbone = _ToyVectorBackbone()
    head = build_noise_head(backbone)
    spec = noise_head_to_dict(head)
    rebuilt = noise_head_from_dict(spec)
    z, pos, batch = _molecules()
    output = backbone(z, pos, batch)
    assert torch.equal(rebuilt(output, pos, batch, create_graph=False),
                       head(output, pos, batch, create_graph=False))

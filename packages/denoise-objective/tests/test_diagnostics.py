"""ForceAlignment: the cosine and the Tweedie temperature of a denoiser against forces."""

from __future__ import annotations

import math

import pytest
import torch
from denoise_objective import ForceAlignment


def _molecules(n_molecules: int, atoms: int) -> torch.Tensor:
    return torch.arange(n_molecules).repeat_interleave(atoms)


def test_cosine_is_minus_one_for_noise_against_the_forces_and_ignores_net_shifts() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = _molecules(5, 4)
    forces = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    forces = forces - torch.zeros(5, 3, dtype=forces.dtype).index_add(0, batch, forces)[batch] / 4
    shift = torch.randn(5, 3, generator=generator, dtype=torch.float64)[batch]
    against = ForceAlignment()
    against.update(-0.3 * forces + shift, forces, batch)
    assert against.cosine == pytest.approx(-1.0, abs=1e-12)
    assert against.slope == pytest.approx(-0.3, rel=1e-12)
    along = ForceAlignment()
    along.update(2.0 * forces, forces, batch)
    assert along.cosine == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(along.implied_kt(0.1))


def test_unrelated_prediction_scores_near_zero_and_parts_merge_to_the_whole() -> None:
    generator = torch.Generator().manual_seed(1)
    batch = _molecules(400, 9)
    forces = torch.randn(3600, 3, generator=generator)
    predicted = torch.randn(3600, 3, generator=generator)
    whole = ForceAlignment()
    whole.update(predicted, forces, batch)
    assert abs(whole.cosine) < 0.05  # 10,800 components: the standard error is ~0.01
    first, second = ForceAlignment(), ForceAlignment()
    first.update(predicted[:1800], forces[:1800], batch[:1800])
    second.update(predicted[1800:], forces[1800:], batch[1800:] - 200)
    merged = first.merge(second)
    assert merged.cosine == pytest.approx(whole.cosine, rel=1e-9)
    assert merged.components == whole.components == 10800


def test_a_denoiser_fitted_on_boltzmann_samples_gives_back_their_temperature() -> None:
    """Harmonic atoms, U = k|x|²/2, sampled at kT: the least-squares denoiser of x + ε is
    c·(x + ε) with c = σ²/(s² + σ²), s² = kT/k, so at clean geometries its Tweedie temperature
    is kT + kσ² (-> kT as σ -> 0) and the alignment is exactly -1."""
    generator = torch.Generator().manual_seed(2)
    k, kt, sigma = 4.0, 0.05, 0.02  # eV/Å², eV (580 K), Å: thermal spread s = 0.11 Å
    batch = _molecules(2000, 9)
    clean = torch.randn(18000, 3, generator=generator, dtype=torch.float64) * math.sqrt(kt / k)
    noise = torch.randn(18000, 3, generator=generator, dtype=torch.float64) * sigma
    noisy = clean + noise
    c = float((noisy * noise).sum() / (noisy * noisy).sum())  # the denoising regression
    alignment = ForceAlignment()
    alignment.update(c * clean, -k * clean, batch)
    assert alignment.cosine == pytest.approx(-1.0, abs=1e-12)
    assert alignment.implied_kt(sigma) == pytest.approx(kt + k * sigma**2, rel=0.05)
    # a σ-normalised target predicts noise / σ: the same temperature
    scaled = ForceAlignment()
    scaled.update(c * clean / sigma, -k * clean, batch)
    assert scaled.implied_kt(sigma, normalised_target=True) == pytest.approx(
        alignment.implied_kt(sigma), rel=1e-12
    )


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        ForceAlignment().update(
            torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
        )

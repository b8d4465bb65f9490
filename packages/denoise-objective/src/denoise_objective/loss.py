"""The denoising loss and its predict-zero baseline.

Convention (used everywhere in denoisepot): the loss is the squared error **summed over the
three Cartesian components** and **averaged over atoms**, in Å² (or dimensionless with a
σ-normalised target). Predicting zero therefore scores ``3σ²`` per atom in expectation, or
``3σ²(1 - 1/n)`` for a molecule of ``n`` atoms when each molecule's mean noise is removed from
the target (``3`` and ``3(1 - 1/n)`` when normalised).
"""

from __future__ import annotations

import torch


def denoising_target(
    noise: torch.Tensor,
    batch: torch.Tensor,
    *,
    centre: bool,
    sigma_angstrom: float | None = None,
) -> torch.Tensor:
    """The regression target ``[N, 3]`` for noise ``[N, 3]`` (Å).

    ``centre`` removes each molecule's mean noise (a sum of pairwise forces cannot carry a net
    shift); a ``sigma_angstrom`` divides the target by σ (dimensionless target).
    """
    target = noise
    if centre:
        n_molecules = int(batch.max()) + 1 if batch.numel() else 0
        counts = torch.bincount(batch, minlength=n_molecules).clamp(min=1).to(noise.dtype)
        total = torch.zeros(n_molecules, 3, dtype=noise.dtype, device=noise.device)
        total = total.index_add(0, batch, noise)
        target = noise - (total / counts.unsqueeze(1))[batch]
    if sigma_angstrom is not None:
        target = target / sigma_angstrom
    return target


def denoising_loss(
    predicted: torch.Tensor,
    noise: torch.Tensor,
    batch: torch.Tensor,
    *,
    centre: bool = False,
    sigma_angstrom: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """MSE between predicted ``[N, 3]`` and the target built from ``noise [N, 3]`` (Å):
    squared error summed over x, y, z and averaged over atoms (``reduction="mean"``, Å²) or
    summed over atoms (``"sum"``). ``centre`` and ``sigma_angstrom`` as in
    :func:`denoising_target` (σ set: the prediction is read as noise/σ)."""
    target = denoising_target(noise, batch, centre=centre, sigma_angstrom=sigma_angstrom)
    squared = ((predicted - target) ** 2).sum()
    if reduction == "sum":
        return squared
    if reduction == "mean":
        return squared / max(1, noise.shape[0])
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def predict_zero_baseline(
    noise: torch.Tensor,
    batch: torch.Tensor,
    *,
    centre: bool = False,
    sigma_angstrom: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The loss of predicting zero noise on the same target (same units and reduction as
    :func:`denoising_loss`): the level a model must get below to have learnt anything."""
    return denoising_loss(torch.zeros_like(noise), noise, batch, centre=centre,
                          sigma_angstrom=sigma_angstrom, reduction=reduction)


def expected_baseline(
    n_atoms: torch.Tensor, sigma_angstrom: float, *, centre: bool, normalised: bool
) -> float:
    """Expected per-atom predict-zero loss for molecules of ``n_atoms [B]`` atoms:
    ``3σ²`` (Å²), times ``(1 - 1/n)`` averaged over atoms when centred; σ² → 1 if
    normalised."""
    scale = 1.0 if normalised else sigma_angstrom ** 2
    n = n_atoms.to(torch.float64)
    if not centre:
        return 3.0 * scale
    return float(3.0 * scale * ((n - 1.0).sum() / n.sum()))

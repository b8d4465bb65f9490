"""What a denoiser has learned of the force field.

Tweedie's formula: for clean samples ``x`` of a density ``p`` and ``x̃ = x + ε`` with
``ε ~ N(0, σ² I)``, the best noise prediction is ``E[ε | x̃] = -σ² ∇ log p_σ(x̃)``, where
``p_σ`` is ``p`` smoothed by the noise. For Boltzmann samples, ``p ∝ exp(-U / kT)``, and σ
small against the thermal spread of the geometries, ``∇ log p_σ ≈ F / kT``, so the ideal
denoiser predicts ``-(σ² / kT) F`` (``-(σ / kT) F`` for a σ-normalised target).

:class:`ForceAlignment` compares a denoiser's prediction at (clean) geometries with reference
forces: the cosine over every component (``-1``: proportional to the force field, as Tweedie
predicts; ``0``: unrelated) and the least-squares slope of prediction on force, whose
Tweedie reading is an effective temperature ``kT = -σ² / slope``. Each molecule's mean is
removed from both sides first (a net translation carries no force information). The slope
shrinks as the prediction's scatter around the force line grows, so the temperature is an
upper bound of what a perfectly aligned denoiser of the same scale would give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .loss import denoising_target


@dataclass
class ForceAlignment:
    """Running sums for the alignment of predicted noise ``[N, 3]`` with forces ``[N, 3]``
    (eV/Å); :meth:`update` batch by batch, then read :attr:`cosine`, :attr:`slope` and
    :meth:`implied_kt`. Sums are float64; :meth:`merge` combines partial sums (processes)."""

    dot: float = 0.0
    predicted_sq: float = 0.0
    reference_sq: float = 0.0
    components: int = 0

    def update(self, predicted: torch.Tensor, forces: torch.Tensor, batch: torch.Tensor) -> None:
        """Add one batch: ``predicted`` noise and reference ``forces`` per atom, ``batch`` the
        molecule index of each atom."""
        if predicted.shape != forces.shape or predicted.ndim != 2 or predicted.shape[1] != 3:
            raise ValueError(
                f"predicted {tuple(predicted.shape)} and forces {tuple(forces.shape)} must both "
                "be [N, 3]"
            )
        if predicted.shape[0] == 0:
            return
        predicted = denoising_target(predicted.detach().double(), batch, centre=True)
        forces = denoising_target(forces.detach().double(), batch, centre=True)
        self.dot += float((predicted * forces).sum())
        self.predicted_sq += float((predicted * predicted).sum())
        self.reference_sq += float((forces * forces).sum())
        self.components += int(predicted.numel())

    def merge(self, other: ForceAlignment) -> ForceAlignment:
        """The sums of both parts."""
        return ForceAlignment(
            self.dot + other.dot,
            self.predicted_sq + other.predicted_sq,
            self.reference_sq + other.reference_sq,
            self.components + other.components,
        )

    @property
    def cosine(self) -> float:
        """cos(predicted, forces) over every component; NaN when either side is all zero."""
        norm = math.sqrt(self.predicted_sq * self.reference_sq)
        return self.dot / norm if norm > 0.0 else math.nan

    @property
    def slope(self) -> float:
        """Least-squares slope of the prediction on the force (prediction unit per eV/Å)."""
        return self.dot / self.reference_sq if self.reference_sq > 0.0 else math.nan

    def implied_kt(self, sigma_angstrom: float, *, normalised_target: bool = False) -> float:
        """The effective ``kT`` (eV) Tweedie's formula gives the slope: ``-σ² / slope`` for a
        target in Å, ``-σ / slope`` for a σ-normalised one. NaN unless the slope is negative
        (a denoiser that does not point against the forces has no such reading)."""
        slope = self.slope
        if not slope < 0.0:
            return math.nan
        scale = sigma_angstrom if normalised_target else sigma_angstrom**2
        return -scale / slope

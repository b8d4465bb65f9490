"""How well a pretrained denoiser knows a labelled dataset: its denoising loss there (against
predicting zero) and the alignment of its predicted noise at the clean geometries with the
reference forces (``denoise_objective.ForceAlignment``: Tweedie's formula makes the ideal
denoiser of Boltzmann samples predict ``-(σ²/kT) F``, so cos → -1 means it learned the force
field, and the slope gives an effective temperature).

A gradient noise head (SchNet, SE(3)-Transformer) predicts the noise as ``-∂U/∂x̃`` of a
learned scalar ``U``; the same formula makes the ideal ``U = -(σ²/kT) E + const`` within each
molecule, so the correlation of ``U`` with the reference energies over the conformations of
each molecule (pooled) says how much of the energy surface the denoiser holds: ``-1`` all of
it, ``0`` none.

Used by ``denoisepot evaluate`` on a pretraining checkpoint and by ``denoisepot compare`` for
every pretrained backbone and fine-tuning dataset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DenoisepotError

#: noise stream of the evaluation (pretraining uses 0 for validation and epoch + 1 for training)
EVALUATION_STREAM = 1 << 20


@dataclass(frozen=True)
class DenoiserAlignment:
    """A pretrained denoiser on one dataset. ``loss``/``baseline``: the denoising loss at the
    checkpoint's σ and the predict-zero loss (Å² per atom, or dimensionless for a σ-normalised
    target); ``cosine``: cos(predicted noise at the clean geometries, reference forces), each
    molecule's mean removed; ``implied_temperature_k``: Tweedie's effective temperature from
    the least-squares slope (NaN when the slope is not negative; both NaN for a store without
    forces); ``energy_correlation``: the within-molecule correlation of a gradient head's
    scalar ``U`` with the reference energies (NaN for other heads or when no molecule has two
    conformations)."""

    checkpoint: str
    store: str
    n_conformations: int
    sigma_angstrom: float
    loss: float
    baseline: float
    loss_unit: str
    cosine: float
    implied_temperature_k: float
    energy_correlation: float

    def as_dict(self) -> dict:
        """Plain data (JSON); NaN becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def denoiser_alignment(
    checkpoint: Path,
    store: Path,
    indices: np.ndarray | None = None,
    *,
    batch_size: int = 256,
    seed: int = 0,
) -> DenoiserAlignment:
    """Evaluate the pretraining ``checkpoint`` on conformations ``indices`` (default: all) of
    the canonical ``store``. Without forces there (ANI-1) the cosine and the temperature are
    NaN; the loss and a gradient head's corr(U, E) need only geometries and energies. CPU,
    float32 model, float64 sums."""
    import torch
    from denoise_objective import (
        DenoisingModel,
        ForceAlignment,
        GradientNoiseHead,
        conformation_noise,
        denoising_loss,
        noise_head_from_dict,
        predict_zero_baseline,
    )
    from equivariant_backbones import CheckpointError, backbone_from_dict, load_checkpoint
    from molgraph_data import Store, make_dataloader
    from molgraph_data.units import BOLTZMANN_EV_PER_K

    try:
        payload = load_checkpoint(checkpoint, expected_kind="pretrain")
    except CheckpointError as exc:
        raise DenoisepotError(str(exc)) from None
    objective = payload["objective"]
    sigma = float(objective["sigma_angstrom"])
    centre = bool(objective["centre_target"])
    normalised = bool(objective["normalise_target"])
    target_sigma = sigma if normalised else None
    with Store(store) as opened:
        has_forces, total = opened.has_forces, opened.n_conformations
    indices = np.arange(total, dtype=np.int64) if indices is None else np.asarray(indices)
    if indices.size == 0:
        raise DenoisepotError(f"{store}: no conformations to evaluate")
    model = DenoisingModel(backbone_from_dict(payload["backbone"]),
                           noise_head_from_dict(payload["noise_head"]))
    model.eval()
    alignment = ForceAlignment()
    sums = np.zeros(3)
    gradient_head = isinstance(model.head, GradientNoiseHead)
    scalars: list[np.ndarray] = []
    energies: list[np.ndarray] = []
    molecules: list[np.ndarray] = []
    with torch.no_grad():
        for batch in make_dataloader(store, indices, batch_size, shuffle=False, seed=0):
            noise = conformation_noise(batch.conf_id, batch.batch, sigma, seed=seed,
                                       stream=EVALUATION_STREAM)
            predicted = model(batch.z, batch.pos + noise, batch.batch)
            sums[0] += float(denoising_loss(predicted, noise, batch.batch, centre=centre,
                                            sigma_angstrom=target_sigma, reduction="sum"))
            sums[1] += float(predict_zero_baseline(noise, batch.batch, centre=centre,
                                                   sigma_angstrom=target_sigma, reduction="sum"))
            sums[2] += batch.num_nodes
            if not (has_forces or gradient_head):
                continue
            # one backbone pass at the clean geometries serves the noise (compared with the
            # forces, where there are any) and, for a gradient head, its scalar U
            with torch.set_grad_enabled(has_forces):
                pos = batch.pos.detach().requires_grad_(
                    has_forces and model.head.needs_position_gradient)
                output = model.backbone(batch.z, pos, batch.batch)
                if has_forces:
                    clean_noise = model.head(output, pos, batch.batch, create_graph=False)
                    alignment.update(clean_noise, batch.forces, batch.batch)
            if gradient_head:
                atom_u = model.head.energy(output.scalar).squeeze(-1).detach()
                u = torch.zeros(int(batch.num_graphs), dtype=torch.float64).index_add(
                    0, batch.batch, atom_u.double())
                scalars.append(u.numpy())
                energies.append(batch.energy.double().numpy())
                molecules.append(batch.mol_id.numpy())
    kt = alignment.implied_kt(sigma, normalised_target=normalised) if has_forces else math.nan
    return DenoiserAlignment(
        checkpoint=str(checkpoint),
        store=str(store),
        n_conformations=int(indices.size),
        sigma_angstrom=sigma,
        loss=float(sums[0] / sums[2]),
        baseline=float(sums[1] / sums[2]),
        loss_unit="dimensionless" if normalised else "Angstrom^2",
        cosine=alignment.cosine if has_forces else math.nan,
        implied_temperature_k=kt / BOLTZMANN_EV_PER_K,
        energy_correlation=(
            within_molecule_correlation(np.concatenate(scalars), np.concatenate(energies),
                                        np.concatenate(molecules))
            if gradient_head else math.nan
        ),
    )


def within_molecule_correlation(x: np.ndarray, y: np.ndarray, molecule: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` after removing each molecule's means (pooled over
    molecules); NaN when nothing varies."""
    _, groups, counts = np.unique(molecule, return_inverse=True, return_counts=True)
    x = x - (np.bincount(groups, weights=x) / counts)[groups]
    y = y - (np.bincount(groups, weights=y) / counts)[groups]
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0.0 else math.nan

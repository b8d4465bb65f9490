"""denoise_objective: coordinate denoising for pretraining neural potentials, in pure torch.

Perturb positions with Gaussian noise (:func:`perturb`, :func:`conformation_noise`), predict
the noise with a backbone plus a noise head (:func:`build_noise_head`,
:class:`DenoisingModel`), and score it with :func:`denoising_loss` beside
:func:`predict_zero_baseline`; :class:`ForceAlignment` measures how much of a force field a
trained denoiser has learned (Tweedie's formula).
"""

from .diagnostics import ForceAlignment
from .heads import (
    DenoisingModel,
    DisplacementNoiseHead,
    GatedEquivariantBlock,
    GradientNoiseHead,
    NoiseHead,
    NoiseHeadError,
    VectorNoiseHead,
    build_noise_head,
    noise_head_from_dict,
    noise_head_to_dict,
)
from .loss import denoising_loss, denoising_target, expected_baseline, predict_zero_baseline
from .noise import check_sigma, conformation_noise, perturb

__version__ = "0.1.0"

__all__ = [
    "DenoisingModel",
    "DisplacementNoiseHead",
    "ForceAlignment",
    "GatedEquivariantBlock",
    "GradientNoiseHead",
    "NoiseHead",
    "NoiseHeadError",
    "VectorNoiseHead",
    "build_noise_head",
    "check_sigma",
    "conformation_noise",
    "denoising_loss",
    "denoising_target",
    "expected_baseline",
    "noise_head_from_dict",
    "noise_head_to_dict",
    "perturb",
    "predict_zero_baseline",
]

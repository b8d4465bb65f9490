"""finetune_heads: an energy head on a backbone, conservative forces, pretrained-weight
loading, metrics and an ASE calculator. Units: Å, eV, eV/Å."""

from .calculator import DenoisepotCalculator
from .checkpoint import (
    FINETUNE_FORMAT_VERSION,
    FINETUNE_KIND,
    load_finetuned,
    potential_from_checkpoint,
    potential_to_checkpoint,
)
from .export import ExportError, export_torchscript
from .head import NUM_ELEMENT_SLOTS, READOUTS, EnergyHead
from .metrics import EV_IN_MEV, ErrorMetrics, MetricAccumulator, error_metrics
from .potential import Potential, parameter_groups, set_backbone_trainable
from .pretrained import (
    PretrainedBackbone,
    UnseenElementsWarning,
    load_denoiser_energy,
    load_pretrained_backbone,
    scale_energy_head,
)

__version__ = "0.1.0"

__all__ = [
    "EV_IN_MEV",
    "FINETUNE_FORMAT_VERSION",
    "FINETUNE_KIND",
    "NUM_ELEMENT_SLOTS",
    "READOUTS",
    "DenoisepotCalculator",
    "EnergyHead",
    "ErrorMetrics",
    "ExportError",
    "MetricAccumulator",
    "Potential",
    "PretrainedBackbone",
    "UnseenElementsWarning",
    "error_metrics",
    "export_torchscript",
    "load_finetuned",
    "load_denoiser_energy",
    "load_pretrained_backbone",
    "scale_energy_head",
    "parameter_groups",
    "potential_from_checkpoint",
    "potential_to_checkpoint",
    "set_backbone_trainable",
]

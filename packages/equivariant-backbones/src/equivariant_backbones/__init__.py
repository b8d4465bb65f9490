"""equivariant_backbones: SchNet, EGNN, the equivariant transformer and an SE(3)-Transformer
behind one interface, ``backbone(z, pos, batch) -> BackboneOutput``."""

from .base import (
    MAX_ATOMIC_NUMBER,
    NOISE_HEAD_KINDS,
    Backbone,
    BackboneOutput,
    UnknownBackboneError,
    backbone_class,
    backbone_from_hparams,
    build_backbone,
    list_backbones,
    register_backbone,
)
from .graph import radius_graph
from .portable import (
    CheckpointError,
    atomic_torch_save,
    backbone_from_dict,
    backbone_to_dict,
    load_checkpoint,
)

# Importing the network modules registers them (se3t registers on first use: see base.py).
from . import egnn, et, schnet  # noqa: E402,F401  isort: skip

__version__ = "0.1.0"

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "NOISE_HEAD_KINDS",
    "Backbone",
    "BackboneOutput",
    "CheckpointError",
    "UnknownBackboneError",
    "atomic_torch_save",
    "backbone_class",
    "backbone_from_dict",
    "backbone_from_hparams",
    "backbone_to_dict",
    "build_backbone",
    "list_backbones",
    "radius_graph",
    "load_checkpoint",
    "register_backbone",
]

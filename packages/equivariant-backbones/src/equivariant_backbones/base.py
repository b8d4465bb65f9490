"""The one interface every backbone implements, and the one registry of backbones.

A backbone maps plain tensors ``z [N]`` (atomic numbers 1-118), ``pos [N, 3]`` (Å) and
``batch [N]`` (molecule index of each atom, sorted) to per-atom features. It builds its own
neighbour graph for its cutoff, so it can be used without any of our data code.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

MAX_ATOMIC_NUMBER = 118

NOISE_HEAD_KINDS = ("gradient", "displacement", "vector")


@dataclass
class BackboneOutput:
    """Per-atom outputs of a backbone.

    scalar:   invariant features ``[N, F]``.
    vector:   equivariant vector features ``[N, 3, F_vec]`` (ET, SE(3)-Transformer) or None.
    position: updated positions ``[N, 3]`` in Å (EGNN) or None.
    """

    scalar: torch.Tensor
    vector: torch.Tensor | None = None
    position: torch.Tensor | None = None


class Backbone(nn.Module):
    """Base class of all registered backbones.

    Subclasses set the class attributes and store their constructor arguments with
    ``self._record_hparams(locals())`` so that ``hparams`` rebuilds the same network.
    """

    #: registry name, set by :func:`register_backbone`
    name: ClassVar[str] = ""
    #: noise head the denoising objective uses by default for this family
    default_noise_head: ClassVar[str] = "gradient"
    #: constructor arguments added after checkpoints were written, with the value that
    #: rebuilds those checkpoints' networks (see :func:`backbone_from_hparams`)
    hparams_added_later: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._hparams: dict[str, Any] = {}

    def _record_hparams(self, arguments: dict[str, Any]) -> None:
        self._hparams = {k: copy.deepcopy(v) for k, v in arguments.items()
                         if k not in ("self", "__class__")}

    @property
    def hparams(self) -> dict[str, Any]:
        """Constructor arguments as a plain, JSON-serialisable dict."""
        return copy.deepcopy(self._hparams)

    #: True where outputs also transform correctly under reflections (E(3), not only SE(3)):
    #: scalars invariant, vectors and positions transforming as polar vectors
    reflection_equivariant: ClassVar[bool] = True

    # Subclasses must define these as attributes or properties.
    scalar_dim: int
    vector_dim: int | None = None
    outputs_position: bool = False
    cutoff: float

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        raise NotImplementedError


_REGISTRY: dict[str, type[Backbone]] = {}

#: Backbones registered on first use, by the module that defines them. Listing them costs
#: nothing; the SE(3)-Transformer's module imports e3nn, which takes seconds, so it is only
#: imported when that network is built.
_LAZY_MODULES: dict[str, str] = {"se3t": "equivariant_backbones.se3t"}


def register_backbone(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    """Class decorator adding a backbone to the registry under ``name``."""

    def decorate(cls: type[Backbone]) -> type[Backbone]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"backbone name {name!r} is already registered")
        if cls.default_noise_head not in NOISE_HEAD_KINDS:
            raise ValueError(f"{cls.__name__}.default_noise_head must be one of {NOISE_HEAD_KINDS}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


class UnknownBackboneError(ValueError):
    """A backbone name that is not in the registry."""


def backbone_class(name: str) -> type[Backbone]:
    """The registered class for ``name`` (importing its module on first use)."""
    if name not in _REGISTRY and name in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(list_backbones())}"
        ) from None


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(set(_REGISTRY) | set(_LAZY_MODULES))


def build_backbone(name: str, **overrides: Any) -> Backbone:
    """Build ``name`` with the paper's hyperparameters, overridden by ``overrides``."""
    return backbone_class(name)(**overrides)


def backbone_from_hparams(name: str, hparams: dict[str, Any]) -> Backbone:
    """Rebuild the network a checkpoint's recorded ``hparams`` describe: an argument added
    to ``name``'s constructor since takes the value such checkpoints were made with."""
    cls = backbone_class(name)
    return cls(**{**cls.hparams_added_later, **hparams})

"""Load the backbone of a pretraining checkpoint for fine-tuning.

The backbone's registry name and hyperparameters come from the checkpoint, its weights load
strictly (any missing, unexpected or reshaped key is an error that lists them), and the
noise-prediction head is dropped: its keys are written to the ``finetune_heads`` log.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from equivariant_backbones import (
    Backbone,
    CheckpointError,
    UnknownBackboneError,
    backbone_from_hparams,
    load_checkpoint,
)

from .head import EnergyHead

logger = logging.getLogger("finetune_heads")

_MAX_KEYS_SHOWN = 8


class UnseenElementsWarning(UserWarning):
    """The fine-tuning data hold elements that the pretraining data never contained."""


@dataclass
class PretrainedBackbone:
    """A backbone with pretrained weights and what was learned about its checkpoint."""

    backbone: Backbone
    path: Path
    dropped_keys: list[str] = field(default_factory=list)
    pretrain_elements: list[int] | None = None
    unseen_elements: list[int] = field(default_factory=list)


def _key_list(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    hidden = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" (+{hidden} more)" if hidden > 0 else "")


def load_pretrained_backbone(
    path: str | os.PathLike[str], finetune_elements: Iterable[int] | None = None
) -> PretrainedBackbone:
    """Rebuild the backbone stored in the pretraining checkpoint ``path`` with its
    hyperparameters and strictly loaded weights; drop (and log) the noise head; warn, naming
    them, about elements in ``finetune_elements`` (atomic numbers) that pretraining never saw.
    """
    path = Path(path)
    payload = load_checkpoint(path, expected_kind="pretrain")
    spec = payload.get("backbone")
    if not isinstance(spec, dict) or not {"name", "hparams", "state_dict"} <= spec.keys():
        raise CheckpointError(f"{path}: pretraining checkpoint has no backbone "
                              "(name, hparams, state_dict); re-run `denoisepot pretrain`")
    try:
        backbone = backbone_from_hparams(spec["name"], spec["hparams"])
    except UnknownBackboneError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise CheckpointError(
            f"{path}: hyperparameters of backbone {spec['name']!r} do not fit this version "
            f"({exc}); use a checkpoint written by this denoisepot"
        ) from None

    stored = spec["state_dict"]
    expected = backbone.state_dict()
    missing = expected.keys() - stored.keys()
    unexpected = stored.keys() - expected.keys()
    reshaped = [k for k in expected.keys() & stored.keys()
                if tuple(expected[k].shape) != tuple(stored[k].shape)]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"missing {_key_list(missing)}")
        if unexpected:
            parts.append(f"unexpected {_key_list(unexpected)}")
        if reshaped:
            parts.append(f"wrong shape {_key_list(reshaped)}")
        raise CheckpointError(
            f"{path}: backbone weights do not match {spec['name']!r} with the stored "
            f"hyperparameters ({'; '.join(parts)}); the checkpoint is damaged or from another "
            "version"
        )
    backbone.load_state_dict(stored, strict=True)

    noise_head = payload.get("noise_head") or {}
    dropped = sorted(f"noise_head.{k}" for k in (noise_head.get("state_dict") or {}))
    if dropped:
        logger.info(
            "%s: dropped the pretraining noise head (%s, %d tensors): %s",
            path, noise_head.get("kind", "unknown kind"), len(dropped), ", ".join(dropped),
        )
    else:
        logger.info("%s: the checkpoint holds no noise head; nothing dropped", path)

    pretrain_elements = payload.get("elements")
    seen = None if pretrain_elements is None else sorted(int(e) for e in pretrain_elements)
    unseen: list[int] = []
    if seen is not None and finetune_elements is not None:
        unseen = sorted(set(int(e) for e in finetune_elements) - set(seen))
        if unseen:
            warnings.warn(
                f"{path}: the fine-tuning data contain elements {unseen} (atomic numbers) that "
                f"the pretraining data never held (it saw {seen}); their embeddings start "
                "untrained",
                UnseenElementsWarning,
                stacklevel=2,
            )
    return PretrainedBackbone(backbone=backbone, path=path, dropped_keys=dropped,
                              pretrain_elements=seen, unseen_elements=unseen)


def load_denoiser_energy(head: EnergyHead, path: str | os.PathLike[str]) -> None:
    """Copy the scalar ``U`` of the gradient noise head in the pretraining checkpoint ``path``
    into the energy ``head``'s per-atom MLP, so that the head's residual starts as ``U``.

    A gradient noise head predicts the noise as ``-∂U/∂x̃`` with ``U`` a per-atom
    ``Linear -> SiLU -> Linear`` summed over atoms; by Tweedie's formula its ideal is
    ``-(σ²/kT) E`` up to a constant, so ``U`` is an energy surface in the wrong units and sign.
    The caller scales it (:func:`scale_energy_head`). Needs the ``per_atom`` readout with two
    layers of the noise head's width; anything else is a :class:`CheckpointError` naming the
    file."""
    import torch

    path = Path(path)
    payload = load_checkpoint(path, expected_kind="pretrain")
    noise_head = payload.get("noise_head") or {}
    if noise_head.get("kind") != "gradient":
        raise CheckpointError(
            f"{path}: its noise head is {noise_head.get('kind', 'unknown')!r}; only a gradient "
            "noise head (SchNet, SE(3)-Transformer) holds an energy to start the energy head from"
        )
    state = noise_head["state_dict"]
    layers = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    wanted = {"energy.0.weight": layers[0].weight, "energy.0.bias": layers[0].bias}
    if len(layers) == 2:
        wanted |= {"energy.2.weight": layers[1].weight, "energy.2.bias": layers[1].bias}
    if (not head.per_atom or len(layers) != 2 or set(state) != set(wanted)
            or any(state[k].shape != v.shape for k, v in wanted.items())):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(state.items()))
        raise CheckpointError(
            f"{path}: its noise head ({shapes}) does not fit the energy head (readout "
            f"{head.hparams['readout']}, {head.hparams['num_layers']} layers of "
            f"{head.hparams['hidden_features']}); use the per_atom readout and the default "
            "head size"
        )
    with torch.no_grad():
        for key, parameter in wanted.items():
            parameter.copy_(state[key])
    logger.info("%s: energy head starts from the gradient noise head's scalar U", path)


def scale_energy_head(head: EnergyHead, slope_ev: float, shift_ev_per_atom: float) -> None:
    """Make a per-atom head whose MLP sums to ``U`` predict ``ref + slope · U + shift · n``
    (eV), by scaling and shifting the MLP's last layer (the residual buffers stay)."""
    import torch

    last = [m for m in head.mlp if isinstance(m, torch.nn.Linear)][-1]
    scale = float(head.residual_scale_ev)
    offset = (shift_ev_per_atom - float(head.residual_shift_ev)) / scale
    with torch.no_grad():
        last.weight.mul_(slope_ev / scale)
        last.bias.mul_(slope_ev / scale).add_(offset)

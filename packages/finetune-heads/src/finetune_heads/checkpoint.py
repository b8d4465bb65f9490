"""The fine-tuned checkpoint: kind ``"finetune"``, format version 1.

One file of plain data (loads with ``torch.load(weights_only=True)``)::

    kind, format_version
    backbone               backbone_to_dict(...): registry name, hyperparameters, weights
    head                   {"hparams": ..., "state_dict": ...} (buffers: reference energies,
                           residual scale and shift)
    reference_energies_ev  float64 [119], the same values as the head's buffer, for readers
    compute_forces         whether the potential was trained with forces
    units                  {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"}
    ...                    anything the trainer adds (recipe, data, metrics), plain data only
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from equivariant_backbones import (
    CheckpointError,
    UnknownBackboneError,
    backbone_from_dict,
    backbone_to_dict,
    load_checkpoint,
)

from .head import EnergyHead
from .potential import Potential

FINETUNE_KIND = "finetune"
FINETUNE_FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"}


def potential_to_checkpoint(potential: Potential, **extra: Any) -> dict[str, Any]:
    """The fine-tuned checkpoint dict of ``potential``; ``extra`` (plain data: recipe, data
    provenance, metrics) is stored beside it."""
    reserved = {"kind", "format_version", "backbone", "head", "reference_energies_ev", "units",
                "compute_forces"}
    clash = reserved & extra.keys()
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} are reserved in a fine-tuned checkpoint")
    head_state = {k: v.detach().cpu().clone() for k, v in potential.head.state_dict().items()}
    return {
        "kind": FINETUNE_KIND,
        "format_version": FINETUNE_FORMAT_VERSION,
        "backbone": backbone_to_dict(potential.backbone),
        "head": {"hparams": potential.head.hparams, "state_dict": head_state},
        "reference_energies_ev": head_state["reference_energies_ev"].clone(),
        "compute_forces": bool(potential.compute_forces),
        "units": dict(UNITS),
        **extra,
    }


def potential_from_checkpoint(
    payload: dict[str, Any], path: str | os.PathLike[str] = "<checkpoint>"
) -> Potential:
    """Rebuild the potential from a loaded fine-tuned checkpoint dict (weights strict)."""
    try:
        backbone = backbone_from_dict(payload["backbone"])
        head = EnergyHead(**payload["head"]["hparams"])
        head.load_state_dict(payload["head"]["state_dict"], strict=True)
    except KeyError as exc:
        raise CheckpointError(f"{path}: fine-tuned checkpoint lacks {exc}; it is damaged or "
                              "not written by `denoisepot finetune`") from None
    except (RuntimeError, TypeError, UnknownBackboneError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: the stored network does not rebuild ({first_line}); "
                              "use a checkpoint written by this denoisepot") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return Potential(backbone, head, compute_forces=bool(payload.get("compute_forces", True)))


def load_finetuned(path: str | os.PathLike[str]) -> tuple[Potential, dict[str, Any]]:
    """Load the fine-tuned checkpoint ``path``: the potential (in eval mode) and the full
    payload. A pretraining checkpoint or another format version is a CheckpointError."""
    path = Path(path)
    payload = load_checkpoint(path, expected_kind=FINETUNE_KIND,
                              supported_versions=(FINETUNE_FORMAT_VERSION,))
    potential = potential_from_checkpoint(payload, path)
    potential.eval()
    return potential, payload

"""The portable form of a backbone (registry name, hyperparameters, weights) and safe
checkpoint files.

Every checkpoint that denoisepot writes embeds ``backbone_to_dict(backbone)``; any package
can rebuild the network from it with ``backbone_from_dict`` without importing the code that
trained it. Files hold only tensors and plain Python containers so that they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .base import Backbone, backbone_from_hparams

PORTABLE_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the fix."""


def backbone_to_dict(backbone: Backbone) -> dict[str, Any]:
    """Registry name, hyperparameters and weights of ``backbone`` as plain data."""
    return {
        "portable_version": PORTABLE_VERSION,
        "name": backbone.name,
        "hparams": backbone.hparams,
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
    }


def backbone_from_dict(spec: dict[str, Any], *, load_weights: bool = True) -> Backbone:
    """Rebuild the backbone described by ``spec``; weights load strictly."""
    if spec.get("portable_version") != PORTABLE_VERSION:
        raise CheckpointError(
            f"backbone spec has portable_version {spec.get('portable_version')!r}, "
            f"this version reads {PORTABLE_VERSION}"
        )
    backbone = backbone_from_hparams(spec["name"], spec["hparams"])
    if load_weights:
        backbone.load_state_dict(spec["state_dict"], strict=True)
    return backbone


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Save ``obj`` with torch.save to a temporary file beside ``path``, then rename it
    into place, so that a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_kind: str | None = None,
    supported_versions: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """Load a denoisepot checkpoint with ``weights_only=True`` and check its header.

    Every checkpoint is a dict with ``"kind"`` (for example ``"pretrain"`` or ``"finetune"``)
    and ``"format_version"``. Raises :class:`CheckpointError` with one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(
            f"{path}: not a readable denoisepot checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(payload, dict) or "kind" not in payload or "format_version" not in payload:
        raise CheckpointError(
            f"{path}: not a denoisepot checkpoint (no kind/format_version header)"
        )
    if payload["format_version"] not in supported_versions:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload['format_version']} is not supported "
            f"(this denoisepot reads {', '.join(map(str, supported_versions))})"
        )
    if expected_kind is not None and payload["kind"] != expected_kind:
        raise CheckpointError(
            f"{path}: this is a {payload['kind']} checkpoint, but a {expected_kind} checkpoint "
            "is needed here"
        )
    return payload

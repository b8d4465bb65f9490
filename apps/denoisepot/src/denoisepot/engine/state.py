"""Checkpoint files written by the engine, all dicts of plain data and tensors that load with
``torch.load(weights_only=True)`` and are written atomically (temporary file, then rename).

* the pretraining checkpoint (``kind="pretrain"``, format 1): backbone (portable form) and
  noise head kept apart, the objective, data provenance, split, seed, elements, units;
* the training state (``kind="training_state"``): everything a resumed run needs to continue
  exactly where the last one stopped (weights, optimizer, scheduler, RNG states, epoch and
  batch position, counters).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from equivariant_backbones import atomic_torch_save, load_checkpoint

PRETRAIN_FORMAT_VERSION = 1
TRAINING_STATE_KIND = "training_state"
TRAINING_STATE_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python global RNG states as plain data."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["cached_gaussian"],
    ))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: Path, state: dict[str, Any]) -> Path:
    """Write a resumable training state atomically; ``state`` gets the header keys."""
    return atomic_torch_save(
        {"kind": TRAINING_STATE_KIND, "format_version": TRAINING_STATE_VERSION, **state}, path
    )


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_training_state` (weights_only)."""
    return load_checkpoint(path, expected_kind=TRAINING_STATE_KIND,
                           supported_versions=(TRAINING_STATE_VERSION,))


def save_pretrain_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write a pretraining checkpoint atomically; ``payload`` gets the header keys."""
    return atomic_torch_save(
        {"kind": "pretrain", "format_version": PRETRAIN_FORMAT_VERSION, **payload}, path
    )

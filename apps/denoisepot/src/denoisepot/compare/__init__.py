"""`denoisepot compare`: pretrained versus from-scratch fine-tuning, run fairly and reported in
the paper's table shape (kcal/mol), with data-efficiency and σ-sweep plots.

Names load lazily so that the command line's help stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CompareConfig": "config",
    "PROTOCOLS": "config",
    "SCALES": "config",
    "SMALL_HPARAMS": "config",
    "CompareResult": "orchestrate",
    "run_compare": "orchestrate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Built-in nonequilibrium data: RDKit embedding, Langevin MD or normal-mode sampling, GFN2-xTB
labels (tblite), written to a canonical molgraph-data store; and the cached built-in dataset.

Names load lazily so that the command line's help stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BUILTIN_MOLECULES": "molecules",
    "BUILTIN_RECIPE": "cache",
    "BUILTIN_STORE_NAME": "cache",
    "CACHE_ENV_VAR": "cache",
    "builtin_molecules": "cache",
    "cache_folder": "cache",
    "ensure_builtin_store": "cache",
    "MoleculeSpec": "embed",
    "read_smiles_file": "embed",
    "generate_store": "generate",
    "GenerationRecipe": "recipe",
    "SAMPLING_METHODS": "recipe",
    "LEVEL_OF_THEORY": "xtb",
    "xtb_energy_forces": "xtb",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

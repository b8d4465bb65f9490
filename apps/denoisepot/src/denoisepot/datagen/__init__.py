"""Built-in nonequilibrium data: RDKit embedding, Langevin MD or normal-mode sampling, GFN2-xTB
labels (tblite), written to a canonical molgraph-data store; and the cached built-in dataset."""

from __future__ import annotations

from .cache import (
    BUILTIN_RECIPE,
    BUILTIN_STORE_NAME,
    CACHE_ENV_VAR,
    builtin_molecules,
    cache_folder,
    ensure_builtin_store,
)
from .embed import MoleculeSpec, read_smiles_file
from .generate import SAMPLING_METHODS, GenerationRecipe, generate_store
from .molecules import BUILTIN_MOLECULES
from .xtb import LEVEL_OF_THEORY, xtb_energy_forces

__all__ = [
    "BUILTIN_MOLECULES",
    "BUILTIN_RECIPE",
    "BUILTIN_STORE_NAME",
    "CACHE_ENV_VAR",
    "LEVEL_OF_THEORY",
    "SAMPLING_METHODS",
    "GenerationRecipe",
    "MoleculeSpec",
    "builtin_molecules",
    "cache_folder",
    "ensure_builtin_store",
    "generate_store",
    "read_smiles_file",
    "xtb_energy_forces",
]

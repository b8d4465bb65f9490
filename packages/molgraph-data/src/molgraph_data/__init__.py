"""molgraph_data: read molecular dataset releases into one lazy HDF5 store (Å, eV, eV/Å),
split it, fit per-element reference energies and serve PyG batches.

Names load lazily, so ``import molgraph_data`` does not import torch or h5py.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DataError": "errors",
    "MoleculeRecord": "records",
    "convert": "convert",
    "ensure_store": "convert",
    "detect_format": "formats",
    "list_formats": "formats",
    "Store": "store",
    "is_store": "store",
    "ConformationBlock": "store",
    "SPLIT_TAGS": "store",
    "ConformationDataset": "dataset",
    "collate_conformations": "dataset",
    "make_dataloader": "dataset",
    "BatchIndexSampler": "dataset",
    "split_within_molecules": "splits",
    "split_by_molecule": "splits",
    "official_split": "splits",
    "subset": "splits",
    "stratified_subset": "splits",
    "exclude": "splits",
    "save_split": "splits",
    "load_split": "splits",
    "ReferenceEnergies": "reference",
    "fit_reference_energies": "reference",
    "residual_statistics": "reference",
    "ANI1_SELF_ENERGIES_EV": "reference",
    "Summary": "summary",
    "summarize": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        where = _EXPORTS[name]
        module = import_module(f".{where}", __name__)
        # bind every name of that module now: importing the submodule ``convert`` sets the
        # package attribute ``convert`` to the module, which would hide the function
        for export, home in _EXPORTS.items():
            if home == where:
                globals()[export] = getattr(module, export)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

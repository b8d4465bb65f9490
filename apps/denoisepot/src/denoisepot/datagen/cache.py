"""The built-in dataset, generated once into the user's cache folder and checked on every use.

A finished store is renamed into place and followed by a small JSON receipt holding the recipe
and the store's SHA-256; a store without a matching receipt (half-written, corrupt, or made by
another recipe) is regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from .embed import MoleculeSpec
from .generate import GenerationRecipe, generate_store
from .molecules import BUILTIN_MOLECULES

#: environment variable that overrides the cache folder
CACHE_ENV_VAR = "DENOISEPOT_CACHE"
#: recipe of the built-in dataset: 64 conformations per molecule, Langevin MD at 3 temperatures
BUILTIN_RECIPE = GenerationRecipe(
    conformers=64, sampling="md", temperatures_kelvin=(300.0, 600.0, 1000.0), seed=0
)
#: file name of the built-in store in the cache folder (bump the version with the recipe)
BUILTIN_STORE_NAME = "builtin-gfn2-md-v1.h5"


def cache_folder(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$DENOISEPOT_CACHE``, else ``~/.cache/denoisepot``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "denoisepot"


def builtin_molecules() -> list[MoleculeSpec]:
    """The built-in molecules as specs, in their fixed order."""
    return [MoleculeSpec(name=name, smiles=smiles) for name, smiles in BUILTIN_MOLECULES]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _receipt_content(recipe: GenerationRecipe, molecules: list[MoleculeSpec]) -> dict:
    return {"recipe": asdict(recipe), "molecules": [[m.name, m.smiles] for m in molecules]}


def store_is_valid(store: Path, receipt: Path, expected: dict) -> bool:
    """True when ``store`` matches the SHA-256 in ``receipt`` and was made by ``expected``."""
    if not store.is_file() or not receipt.is_file():
        return False
    try:
        saved = json.loads(receipt.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or saved.get("content") != json.loads(json.dumps(expected)):
        return False
    return saved.get("sha256") == _sha256(store)


def ensure_builtin_store(
    *,
    cache_dir: Path | str | None = None,
    progress: bool = True,
    workers: int | None = None,
    recipe: GenerationRecipe = BUILTIN_RECIPE,
    molecules: list[MoleculeSpec] | None = None,
) -> Path:
    """Path of the built-in GFN2-xTB store (Å, eV, eV/Å) in the cache folder, generating it first
    when it is missing, corrupt or half-written. ``recipe`` and ``molecules`` exist for tests."""
    molecules = builtin_molecules() if molecules is None else molecules
    folder = cache_folder(cache_dir)
    store = folder / BUILTIN_STORE_NAME
    receipt = store.with_suffix(".json")
    content = _receipt_content(recipe, molecules)
    if store_is_valid(store, receipt, content):
        return store
    receipt.unlink(missing_ok=True)
    generate_store(
        molecules,
        recipe,
        store,
        workers=workers,
        progress=progress,
        description="built-in dataset (once)",
    )
    tmp = receipt.with_name(f".{receipt.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"content": content, "sha256": _sha256(store)}, indent=1))
    os.replace(tmp, receipt)
    return store

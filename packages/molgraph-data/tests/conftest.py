"""Small synthetic release files for molgraph-data tests (real samples come from shared_data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest


def molecule_positions(n_atoms: int, n_conf: int, seed: int = 0) -> np.ndarray:
    """Conformations [C, A, 3] Å: atoms on a 1.5 Å line, jiggled by < 0.2 Å (never close)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((n_atoms, 3))
    base[:, 0] = 1.5 * np.arange(n_atoms)
    return (base + rng.uniform(-0.2, 0.2, (n_conf, n_atoms, 3))).astype(np.float32)


@pytest.fixture
def write_ani1() -> Callable[..., Path]:
    """Write an ANI-1-layout file: ``groups`` maps a name to a dict of datasets."""

    def write(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> Path:
        with h5py.File(path, "w") as f:
            top = f.create_group("gdb11_s01")
            for name, datasets in groups.items():
                group = top.create_group(name)
                for key, value in datasets.items():
                    group.create_dataset(key, data=value)
        return path

    return write


@pytest.fixture
def ani1_group() -> Callable[..., dict[str, np.ndarray]]:
    """Datasets of one valid ANI-1 molecule group (water by default)."""

    def make(symbols: tuple[str, ...] = ("O", "H", "H"), n_conf: int = 4, seed: int = 0):
        pos = molecule_positions(len(symbols), n_conf, seed)
        energies = -76.0 + 0.01 * np.random.default_rng(seed).standard_normal(n_conf)
        return {
            "coordinates": pos,
            "energies": energies,
            "species": np.array([s.encode() for s in symbols]),
        }

    return make


@pytest.fixture
def write_rmd17() -> Callable[..., Path]:
    """Write an rMD17-layout npz (kcal/mol, Å)."""

    def write(path: Path, n_conf: int = 5, z: tuple[int, ...] = (6, 8, 1, 1), seed: int = 0):
        rng = np.random.default_rng(seed)
        np.savez(
            path,
            nuclear_charges=np.array(z, np.uint8),
            coords=molecule_positions(len(z), n_conf, seed).astype(np.float64),
            energies=-1000.0 + rng.standard_normal(n_conf),
            forces=rng.standard_normal((n_conf, len(z), 3)),
        )
        return path

    return write

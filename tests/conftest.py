"""Fixtures of the cross-package tests: a tiny synthetic store for fine-tuning runs, and a
runner that kills a command with SIGKILL once it reaches a given point."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator


@pytest.fixture(scope="session")
def water_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 water molecules jiggled around one geometry, with Lennard-Jones energies (eV) and
    forces (eV/Å): 48 training, 6 validation and 6 test conformations in the 80/10/10 split."""
    from molgraph_data import convert

    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    frames = []
    for _ in range(60):
        atoms = Atoms("OH2", positions=base + 0.05 * rng.standard_normal((3, 3)))
        atoms.calc = LennardJones(sigma=0.9, epsilon=0.1, rc=4.0)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    folder = tmp_path_factory.mktemp("water")
    ase.io.write(folder / "water.extxyz", frames, format="extxyz")
    return convert([folder / "water.extxyz"], folder / "water.h5")


KillWhen = Callable[[list[str], Callable[[], bool]], None]


@pytest.fixture
def kill_9_when() -> KillWhen:
    """``kill_9_when(command, ready)``: run ``command`` (warnings off, output discarded), poll
    ``ready()`` until it holds (failing if the command ends first), then SIGKILL it and check
    that it died of that signal."""

    def run(command: list[str], ready: Callable[[], bool]) -> None:
        process = subprocess.Popen(command, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not ready():
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL

    return run

"""Generate a labelled store: embed each molecule, sample nonequilibrium conformations, label them
with GFN2-xTB, write the canonical molgraph-data store (Å, eV, eV/Å) atomically.

Molecules run in parallel worker processes (one OpenMP thread each); each molecule's random
stream is derived from (seed, molecule position), so results do not depend on scheduling.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.stopping import sigterm_raises, stop_pool
from .embed import MoleculeSpec, embed_molecule
from .recipe import GenerationRecipe
from .sampling import Frames, langevin_md, normal_mode_sampling, normal_modes, optimise
from .xtb import LEVEL_OF_THEORY, XtbLabeller


def _frames_per_temperature(total: int, n_temperatures: int) -> list[int]:
    base, extra = divmod(total, n_temperatures)
    return [base + (1 if i < extra else 0) for i in range(n_temperatures)]


def generate_molecule(
    spec: MoleculeSpec, position: int, recipe: GenerationRecipe
) -> tuple[Frames, np.ndarray]:
    """Sample and label ``recipe.conformers`` conformations of one molecule (Å, eV, eV/Å);
    returns the frames and the atomic numbers."""
    streams = np.random.SeedSequence([recipe.seed, position]).spawn(len(recipe.temperatures_kelvin))
    counts = _frames_per_temperature(recipe.conformers, len(recipe.temperatures_kelvin))
    parts: list[Frames] = []
    if recipe.sampling == "md":
        for stream, temperature, count in zip(
            streams, recipe.temperatures_kelvin, counts, strict=True
        ):
            if count == 0:
                continue
            embed_seed, walk_seed = stream.generate_state(2)
            mol = embed_molecule(spec, int(embed_seed % 2**31))
            labeller = XtbLabeller(
                mol.numbers, mol.positions, charge=mol.charge, uhf=mol.uhf, name=spec.name
            )
            parts.append(
                langevin_md(
                    labeller,
                    mol.numbers,
                    mol.positions,
                    temperature_kelvin=temperature,
                    n_frames=count,
                    rng=np.random.default_rng(walk_seed),
                    timestep_fs=recipe.timestep_fs,
                    friction_per_fs=recipe.friction_per_fs,
                    equilibration_steps=recipe.equilibration_steps,
                    steps_between_frames=recipe.steps_between_frames,
                )
            )
    else:
        embed_seed = np.random.SeedSequence([recipe.seed, position, 1]).generate_state(1)[0]
        mol = embed_molecule(spec, int(embed_seed % 2**31))
        labeller = XtbLabeller(
            mol.numbers, mol.positions, charge=mol.charge, uhf=mol.uhf, name=spec.name
        )
        minimum = optimise(labeller, mol.numbers, mol.positions)
        directions, force_constants = normal_modes(labeller, mol.numbers, minimum)
        for stream, temperature, count in zip(
            streams, recipe.temperatures_kelvin, counts, strict=True
        ):
            if count == 0:
                continue
            parts.append(
                normal_mode_sampling(
                    labeller,
                    mol.numbers,
                    minimum,
                    directions,
                    force_constants,
                    temperature_kelvin=temperature,
                    n_frames=count,
                    rng=np.random.default_rng(stream),
                )
            )
    return Frames(
        positions=np.concatenate([p.positions for p in parts]),
        energy=np.concatenate([p.energy for p in parts]),
        forces=np.concatenate([p.forces for p in parts]),
    ), mol.numbers


def _worker_init() -> None:
    """Pin each worker to one OpenMP thread (set before tblite loads its runtime)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_STACKSIZE"] = os.environ.get("OMP_STACKSIZE", "256M")


def default_workers() -> int:
    """Worker processes to use: the CPU cores this process may run on."""
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def generate_store(
    molecules: Sequence[MoleculeSpec],
    recipe: GenerationRecipe,
    out: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    description: str = "generating conformations",
) -> Path:
    """Generate, label and write ``molecules`` to the store ``out`` (written to a temporary file,
    then renamed, so that ``out`` is either complete or absent); returns ``out``."""
    from molgraph_data.records import MoleculeRecord, validate_record
    from molgraph_data.store import StoreWriter

    recipe.validate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workers = min(default_workers() if workers is None else max(1, workers), len(molecules))
    results: dict[int, tuple[Frames, np.ndarray]] = {}
    with _MoleculeProgress(progress, description, len(molecules)) as advance:
        # always in worker processes: tblite is then single-threaded and bitwise reproducible
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
        # SIGTERM raises here, so that the workers stop with this process
        with sigterm_raises():
            try:
                futures = {
                    pool.submit(generate_molecule, spec, position, recipe): position
                    for position, spec in enumerate(molecules)
                }
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    advance()
            except BaseException:
                # interrupted or a molecule failed: stop the others now, not after the
                # whole list (waiting was the default of the pool's context manager)
                stop_pool(pool)
                raise
        pool.shutdown()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = StoreWriter(tmp)
    try:
        writer.begin_source("none")
        for position, spec in enumerate(molecules):
            frames, numbers = results[position]
            record, _ = validate_record(
                MoleculeRecord(
                    name=spec.name,
                    z=numbers,
                    pos=frames.positions,
                    energy=frames.energy,
                    forces=frames.forces,
                    location=f"{out} ({spec.name})",
                )
            )
            writer.add(record)
        writer.finish(_metadata(molecules, recipe, writer.n_conformations))
        os.replace(tmp, out)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    return out


def _metadata(
    molecules: Sequence[MoleculeSpec], recipe: GenerationRecipe, n_conformations: int
) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "sources": [
            {
                "path": "denoisepot data generate",
                "format": "generated",
                "options": asdict(recipe),
                "split_tag": "none",
                "level_of_theory": f"{LEVEL_OF_THEORY} {version('tblite')}",
                "source_units": {"energy": "Hartree", "length": "bohr", "forces": "Hartree/bohr"},
                "n_conformations": n_conformations,
            }
        ],
        "level_of_theory": f"{LEVEL_OF_THEORY} {version('tblite')}",
        "generator": {
            "rdkit": version("rdkit"),
            "molecules": [[m.name, m.smiles] for m in molecules],
        },
    }


class _MoleculeProgress:
    """A rich progress bar over molecules (or nothing when disabled); yields ``advance()``."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self._enabled, self._description, self._total = enabled, description, total
        self._bar = None

    def __enter__(self):
        if not self._enabled:
            return lambda: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("molecules"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._bar.start()
        task = self._bar.add_task(self._description, total=self._total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

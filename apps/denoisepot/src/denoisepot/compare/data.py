"""The comparison's data: the built-in set or the user's files as stores, and a store used for
both pretraining and fine-tuning partitioned so that pretraining never sees a fine-tuning
conformation (train, validation or test)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.runfile import write_json_atomic
from .config import CompareConfig

#: seed of the pretraining/fine-tuning partition (fixed: every seed fine-tunes on the same pool)
PARTITION_SEED = 12345


@dataclass
class FinetuneSet:
    """One fine-tuning dataset: a short name, its store, the split used and how many
    training, validation and test conformations that split offers."""

    name: str
    store: Path
    split: str
    available_train: int = 0
    validation: int = 0
    test: int = 0


@dataclass
class ComparisonData:
    """Stores for pretraining and for fine-tuning, and what was done to get them."""

    pretrain_stores: list[Path]
    finetune: list[FinetuneSet]
    notes: list[str]
    generation_seconds: float


def _fingerprint(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def write_partition(source: Path, indices: np.ndarray, out: Path, part: str) -> Path:
    """Write conformations ``indices`` of store ``source`` to a new store ``out`` (atomic),
    molecule by molecule; the metadata keeps the source's and names the partition."""
    from molgraph_data import Store
    from molgraph_data.records import MoleculeRecord, validate_record
    from molgraph_data.store import StoreWriter

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = StoreWriter(tmp)
    try:
        with Store(source) as store:
            metadata = {key: store.metadata[key] for key in ("sources",) if key in store.metadata}
            names = store.molecule_names
            molecule = store.molecule_index[indices]
            writer.begin_source("none")
            for mol in np.unique(molecule):
                rows = indices[molecule == mol]
                block = store.read(rows)
                n_atoms = int(block.n_atoms[0])
                if np.any(block.n_atoms != n_atoms):
                    raise ValueError(f"{source}: molecule {names[mol]} changes its atom count")
                record, _ = validate_record(
                    MoleculeRecord(
                        name=names[mol],
                        z=block.z[:n_atoms],
                        pos=block.pos.reshape(rows.size, n_atoms, 3),
                        energy=block.energy,
                        forces=None
                        if block.forces is None
                        else block.forces.reshape(rows.size, n_atoms, 3),
                        location=f"{source} ({names[mol]})",
                    )
                )
                writer.add(record)
        metadata["partition"] = {"of": str(source), "part": part, "seed": PARTITION_SEED}
        writer.finish(metadata)
        os.replace(tmp, out)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    return out


def _receipt_is(receipt: Path, identity: dict[str, Any]) -> bool:
    """Whether ``receipt`` records ``identity`` (a missing or unreadable one does not: the
    partition is made again)."""
    try:
        return json.loads(receipt.read_text()) == identity
    except (OSError, ValueError):
        return False


def _partition(source: Path, fraction: float, folder: Path) -> tuple[Path, Path]:
    """(pretraining part, fine-tuning part) of ``source``, split within each molecule; reused
    while the source and the fraction are unchanged."""
    from molgraph_data import is_store, split_within_molecules

    folder.mkdir(parents=True, exist_ok=True)
    stem = source.stem
    pretrain, finetune = folder / f"{stem}-pretrain.h5", folder / f"{stem}-finetune.h5"
    receipt = folder / f"{stem}-partition.json"
    identity = {"source": _fingerprint(source), "fraction": fraction, "seed": PARTITION_SEED}
    if is_store(pretrain) and is_store(finetune) and _receipt_is(receipt, identity):
        return pretrain, finetune
    receipt.unlink(missing_ok=True)
    parts = split_within_molecules(source, (fraction, 1.0 - fraction), PARTITION_SEED)
    write_partition(source, parts["train"], pretrain, "pretrain")
    write_partition(source, parts["val"], finetune, "finetune")
    write_json_atomic(receipt, identity)
    return pretrain, finetune


def _split_for(store: Path, requested: str) -> str:
    """The split to fine-tune with: ``requested``, or for "auto" the official one where the
    store carries official tags, else within molecules."""
    from molgraph_data import Store

    if requested != "auto":
        return requested
    with Store(store) as opened:
        return "official" if np.any(opened.split_codes != 0) else "conformation"


def prepare_data(config: CompareConfig) -> ComparisonData:
    """Resolve (generate, convert, partition) the comparison's stores under ``config.out``."""
    import time

    from molgraph_data import ensure_store

    from ..datagen import ensure_builtin_store

    started = time.perf_counter()
    generation_seconds = 0.0
    builtin: Path | None = None
    if not config.pretrain_data or not config.finetune_data:
        builtin = ensure_builtin_store(cache_dir=config.cache_dir, progress=config.progress)
        generation_seconds = time.perf_counter() - started
    workdir = config.out / "data"
    workdir.mkdir(parents=True, exist_ok=True)
    pretrain = (
        [ensure_store(p, workdir) for p in config.pretrain_data]
        if config.pretrain_data
        else [builtin]
    )
    sources = list(config.finetune_data) or [builtin]
    finetune = [ensure_store(p, workdir) for p in config.finetune_data] or [builtin]
    notes = []
    for number, store in enumerate(finetune):
        resolved = [p.resolve() for p in pretrain]
        if store.resolve() not in resolved:
            continue
        shared = pretrain[resolved.index(store.resolve())]
        pre_part, fine_part = _partition(shared, config.pretrain_fraction, workdir / "partition")
        pretrain = [pre_part if p.resolve() == store.resolve() else p for p in pretrain]
        finetune[number] = fine_part
        notes.append(
            f"{sources[number]} serves both pretraining and fine-tuning: within every molecule "
            f"{config.pretrain_fraction:.0%} of its conformations go to pretraining and the "
            "rest to fine-tuning (train, validation and test)"
        )
    names: list[str] = []
    for source in sources:
        stem = Path(source).stem
        names.append(stem if stem not in names else f"{stem}-{len(names)}")
    sets = [
        FinetuneSet(name, store, _split_for(store, config.finetune_split))
        for name, store in zip(names, finetune, strict=True)
    ]
    return ComparisonData(pretrain, sets, notes, generation_seconds)

"""Stream release files into one canonical store, atomically."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError
from .formats import detect_format, get_reader
from .formats.base import split_tag_from_name
from .records import validate_record
from .store import Store, StoreWriter, is_store

PathLike = str | os.PathLike[str]


def _fingerprint(path: Path) -> list[list[Any]]:
    """Name, size and modification time of a file, or of every file in a folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def convert(
    sources: Sequence[PathLike],
    out: PathLike,
    *,
    format: str | None = None,
    progress: Callable[[int], None] | None = None,
    **reader_options: Any,
) -> Path:
    """Convert release files into one store at ``out`` (Å, eV, eV/Å), written atomically.

    ``format`` overrides detection for every source; ``reader_options`` go to the reader
    (e.g. ``high_energy=True`` for ANI-1, ``property_set="ccsd(t)_cbs"`` for ANI-1x).
    ``progress`` is called with the number of conformations added after each block.
    """
    if not sources:
        raise DataError(None, "no source files given")
    paths = [Path(s) for s in sources]
    out = Path(out)
    plan = []
    for path in paths:
        if not path.exists():
            raise DataError(path, "no such file or directory")
        name = format or detect_format(path)
        if name == "store":
            raise DataError(path, "is already a molgraph-data store; nothing to convert")
        reader = get_reader(name, path)
        plan.append((path, reader, reader.resolve_options(path, reader_options)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    writer = StoreWriter(tmp)
    try:
        dropped: dict[str, int] = {}
        sources_meta = []
        for path, reader, options in plan:
            tag = split_tag_from_name(path) if path.is_file() else "none"
            writer.begin_source(tag)
            before = writer.n_conformations
            for record in reader.read(path, **options):
                clean, n_dropped = validate_record(record)
                if n_dropped:
                    dropped[record.location] = n_dropped
                writer.add(clean)
                if progress is not None:
                    progress(clean.n_conformations)
            sources_meta.append(
                {
                    "path": str(path),
                    "format": reader.name,
                    "options": {k: v for k, v in options.items() if v is not None},
                    "split_tag": tag,
                    "level_of_theory": reader.level_of_theory(path, options),
                    "source_units": reader.source_units,
                    "n_conformations": writer.n_conformations - before,
                    "fingerprint": _fingerprint(path),
                }
            )
        if writer.n_conformations == 0:
            raise DataError(paths[0], "no conformations to write (all filtered or masked out)")
        metadata: dict[str, Any] = {
            "sources": sources_meta,
            "n_dropped_nan": sum(dropped.values()),
            "dropped_nan_by_group": dropped,
        }
        writer.finish(metadata)
        os.replace(tmp, out)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    return out


def ensure_store(path: PathLike, workdir: PathLike, **reader_options: Any) -> Path:
    """``path`` itself if it is a store; else convert it once into ``workdir/<stem>.h5``
    (reused while the source files are unchanged and the reader options equal)."""
    path = Path(path)
    if is_store(path):
        return path
    if not path.exists():
        raise DataError(path, "no such file or directory")
    options_key = hashlib.sha1(
        json.dumps(reader_options, sort_keys=True, default=str).encode()
    ).hexdigest()[:8]
    stem = path.name if path.is_dir() else path.stem
    suffix = f"-{options_key}" if reader_options else ""
    out = Path(workdir) / f"{stem}{suffix}.h5"
    if is_store(out):
        with Store(out) as store:
            sources = store.metadata.get("sources", [])
            if len(sources) == 1 and sources[0].get("fingerprint") == _fingerprint(path):
                return out
    return convert([path], out, **reader_options)

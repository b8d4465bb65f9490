"""The manifest of finished runs: what lets an interrupted comparison continue where it stopped.

Several comparisons may share one output folder (say one per backbone, each on its own GPU):
every save takes an exclusive lock, merges the runs other processes saved in the meantime and
replaces the file atomically, so no process loses another's runs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


def _read(path: Path) -> dict[str, dict[str, Any]]:
    """The runs saved in ``path`` (none when it is missing, unreadable or of another version)."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
        if content.get("version") == MANIFEST_VERSION:
            return dict(content["runs"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX; elsewhere no lock is taken)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Manifest:
    """Finished runs by name (a name carries the hash of the run's settings), saved atomically
    after every run so that a killed comparison loses at most the run in progress."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST_FILE
        self.runs: dict[str, dict[str, Any]] = _read(self.path)

    def get(self, name: str) -> dict[str, Any] | None:
        """The stored result of run ``name``, or None when it has not finished."""
        return self.runs.get(name)

    def add(self, name: str, result: dict[str, Any]) -> None:
        """Record a finished run and save the manifest, keeping the runs that other processes
        sharing the folder saved since this one last read it."""
        self.runs[name] = result
        with _locked(self.path.with_name(f".{self.path.name}.lock")):
            self.runs = {**_read(self.path), **self.runs}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "runs": self.runs}, indent=1))
            os.replace(tmp, self.path)

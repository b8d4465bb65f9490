"""The manifest of finished runs: what lets an interrupted comparison continue where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class Manifest:
    """Finished runs by name (a name carries the hash of the run's settings), saved atomically
    after every run so that a killed comparison loses at most the run in progress."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST_FILE
        self.runs: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                content = json.loads(self.path.read_text())
                if content.get("version") == MANIFEST_VERSION:
                    self.runs = dict(content["runs"])
            except (OSError, ValueError, KeyError, AttributeError):
                self.runs = {}

    def get(self, name: str) -> dict[str, Any] | None:
        """The stored result of run ``name``, or None when it has not finished."""
        return self.runs.get(name)

    def add(self, name: str, result: dict[str, Any]) -> None:
        """Record a finished run and save the manifest."""
        self.runs[name] = result
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "runs": self.runs}, indent=1))
        os.replace(tmp, self.path)

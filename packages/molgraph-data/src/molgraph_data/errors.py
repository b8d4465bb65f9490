"""Errors a user can cause with their data."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad input data. The message is one line: the file (and group), what is wrong, the fix."""

    def __init__(self, path: str | os.PathLike[str] | None, message: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.detail = message
        super().__init__(message if self.path is None else f"{self.path}: {message}")

    def __reduce__(self) -> tuple[type[DataError], tuple[str | None, str]]:
        # Rebuilt from both arguments, so the error survives DataLoader workers and pools.
        return (type(self), (self.path, self.detail))

"""`denoisepot data generate` (filled in by the built-in data issue)."""

from __future__ import annotations

import typer


def register(data_app: typer.Typer) -> None:
    """Add `generate` to the `data` command group."""

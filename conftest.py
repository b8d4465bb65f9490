"""Fixtures shared by every package's tests: where the real dataset samples live."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real release-format samples (../shared/data); skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real dataset samples not found at {SHARED_DATA} (not part of a clone)")
    return SHARED_DATA

"""The et backbone (being written)."""

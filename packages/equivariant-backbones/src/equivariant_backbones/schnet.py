"""The schnet backbone (being written)."""

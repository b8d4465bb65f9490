"""The se3t backbone (being written)."""

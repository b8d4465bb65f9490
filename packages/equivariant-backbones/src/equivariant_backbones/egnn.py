"""The egnn backbone (being written)."""

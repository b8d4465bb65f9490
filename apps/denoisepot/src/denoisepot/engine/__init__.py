"""The training engine: Lightning modules, learning-rate schedule, checkpoints."""

"""denoise_objective."""

__version__ = "0.1.0"

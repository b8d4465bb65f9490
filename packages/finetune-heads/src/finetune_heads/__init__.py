"""finetune_heads."""

__version__ = "0.1.0"

"""denoisepot: denoise pretraining and fine-tuning of neural interatomic potentials."""

__version__ = "0.1.0"

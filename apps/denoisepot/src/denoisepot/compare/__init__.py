"""`denoisepot compare`: pretrained versus from-scratch fine-tuning, run fairly and reported in
the paper's table shape (kcal/mol), with data-efficiency and σ-sweep plots."""

from __future__ import annotations

from .config import PROTOCOLS, SCALES, SMALL_HPARAMS, CompareConfig
from .orchestrate import CompareResult, run_compare

__all__ = ["PROTOCOLS", "SCALES", "SMALL_HPARAMS", "CompareConfig", "CompareResult", "run_compare"]

"""The within-molecule correlation behind `evaluate`'s corr(U, E) for a pretrained denoiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from denoisepot.engine.alignment import within_molecule_correlation


def test_each_molecules_offset_is_removed_before_correlating() -> None:
    rng = np.random.default_rng(0)
    molecule = np.repeat([3, 7, 11], 50)
    energy = rng.standard_normal(150)
    # U is -2 E inside every molecule, but with a very different constant per molecule
    u = -2.0 * energy + np.repeat([100.0, -40.0, 7.0], 50)
    assert within_molecule_correlation(u, energy, molecule) == pytest.approx(-1.0, abs=1e-12)
    # pooled over all conformations without removing the offsets it would be far from -1
    assert np.corrcoef(u, energy)[0, 1] > -0.2
    noise = rng.standard_normal(150)
    assert abs(within_molecule_correlation(noise, energy, molecule)) < 0.3


def test_nothing_varying_gives_nan() -> None:
    molecule = np.arange(4)  # one conformation per molecule: nothing left after the means
    assert math.isnan(within_molecule_correlation(np.ones(4), np.arange(4.0), molecule))

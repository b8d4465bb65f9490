"""Reference energies: streaming least squares against the exact solution and the ANI-1 values."""

from __future__ import annotations

from pathlib import Path

import molgraph_data as md
import numpy as np
import pytest
from molgraph_data import reference, units


def test_published_ani1_self_energies_in_ev() -> None:
    table = md.ANI1_SELF_ENERGIES_EV
    assert table.shape == (119,) and table.dtype == np.float64
    assert table[1] == -0.500607632585 * units.HARTREE_IN_EV
    assert table[8] == -75.0362229210 * units.HARTREE_IN_EV
    assert np.count_nonzero(table) == 4


def test_streaming_fit_equals_dense_least_squares(
    tmp_path: Path, write_ani1, ani1_group, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups = {
        "a": ani1_group(("O", "H", "H"), 7, 0),
        "b": ani1_group(("C", "H", "H", "H", "H"), 5, 1),
        "c": ani1_group(("N", "H", "H", "H"), 6, 2),
        "d": ani1_group(("C", "O", "H", "H"), 4, 3),
    }
    path = md.convert([write_ani1(tmp_path / "a.h5", groups)], tmp_path / "s.h5")
    monkeypatch.setattr(reference, "CHUNK_CONFORMATIONS", 5)  # force several chunks
    fit = md.fit_reference_energies(path)
    with md.Store(path) as store:
        energy = store.energies()
        block = store.read(np.arange(store.n_conformations))
    owner = np.repeat(np.arange(energy.size), block.n_atoms)
    dense = np.zeros((energy.size, 119))
    np.add.at(dense, (owner, block.z), 1.0)
    cols = [1, 6, 7, 8]
    expected = np.linalg.lstsq(dense[:, cols], energy, rcond=None)[0]
    np.testing.assert_allclose(fit.per_element_ev[cols], expected, rtol=1e-9)
    residual = energy - dense[:, cols] @ expected
    assert fit.residual_std_ev == pytest.approx(residual.std(), rel=1e-6)
    assert fit.residual_per_atom_std_ev == pytest.approx((residual / block.n_atoms).std(), rel=1e-6)
    assert fit.n_conformations == energy.size
    subset = md.fit_reference_energies(path, indices=np.arange(0, 22, 2))
    assert subset.n_conformations == 11


def test_fit_on_ani1_samples_against_published(shared_data: Path, tmp_path: Path) -> None:
    sources = [shared_data / "ani1" / "ani_gdb_s01.h5", shared_data / "ani1" / "gdb_HC_s02.h5"]
    path = md.convert(sources, tmp_path / "ani.h5")
    fit = md.fit_reference_energies(path)
    published = md.residual_statistics(path, md.ANI1_SELF_ENERGIES_EV)
    # the least-squares fit leaves residuals near zero with a spread of about 1.3 eV;
    # the published free-atom energies leave the atomization energy (about -3.6 eV/atom)
    assert abs(fit.residual_per_atom_mean_ev) < 0.1 * fit.residual_per_atom_std_ev
    assert 0.5 < fit.residual_std_ev < 2.0
    assert -4.0 < published.residual_per_atom_mean_ev < -3.0
    # both remove a constant per composition, so after removing each molecule's mean residual
    # the two agree exactly; the fit's total spread can only be smaller
    assert fit.residual_std_ev < published.residual_std_ev
    with md.Store(path) as store:
        energy, molecule = store.energies(), store.molecule_index
        block = store.read(np.arange(store.n_conformations))
    owner = np.repeat(np.arange(energy.size), block.n_atoms)
    fitted = energy - np.bincount(owner, fit.per_element_ev[block.z])
    free = energy - np.bincount(owner, md.ANI1_SELF_ENERGIES_EV[block.z])
    for m in np.unique(molecule):
        sel = molecule == m
        np.testing.assert_allclose(
            fitted[sel] - fitted[sel].mean(), free[sel] - free[sel].mean(), atol=1e-8
        )
        # each molecule's mean residual under the fit is within the fit's spread of zero
        assert abs(fitted[sel].mean()) < 2 * fit.residual_std_ev


def test_no_energies_is_an_error(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.io import write

    path = tmp_path / "pos.xyz"
    write(path, [Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])], format="extxyz")
    store = md.convert([path], tmp_path / "pos.h5")
    with pytest.raises(md.DataError, match="no conformation with an energy"):
        md.fit_reference_energies(store)

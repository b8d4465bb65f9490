import math

from molgraph_data import units


def test_kcal_per_mol_matches_codata_derived_value():
    # 1 kcal/mol = 4184 J/mol / (N_A e) = 0.04336410424 eV; Faraday constant 96485.33212 C/mol
    assert math.isclose(units.KCAL_PER_MOL_IN_EV, 4.184 / 96.48533212, rel_tol=1e-9)
    assert math.isclose(units.KCAL_PER_MOL_IN_EV * units.EV_IN_KCAL_PER_MOL, 1.0)


def test_hartree_per_bohr_force_factor():
    factor = units.force_to_ev_per_angstrom("Hartree", "bohr")
    assert math.isclose(factor, 27.211386245988 / 0.529177210903, rel_tol=1e-15)


def test_data_error_survives_pickling_across_processes():
    import pickle

    from molgraph_data.errors import DataError

    error = pickle.loads(pickle.dumps(DataError("a.h5", "group /x: NaN energy")))
    assert isinstance(error, DataError)
    assert str(error) == "a.h5: group /x: NaN energy" and error.path == "a.h5"

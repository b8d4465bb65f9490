"""Physical constants and unit conversions: the one place they are defined.

Inside denoisepot lengths are Å, energies eV and forces eV/Å. Values are CODATA 2018
(the exact SI definitions of N_A and e, and the recommended Hartree energy and Bohr radius).
"""

from __future__ import annotations

#: Hartree energy in eV (CODATA 2018)
HARTREE_IN_EV = 27.211386245988
#: Bohr radius in Å (CODATA 2018)
BOHR_IN_ANGSTROM = 0.529177210903
#: Avogadro constant in 1/mol (exact, SI 2019)
AVOGADRO_PER_MOL = 6.02214076e23
#: elementary charge in C (exact, SI 2019)
ELEMENTARY_CHARGE_C = 1.602176634e-19
#: thermochemical kilocalorie in J (exact)
KILOCALORIE_IN_J = 4184.0
#: 1 kcal/mol in eV (derived from the exact constants above: 0.04336410424...)
KCAL_PER_MOL_IN_EV = KILOCALORIE_IN_J / (AVOGADRO_PER_MOL * ELEMENTARY_CHARGE_C)
#: 1 eV in kcal/mol
EV_IN_KCAL_PER_MOL = 1.0 / KCAL_PER_MOL_IN_EV
#: Boltzmann constant in J/K (exact, SI 2019)
BOLTZMANN_J_PER_K = 1.380649e-23
#: Boltzmann constant in eV/K (from the exact constants: 8.617333262...e-5)
BOLTZMANN_EV_PER_K = BOLTZMANN_J_PER_K / ELEMENTARY_CHARGE_C
#: 1 eV in meV
EV_IN_MEV = 1000.0

#: factor that converts an energy in the named unit to eV
ENERGY_TO_EV = {
    "eV": 1.0,
    "meV": 1.0e-3,
    "Hartree": HARTREE_IN_EV,
    "kcal/mol": KCAL_PER_MOL_IN_EV,
    "kJ/mol": KCAL_PER_MOL_IN_EV / 4.184,
}
#: factor that converts a length in the named unit to Å
LENGTH_TO_ANGSTROM = {"Angstrom": 1.0, "bohr": BOHR_IN_ANGSTROM, "nm": 10.0}


def force_to_ev_per_angstrom(energy_unit: str, length_unit: str) -> float:
    """Factor converting a force in ``energy_unit/length_unit`` to eV/Å."""
    return ENERGY_TO_EV[energy_unit] / LENGTH_TO_ANGSTROM[length_unit]

"""GFN2-xTB energies and forces through tblite, converted at the door to eV and eV/Å."""

from __future__ import annotations

import numpy as np
from molgraph_data.units import BOHR_IN_ANGSTROM, HARTREE_IN_EV

from ..errors import DenoisepotError

#: the level of theory written into every generated store
LEVEL_OF_THEORY = "GFN2-xTB (tblite)"

_FORCE_FACTOR = HARTREE_IN_EV / BOHR_IN_ANGSTROM


class XtbLabeller:
    """GFN2-xTB for one molecule; each call restarts the SCF from the previous wavefunction."""

    def __init__(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        *,
        charge: int = 0,
        uhf: int = 0,
        name: str = "molecule",
    ) -> None:
        from tblite.interface import Calculator

        self.name = name
        self._calculator = Calculator(
            "GFN2-xTB",
            np.asarray(numbers, dtype=np.int32),
            np.asarray(positions, dtype=np.float64) / BOHR_IN_ANGSTROM,
            charge=float(charge),
            uhf=int(uhf),
        )
        self._calculator.set("verbosity", 0)
        self._result = None

    def __call__(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy (eV, float64) and forces ([A, 3] eV/Å) at ``positions`` ([A, 3] Å)."""
        self._calculator.update(np.asarray(positions, dtype=np.float64) / BOHR_IN_ANGSTROM)
        try:
            self._result = self._calculator.singlepoint(self._result)
        except Exception as exc:  # tblite raises a bare RuntimeError on SCF failure
            raise DenoisepotError(
                f"{self.name}: GFN2-xTB failed ({exc}); lower the sampling temperature "
                "or check the SMILES (charge, radicals)"
            ) from exc
        energy = float(self._result.get("energy")) * HARTREE_IN_EV
        forces = -np.asarray(self._result.get("gradient"), dtype=np.float64) * _FORCE_FACTOR
        return energy, forces


def xtb_energy_forces(
    numbers: np.ndarray, positions: np.ndarray, *, charge: int = 0, uhf: int = 0
) -> tuple[float, np.ndarray]:
    """One fresh GFN2-xTB single point: energy in eV and forces [A, 3] in eV/Å (positions in Å)."""
    return XtbLabeller(numbers, positions, charge=charge, uhf=uhf)(positions)

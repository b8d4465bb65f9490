"""Error metrics of a potential, accumulated batch by batch in float64.

Energies: MAE and RMSE per molecule (eV) and per atom (eV/atom, the molecule's error divided
by its atom count). Forces: MAE and RMSE over every Cartesian component (eV/Å). Values are in
eV here; :meth:`ErrorMetrics.scaled` converts them (meV: factor 1000; kcal/mol: pass the
factor from ``molgraph_data.units``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

#: eV -> meV
EV_IN_MEV = 1000.0


@dataclass(frozen=True)
class ErrorMetrics:
    """Test errors in eV (energies), eV/atom and eV/Å (force components); NaN where absent."""

    energy_mae: float
    energy_rmse: float
    energy_per_atom_mae: float
    energy_per_atom_rmse: float
    force_mae: float
    force_rmse: float
    num_molecules: int
    num_force_components: int

    def scaled(self, factor: float) -> dict[str, float]:
        """Every error multiplied by ``factor`` (1000 for meV, eV->kcal/mol for kcal/mol),
        with the counts unchanged, as a plain dict."""
        values = asdict(self)
        return {k: (v if k.startswith("num_") else v * factor) for k, v in values.items()}

    def as_dict(self) -> dict[str, float]:
        """The metrics in eV as a plain dict."""
        return asdict(self)


#: length of :meth:`MetricAccumulator.totals`: six error sums and two counts
TOTALS_SIZE = 8


class MetricAccumulator:
    """Accumulates absolute and squared errors over batches; :meth:`compute` gives
    :class:`ErrorMetrics`. Energies in eV, forces in eV/Å."""

    def __init__(self) -> None:
        self._sums = {"e_abs": 0.0, "e_sq": 0.0, "a_abs": 0.0, "a_sq": 0.0,
                      "f_abs": 0.0, "f_sq": 0.0}
        self.num_molecules = 0
        self.num_force_components = 0

    def update(
        self,
        predicted_energy: torch.Tensor,
        reference_energy: torch.Tensor,
        num_atoms: torch.Tensor,
        predicted_forces: torch.Tensor | None = None,
        reference_forces: torch.Tensor | None = None,
    ) -> None:
        """Add one batch: energies ``[B]`` (eV), atom counts ``[B]``, forces ``[N, 3]`` (eV/Å)."""
        error = (predicted_energy.detach().double() - reference_energy.detach().double()).cpu()
        per_atom = error / num_atoms.detach().cpu().double()
        self._sums["e_abs"] += float(error.abs().sum())
        self._sums["e_sq"] += float((error * error).sum())
        self._sums["a_abs"] += float(per_atom.abs().sum())
        self._sums["a_sq"] += float((per_atom * per_atom).sum())
        self.num_molecules += int(error.numel())
        if predicted_forces is not None and reference_forces is not None:
            force_error = (predicted_forces.detach().double()
                           - reference_forces.detach().double()).cpu()
            self._sums["f_abs"] += float(force_error.abs().sum())
            self._sums["f_sq"] += float((force_error * force_error).sum())
            self.num_force_components += int(force_error.numel())

    def totals(self) -> torch.Tensor:
        """The running sums and counts as one float64 tensor of ``TOTALS_SIZE`` values (sums of
        absolute and squared errors in eV, eV/atom and eV/Å, then the molecule and force
        component counts). Sum it over data-parallel processes (an all-reduce) and hand it to
        :meth:`from_totals` for the metrics of every process's batches together."""
        return torch.tensor([*self._sums.values(), self.num_molecules,
                             self.num_force_components], dtype=torch.float64)

    @classmethod
    def from_totals(cls, totals: torch.Tensor) -> MetricAccumulator:
        """An accumulator holding ``totals`` (as made by :meth:`totals`, possibly summed over
        processes); counts are exact up to 2**53."""
        values = [float(v) for v in totals.detach().double().cpu().reshape(-1)]
        if len(values) != TOTALS_SIZE:
            raise ValueError(f"expected {TOTALS_SIZE} totals, got {len(values)}")
        accumulator = cls()
        accumulator._sums = dict(zip(accumulator._sums, values[:6], strict=True))
        accumulator.num_molecules = round(values[6])
        accumulator.num_force_components = round(values[7])
        return accumulator

    def compute(self) -> ErrorMetrics:
        """MAE and RMSE over everything added so far."""
        n, m = self.num_molecules, self.num_force_components
        s = self._sums

        def mean(total: float, count: int) -> float:
            return total / count if count else math.nan

        return ErrorMetrics(
            energy_mae=mean(s["e_abs"], n),
            energy_rmse=math.sqrt(mean(s["e_sq"], n)),
            energy_per_atom_mae=mean(s["a_abs"], n),
            energy_per_atom_rmse=math.sqrt(mean(s["a_sq"], n)),
            force_mae=mean(s["f_abs"], m),
            force_rmse=math.sqrt(mean(s["f_sq"], m)),
            num_molecules=n,
            num_force_components=m,
        )


def error_metrics(
    predicted_energy: torch.Tensor,
    reference_energy: torch.Tensor,
    num_atoms: torch.Tensor,
    predicted_forces: torch.Tensor | None = None,
    reference_forces: torch.Tensor | None = None,
) -> ErrorMetrics:
    """Metrics of one set of predictions (energies eV, forces eV/Å) in a single call."""
    accumulator = MetricAccumulator()
    accumulator.update(predicted_energy, reference_energy, num_atoms, predicted_forces,
                       reference_forces)
    return accumulator.compute()

"""Evaluation figures: a parity plot (energies, and forces where present) and an error
histogram, written as PNG with matplotlib's Agg canvas (no display, no pyplot state).

Inputs are in eV and eV/Å; ``energy_factor`` converts them for display (for example
``molgraph_data.units.EV_IN_KCAL_PER_MOL`` with ``energy_unit="kcal/mol"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: at most this many force components are drawn in a parity plot (a random sample)
MAX_FORCE_POINTS = 20_000


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    FigureCanvasAgg(figure)
    figure.savefig(tmp, dpi=120)
    tmp.replace(path)
    return path


def _parity_panel(axes: Axes, reference: np.ndarray, predicted: np.ndarray, label: str,
                  unit: str) -> None:
    low = float(min(reference.min(), predicted.min()))
    high = float(max(reference.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="0.5", linewidth=1, zorder=1)
    axes.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0, zorder=2)
    mae = float(np.mean(np.abs(predicted - reference)))
    rmse = float(np.sqrt(np.mean((predicted - reference) ** 2)))
    axes.set_xlabel(f"reference {label} ({unit})")
    axes.set_ylabel(f"predicted {label} ({unit})")
    axes.set_title(f"MAE {mae:.3g}, RMSE {rmse:.3g} {unit}", fontsize="medium")
    axes.set_aspect("equal", adjustable="datalim")


def parity_plot(
    path: str | os.PathLike[str],
    energy_reference_ev: np.ndarray,
    energy_predicted_ev: np.ndarray,
    *,
    forces_reference: np.ndarray | None = None,
    forces_predicted: np.ndarray | None = None,
    energy_factor: float = 1.0,
    energy_unit: str = "eV",
    energy_label: str = "energy",
) -> Path:
    """Predicted against reference energies (eV in, shown × ``energy_factor``) and, when
    given, force components (eV/Å in, shown × ``energy_factor`` per Å); returns the PNG path."""
    with_forces = forces_reference is not None and forces_predicted is not None
    figure = Figure(figsize=(10.0 if with_forces else 5.0, 4.8), layout="constrained")
    panels = figure.subplots(1, 2 if with_forces else 1, squeeze=False)[0]
    _parity_panel(panels[0], np.asarray(energy_reference_ev) * energy_factor,
                  np.asarray(energy_predicted_ev) * energy_factor, energy_label, energy_unit)
    if with_forces:
        reference = np.asarray(forces_reference).ravel()
        predicted = np.asarray(forces_predicted).ravel()
        if reference.size > MAX_FORCE_POINTS:
            chosen = np.random.default_rng(0).choice(reference.size, MAX_FORCE_POINTS,
                                                     replace=False)
            reference, predicted = reference[chosen], predicted[chosen]
        _parity_panel(panels[1], reference * energy_factor, predicted * energy_factor,
                      "force component", f"{energy_unit}/Å")
    return _save(figure, path)


def error_histogram(
    path: str | os.PathLike[str],
    energy_errors_ev: np.ndarray,
    *,
    force_errors: np.ndarray | None = None,
    energy_factor: float = 1.0,
    energy_unit: str = "eV",
    bins: int = 50,
) -> Path:
    """Histograms of energy errors (predicted − reference, eV in) and, when given, force
    component errors (eV/Å in), both shown × ``energy_factor``; returns the PNG path."""
    figure = Figure(figsize=(10.0 if force_errors is not None else 5.0, 4.0),
                    layout="constrained")
    panels = figure.subplots(1, 2 if force_errors is not None else 1, squeeze=False)[0]
    energy = np.asarray(energy_errors_ev) * energy_factor
    panels[0].hist(energy, bins=bins, color="tab:blue")
    panels[0].set_xlabel(f"energy error ({energy_unit})")
    panels[0].set_ylabel("conformations")
    panels[0].set_title(f"mean {energy.mean():.3g}, std {energy.std():.3g} {energy_unit}",
                        fontsize="medium")
    if force_errors is not None:
        forces = np.asarray(force_errors).ravel() * energy_factor
        panels[1].hist(forces, bins=bins, color="tab:orange")
        panels[1].set_xlabel(f"force component error ({energy_unit}/Å)")
        panels[1].set_ylabel("components")
        panels[1].set_title(f"std {forces.std():.3g} {energy_unit}/Å", fontsize="medium")
    return _save(figure, path)

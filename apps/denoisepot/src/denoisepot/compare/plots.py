"""PNG plots of a comparison: data-efficiency curves and the σ sweep (kcal/mol)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .report import Cell


def _save(figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    figure.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _sigma_for_curves(cells: Sequence[Cell]) -> float | None:
    sigmas = sorted({c.sigma for c in cells if c.sigma is not None})
    if not sigmas:
        return None
    return 0.2 if 0.2 in sigmas else sigmas[len(sigmas) // 2]


def data_efficiency_plot(out: Path, dataset: str, backbone: str, cells: Sequence[Cell]) -> Path:
    """Test energy (and force) MAE against training-set size, both rows, mean and spread
    (standard deviation) over seeds, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigma = _sigma_for_curves(cells)
    chosen = [
        c for c in cells if c.backbone == backbone and (c.row == "scratch" or c.sigma == sigma)
    ]
    metrics = [("energy_mae", "test energy MAE (kcal/mol)")]
    if any(np.isfinite(c.mean["force_mae"]) for c in chosen):
        metrics.append(("force_mae", "test force MAE (kcal/mol/Å)"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for axis, (metric, label) in zip(axes[0], metrics, strict=True):
        for row, colour, name in (
            ("scratch", "tab:gray", "from scratch"),
            ("pretrained", "tab:blue", f"pretrained (σ = {sigma:g} Å)"),
        ):
            series = sorted((c for c in chosen if c.row == row), key=lambda c: c.train_size)
            if not series:
                continue
            x = np.array([c.train_size for c in series], dtype=float)
            y = np.array([c.mean[metric] for c in series])
            spread = np.array([c.std[metric] for c in series])
            axis.errorbar(x, y, yerr=spread, marker="o", capsize=3, color=colour, label=name)
            axis.fill_between(x, np.maximum(y - spread, 1e-9), y + spread, color=colour, alpha=0.15)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("training conformations")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.subplots_adjust(wspace=0.35)
    figure.suptitle(f"{dataset}, {backbone}: data efficiency (mean ± std over seeds)")
    path = _save(figure, out / f"data_efficiency_{dataset}_{backbone}.png")
    plt.close(figure)
    return path


def sigma_sweep_plot(out: Path, dataset: str, backbone: str, cells: Sequence[Cell]) -> Path:
    """Test energy MAE of the pretrained row against σ, one line per training size, with the
    from-scratch MAE as a dashed line of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in cells if c.dataset == dataset]
    figure, axis = plt.subplots(figsize=(5.5, 4.0))
    sizes = sorted({c.train_size for c in cells if c.backbone == backbone})
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(sizes)))
    for size, colour in zip(sizes, colours, strict=True):
        series = sorted(
            (
                c
                for c in cells
                if c.backbone == backbone and c.train_size == size and c.row == "pretrained"
            ),
            key=lambda c: c.sigma,
        )
        x = np.array([c.sigma for c in series])
        y = np.array([c.mean["energy_mae"] for c in series])
        axis.errorbar(
            x,
            y,
            yerr=[c.std["energy_mae"] for c in series],
            marker="o",
            capsize=3,
            color=colour,
            label=f"pretrained, {size} train",
        )
        for c in cells:
            if c.backbone == backbone and c.train_size == size and c.row == "scratch":
                axis.axhline(
                    c.mean["energy_mae"],
                    color=colour,
                    linestyle="--",
                    label=f"from scratch, {size} train",
                )
    axis.set_xscale("log")
    axis.set_xlabel("pretraining noise σ (Å)")
    axis.set_ylabel("test energy MAE (kcal/mol)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(f"{dataset}, {backbone}: σ sweep")
    path = _save(figure, out / f"sigma_sweep_{dataset}_{backbone}.png")
    plt.close(figure)
    return path


def write_plots(out: Path, cells: Sequence[Cell]) -> list[Path]:
    """Every plot of the comparison, per dataset and backbone; the σ sweep only where
    several σ were run."""
    paths = []
    for dataset, backbone in sorted({(c.dataset, c.backbone) for c in cells}):
        paths.append(data_efficiency_plot(out, dataset, backbone, cells))
        sigmas = {
            c.sigma
            for c in cells
            if c.dataset == dataset and c.backbone == backbone and c.sigma is not None
        }
        if len(sigmas) > 1:
            paths.append(sigma_sweep_plot(out, dataset, backbone, cells))
    return paths

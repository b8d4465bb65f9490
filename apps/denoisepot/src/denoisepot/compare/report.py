"""The comparison's outputs: results.csv (one row per fine-tuning run), report.md (the paper's
Table 2 shape, in kcal/mol), the plots, and the table printed to the terminal."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from molgraph_data.units import EV_IN_KCAL_PER_MOL

from ..engine.finetune_config import FinetuneConfig
from .config import CompareConfig
from .data import ComparisonData

REPORT_FILE = "report.md"
RESULTS_FILE = "results.csv"
#: per-run metrics reported, in eV (energies) and eV/Å (forces) inside the records
METRICS = ("energy_rmse", "energy_mae", "force_rmse", "force_mae")
ROW_LABELS = {"scratch": "from scratch", "pretrained": "pretrained"}


@dataclass
class Cell:
    """One row of the table: a metric's mean and standard deviation over seeds (kcal/mol or
    kcal/mol/Å), the seeds' values and the epochs each seed used."""

    dataset: str
    backbone: str
    sigma: float | None
    train_size: int
    row: str
    mean: dict[str, float]
    std: dict[str, float]
    per_seed_mae: dict[int, float]
    epochs: list[tuple[int, int]]


def _kcal(record: dict[str, Any], metric: str) -> float:
    return float(record["test"][metric]) * EV_IN_KCAL_PER_MOL


def summarise(records: Sequence[dict[str, Any]]) -> list[Cell]:
    """Group fine-tuning records by (dataset, backbone, σ, size, row); average over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        key = (
            record["dataset"],
            record["backbone"],
            record["sigma"],
            record["train_size"],
            record["row"],
        )
        groups.setdefault(key, []).append(record)
    cells = []
    for (dataset, backbone, sigma, size, row), members in groups.items():
        values = {m: np.array([_kcal(r, m) for r in members]) for m in METRICS}
        cells.append(
            Cell(
                dataset=dataset,
                backbone=backbone,
                sigma=sigma,
                train_size=size,
                row=row,
                mean={m: float(np.mean(v)) for m, v in values.items()},
                std={m: float(np.std(v, ddof=1)) if v.size > 1 else 0.0 for m, v in values.items()},
                per_seed_mae={r["seed"]: _kcal(r, "energy_mae") for r in members},
                epochs=[(int(r["best_epoch"]) + 1, int(r["epochs_run"])) for r in members],
            )
        )
    return cells


@dataclass
class Comparison:
    """A pretrained cell against the from-scratch cell of the same backbone and size."""

    pretrained: Cell
    scratch: Cell

    def change(self, metric: str) -> float:
        """Relative change of the seed-mean metric, pretrained vs scratch (negative: better)."""
        return self.pretrained.mean[metric] / self.scratch.mean[metric] - 1.0

    def ratios(self) -> np.ndarray:
        """Pretrained / scratch test energy MAE, seed by seed."""
        seeds = sorted(set(self.pretrained.per_seed_mae) & set(self.scratch.per_seed_mae))
        return np.array(
            [self.pretrained.per_seed_mae[s] / self.scratch.per_seed_mae[s] for s in seeds]
        )


def pair_cells(cells: Sequence[Cell]) -> list[Comparison]:
    """Every pretrained cell with its from-scratch partner, ordered by backbone, σ, size."""
    scratch = {(c.dataset, c.backbone, c.train_size): c for c in cells if c.row == "scratch"}
    pairs = [
        Comparison(c, scratch[(c.dataset, c.backbone, c.train_size)])
        for c in cells
        if c.row == "pretrained" and (c.dataset, c.backbone, c.train_size) in scratch
    ]
    return sorted(
        pairs,
        key=lambda p: (
            p.pretrained.dataset,
            p.pretrained.backbone,
            p.pretrained.sigma,
            p.pretrained.train_size,
        ),
    )


def _fmt(mean: float, std: float, n: int) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _epochs(cell: Cell) -> str:
    return ", ".join(f"{best}/{run}" for best, run in cell.epochs)


def table_rows(pairs: Sequence[Comparison], with_forces: bool) -> list[list[str]]:
    """The table in the paper's shape: for every backbone, σ and size a from-scratch row, a
    pretrained row and the relative change (kcal/mol, kcal/mol/Å)."""
    metrics = METRICS if with_forces else METRICS[:2]
    rows = []
    for pair in pairs:
        p, s = pair.pretrained, pair.scratch
        n = len(p.per_seed_mae)
        head = [p.backbone, f"{p.sigma:g}", str(p.train_size)]
        for cell in (s, p):
            rows.append(
                [
                    *head,
                    ROW_LABELS[cell.row],
                    *[_fmt(cell.mean[m], cell.std[m], n) for m in metrics],
                    _epochs(cell),
                ]
            )
        ratios = pair.ratios()
        spread = (
            f"MAE ratio {ratios.mean():.2f} ± {ratios.std(ddof=1):.2f}"
            if ratios.size > 1
            else f"MAE ratio {ratios.mean():.2f}"
        )
        rows.append(
            [
                *head,
                "relative change",
                *[f"{100 * pair.change(m):+.1f}%" for m in metrics],
                spread.strip(),
            ]
        )
    return rows


def start_rows(
    records: Sequence[dict[str, Any]], pairs: Sequence[Comparison], dataset: str
) -> list[list[str]]:
    """Per backbone, σ and size with a head from the denoiser: the test energy MAE the
    pretrained row started from (mean ± std over seeds, kcal/mol) and both rows' final MAE."""
    rows = []
    for pair in pairs:
        p = pair.pretrained
        values = [
            r["start"]["energy_mae"] * EV_IN_KCAL_PER_MOL
            for r in records
            if r.get("start") and r["dataset"] == dataset and r["row"] == "pretrained"
            and r["backbone"] == p.backbone and r["sigma"] == p.sigma
            and r["train_size"] == p.train_size
        ]
        if not values:
            continue
        n = len(values)
        spread = float(np.std(values, ddof=1)) if n > 1 else 0.0
        rows.append([
            p.backbone, f"{p.sigma:g}", str(p.train_size),
            _fmt(float(np.mean(values)), spread, n),
            _fmt(p.mean["energy_mae"], p.std["energy_mae"], len(p.per_seed_mae)),
            _fmt(pair.scratch.mean["energy_mae"], pair.scratch.std["energy_mae"],
                 len(pair.scratch.per_seed_mae)),
        ])
    return rows


def table_header(with_forces: bool) -> list[str]:
    """Column names of :func:`table_rows`."""
    columns = [
        "backbone",
        "σ (Å)",
        "train size",
        "row",
        "energy RMSE (kcal/mol)",
        "energy MAE (kcal/mol)",
    ]
    if with_forces:
        columns += ["force RMSE (kcal/mol/Å)", "force MAE (kcal/mol/Å)"]
    return [*columns, "epochs best/run per seed"]


def write_results_csv(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """One row per fine-tuning run (test errors in kcal/mol and kcal/mol/Å), atomically."""
    columns = [
        "dataset",
        "backbone",
        "row",
        "sigma_angstrom",
        "train_size",
        "seed",
        "energy_rmse_kcal_mol",
        "energy_mae_kcal_mol",
        "force_rmse_kcal_mol_a",
        "force_mae_kcal_mol_a",
        "baseline_energy_mae_kcal_mol",
        "epochs_run",
        "epoch_cap",
        "best_epoch",
        "seconds",
        "n_train",
        "n_val",
        "n_test",
        "used_forces",
        "run",
    ]
    order = sorted(
        records,
        key=lambda r: (
            r["dataset"],
            r["backbone"],
            r["train_size"],
            r["seed"],
            r["row"],
            r["sigma"] or 0.0,
        ),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in order:
            writer.writerow(
                [
                    r["dataset"],
                    r["backbone"],
                    r["row"],
                    "" if r["sigma"] is None else r["sigma"],
                    r["train_size"],
                    r["seed"],
                    *[f"{_kcal(r, m):.6g}" for m in METRICS],
                    f"{float(r['baseline']['energy_mae']) * EV_IN_KCAL_PER_MOL:.6g}",
                    r["epochs_run"],
                    r.get("epoch_cap") or "",
                    int(r["best_epoch"]) + 1,
                    f"{r['seconds']:.1f}",
                    r["n_train"],
                    r["n_val"],
                    r["n_test"],
                    r["used_forces"],
                    r["run"],
                ]
            )
    os.replace(tmp, path)
    return path


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _hparams_text(config: CompareConfig) -> str:
    parts = []
    for backbone in config.backbones:
        hparams = config.hparams(backbone)
        text = ", ".join(f"{k}={v}" for k, v in hparams.items()) or "the paper's defaults"
        parts.append(f"{backbone}: {text}")
    return "; ".join(parts)


def _protocol_text(config: CompareConfig, records: Sequence[dict[str, Any]]) -> str:
    caps = sorted({(r["train_size"], r.get("epoch_cap")) for r in records})
    cap_text = ", ".join(f"{cap} epochs at {size}" for size, cap in caps if cap is not None)
    patience = sorted({(r["train_size"], r.get("patience")) for r in records})
    patience_text = ", ".join(f"{p} epochs at {size}" for size, p in patience if p is not None)
    patience_phrase = (
        f"{patience_text} training conformations" if patience_text else f"{config.patience} epochs"
    )
    start = (
        " (the starting weights validated too, as epoch 0: a start that training does not beat "
        "is kept)"
        if config.validate_start
        else ""
    )
    if config.protocol == "converged":
        return (
            "**converged**: every fine-tuning run (both rows) trains until its validation loss "
            f"has not improved for {patience_phrase} "
            f"(a patience of at least {config.patience} epochs and {config.patience_steps} "
            f"optimizer steps), with an epoch cap of {cap_text or 'the engine default'} (about "
            f"{config.finetune_max_steps} optimizer steps, so small training sets are not "
            "stopped for lack of steps), and is tested with its best-validation checkpoint"
            + start + _validation_text(records)
        )
    return (
        f"**paper**: a fixed number of epochs ({cap_text or 'the paper default'}), tested "
        "with the best-validation checkpoint" + start + _validation_text(records)
    )


def runs_at_cap(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fine-tuning runs that trained to their epoch cap: none of them was stopped early,
    so each had improved on its validation loss within its last patience window."""
    return [r for r in records
            if r.get("epoch_cap") is not None and int(r["epochs_run"]) >= int(r["epoch_cap"])]


def convergence_text(config: CompareConfig, records: Sequence[dict[str, Any]]) -> str | None:
    """For the converged protocol, how many runs of each row and size reached the epoch cap
    (their part of the comparison is not converged), or that every run stopped early; None for
    the paper's fixed epochs, where every run reaches the cap by design."""
    if config.protocol != "converged" or not records:
        return None
    at_cap = runs_at_cap(records)
    if not at_cap:
        return (f"every one of the {len(records)} runs ended by early stopping, before the "
                "epoch cap (a longer patience, `--patience-steps`, can still move a run that "
                "stopped on a plateau)")
    counts = Counter((ROW_LABELS.get(r["row"], r["row"]), int(r["train_size"])) for r in at_cap)
    where = ", ".join(f"{row} {n} at {size}" for (row, size), n in sorted(counts.items()))
    rerun = "rerun it with a larger `--max-steps`"
    if config.lr_schedule == "plateau":
        rerun += (" into the same folder (under the plateau schedule the runs that stopped "
                  "early are kept and those at the cap train on from where they ended)")
    # under the cosine schedule every run ends at the floor by design: only the plateau
    # schedule's floor says that a run was crawling
    floor = (sum(bool(r.get("lr_at_floor")) for r in at_cap)
             if config.lr_schedule == "plateau" else 0)
    # compare fine-tunes with FinetuneConfig's floor (no option sets it here): name its value
    floor_text = (f" ({floor} of them with the learning rate decayed to its floor, "
                  f"{FinetuneConfig.min_lr:g}, where further steps change little)"
                  if floor else "")
    return (f"**{len(at_cap)} of {len(records)} runs reached the epoch cap** ({where}), still "
            f"improving within their patience{floor_text}: that part of the comparison is not "
            f"converged; {rerun}")


def _validation_text(records: Sequence[dict[str, Any]]) -> str:
    """How often the runs validated, where not every epoch (records made before
    --val-every-steps existed validated every epoch)."""
    every = sorted({(r["train_size"], r.get("val_every", 1)) for r in records})
    if all(n == 1 for _, n in every):
        return ""
    return "; validated every " + ", ".join(
        f"{n} epoch{'s' if n > 1 else ''} at {size}" for size, n in every)


def _noise_head(record: dict[str, Any]) -> str:
    """The pretraining's noise head (records made before it was kept: the backbone's own)."""
    from equivariant_backbones import backbone_class

    return record.get("noise_head") or backbone_class(record["backbone"]).default_noise_head


def write_report(
    path: Path,
    config: CompareConfig,
    data: ComparisonData,
    pretrain_records: Sequence[dict[str, Any]],
    finetune_records: Sequence[dict[str, Any]],
    plots: Sequence[Path],
    *,
    alignments: Sequence[dict[str, Any]] = (),
    command: str | None,
) -> Path:
    """Write report.md: a table per fine-tuning dataset, the pretraining cost, how the
    comparison is fair, the settings and the plots."""
    with_forces = any(r["used_forces"] for r in finetune_records)
    pairs = pair_cells(summarise(finetune_records))
    lines = [
        "# Pretrained vs from scratch",
        "",
        "Test errors of the fine-tuned potentials, mean ± standard deviation over seeds "
        f"{', '.join(map(str, config.seeds))}; energies in kcal/mol"
        + (", forces in kcal/mol/Å" if with_forces else "")
        + ". The relative change is pretrained / from scratch − 1 of the seed means (negative: "
        "pretraining helps); the MAE ratio is pretrained / from scratch test energy MAE seed by "
        "seed, mean ± standard deviation. Epochs: best-validation epoch / epochs run, per seed.",
    ]
    for dataset in data.finetune:
        mine = [p for p in pairs if p.pretrained.dataset == dataset.name]
        lines += [
            "",
            f"## Fine-tuning on {dataset.name}",
            "",
            f"{dataset.store} ({dataset.split} split: {dataset.available_train} training "
            f"conformations available, {dataset.validation} for validation, {dataset.test} "
            "for testing).",
            "",
            _markdown_table(table_header(with_forces), table_rows(mine, with_forces)),
        ]
        starts = start_rows(finetune_records, mine, dataset.name)
        if starts:
            lines += [
                "",
                "Where the pretrained row started: its energy head from the denoiser's scalar U, "
                "scaled by least squares on the training labels, before any optimizer step "
                "(test energy MAE, kcal/mol), against both rows after fine-tuning:",
                "",
                _markdown_table(
                    ["backbone", "σ (Å)", "train size", "denoiser's U, fitted (no training)",
                     "pretrained, fine-tuned", "from scratch"],
                    starts,
                ),
            ]
    lines += [
        "",
        "## Pretraining cost (paid once per backbone and σ, reused by every fine-tuning)",
        "",
        _markdown_table(
            [
                "backbone",
                "σ (Å)",
                "noise head",
                "epochs",
                "conformations seen",
                "time (s)",
                "best validation loss (Å²/atom)",
                "predict-zero baseline",
            ],
            [
                [
                    r["backbone"],
                    f"{r['sigma']:g}",
                    _noise_head(r),
                    str(r["epochs"]),
                    str(r["conformations_seen"]),
                    f"{r['seconds']:.0f}",
                    f"{r['best_val_loss']:.4g}",
                    f"{r['baseline_val_loss']:.4g}",
                ]
                for r in pretrain_records
            ],
        ),
        "",
    ]
    if alignments:
        lines += [
            "## What the pretrained denoisers learned",
            "",
            "Each pretrained denoiser on the fine-tuning data (never seen in pretraining), up "
            "to 1,000 evenly spaced conformations: its denoising loss there against predicting "
            "zero, and the cosine between its predicted noise at the clean geometries and the "
            "reference forces, each molecule's mean removed. By Tweedie's formula the ideal "
            "denoiser of Boltzmann samples predicts −(σ²/kT)·F: a cosine near −1 means the "
            "denoiser learned the force field, 0 that it learned nothing of it. The Tweedie "
            "temperature reads kT off the least-squares slope; a σ comparable to the thermal "
            "amplitude of stiff bonds raises it (a harmonic mode of stiffness k gives kT + kσ²). "
            "A gradient noise head predicts the noise as −∂U/∂x̃ of a learned scalar U, whose "
            "ideal is −(σ²/kT)·E: corr(U, E) is its correlation with the reference energies "
            "within each molecule (−1: the denoiser holds the energy surface).",
            "",
            _markdown_table(
                ["backbone", "σ (Å)", "dataset", "conformations", "loss", "predict-zero",
                 "cos(noise, F)", "Tweedie T (K)", "corr(U, E)"],
                [[a["backbone"], f"{a['sigma']:g}", a["dataset"], str(a["n_conformations"]),
                  f"{a['loss']:.4g}", f"{a['baseline']:.4g}", _signed(a.get("cosine")),
                  _temperature(a.get("implied_temperature_k")),
                  _signed(a.get("energy_correlation"))]
                 for a in alignments],
            ),
            "",
        ]
    if data.generation_seconds > 1.0:
        lines += [
            f"Generating the built-in dataset took {data.generation_seconds:.0f} s "
            "(once; later runs reuse the cache).",
            "",
        ]
    lines += [
        "## How the comparison is fair",
        "",
        (
            "- Both rows run the same fine-tuning recipe: same backbone hyperparameters, new "
            "energy head, optimiser, learning-rate schedule, batch size, loss, data split, "
            "training subset, data order and head initialisation (all fixed by the seed); the "
            "only difference is the backbone's starting weights (pretrained checkpoint or random)."
            if config.pretrained_head == "new"
            else "- Both rows run the same fine-tuning recipe: same backbone hyperparameters, "
            "optimiser, learning-rate schedule, batch size, loss, data split, training subset and "
            "data order (all fixed by the seed). They differ in their starting weights: the "
            "pretrained row's backbone comes from its checkpoint and **its energy head starts "
            "from the denoiser's gradient head** (its scalar U, which Tweedie's formula makes "
            "−(σ²/kT)·E, scaled by least squares on the same training labels the from-scratch "
            "row sees, with "
            + ("a shift per atom of each element" if config.head_shift == "element"
               else "one shift per atom")
            + "); the from-scratch row's backbone and head are random."
        ),
        f"- Protocol: {_protocol_text(config, finetune_records)}. Neither row wins by being "
        "undertrained: the epochs each used are in the table.",
    ]
    converged = convergence_text(config, finetune_records)
    if converged:
        lines.append(f"- Convergence: {converged}.")
    lines += [
        "- Pretraining never sees a fine-tuning conformation (train, validation or test): "
        + (
            "; ".join(data.notes) + "."
            if data.notes
            else "its data are other files than the fine-tuning data."
        ),
        "- Pretraining uses geometries only (no labels); its cost is reported separately "
        "because one pretrained backbone serves every fine-tuning.",
        "",
        "## Settings",
        "",
        f"- Backbones ({config.scale} scale): {_hparams_text(config)}",
        f"- Pretraining data: {', '.join(str(p) for p in data.pretrain_stores)}; "
        f"σ = {', '.join(f'{s:g}' for s in config.sigmas)} Å; {config.pretrain_epochs} epochs, "
        f"batch {config.pretrain_batch_size}, AdamW lr {config.pretrain_lr:g}, warmup 0.7 "
        "epoch, plateau 0.3, cosine; best-validation checkpoint.",
        _finetune_text(config, with_forces),
        f"- Seeds: {', '.join(map(str, config.seeds))} (each fixes the split, the training "
        "subset, the data order and the initialisation, identically for both rows). A training "
        "subset keeps every molecule's share of the training part, at least one conformation "
        "each.",
    ]
    if config.scale == "small":
        lines.append(
            "- These are reduced, CPU-sized settings (smaller networks, sizes and seeds "
            "than the paper's); `--scale paper` and the other options select the "
            "paper's."
        )
    if command:
        lines += ["", "Command:", "", f"    {command}"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def _finetune_text(config: CompareConfig, with_forces: bool) -> str:
    """The Settings line of the fine-tuning recipe (the same for both rows)."""
    return (
        f"- Fine-tuning: training sizes {', '.join(map(str, config.train_sizes))}; "
        + ("energies and forces" if with_forces else "energies only")
        + f" (force weight {config.force_weight:g}); batch {config.finetune_batch_size}, AdamW "
        f"lr {config.finetune_lr:g}, warmup 0.3 epoch"
        + (f" (at least {config.warmup_steps} steps)" if config.warmup_steps else "")
        + (", then halved after a quarter of the patience without a better validation loss."
           if config.lr_schedule == "plateau" else ", plateau 0.7, cosine over the epoch cap.")
    )


def _temperature(kelvin: float | None) -> str:
    return "—" if kelvin is None or kelvin != kelvin else f"{kelvin:.0f}"


def _signed(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:+.3f}"


def print_alignments(alignments: Sequence[dict[str, Any]]) -> None:
    """One line per pretrained denoiser and fine-tuning dataset: its alignment with the
    forces (cos -1: the force field, 0: none) and its Tweedie temperature."""
    if not alignments:
        return
    print("pretrained denoiser vs the fine-tuning data's forces "
          "(cos -1: learned the force field, 0: nothing of it):")
    for a in alignments:
        print(
            f"  {a['backbone']} σ={a['sigma']:g} on {a['dataset']}: "
            f"cos {_signed(a.get('cosine'))}, "
            f"Tweedie T {_temperature(a.get('implied_temperature_k'))} K, "
            f"corr(U, E) {_signed(a.get('energy_correlation'))}, loss "
            f"{a['loss']:.3g} vs predict-zero {a['baseline']:.3g}"
        )


def print_table(data: ComparisonData, finetune_records: Sequence[dict[str, Any]],
                config: CompareConfig | None = None) -> None:
    """Print one table per fine-tuning dataset to the terminal (rich), short column names, and
    (given ``config``) a warning where runs of the converged protocol reached the epoch cap."""
    from rich.console import Console
    from rich.table import Table

    with_forces = any(r["used_forces"] for r in finetune_records)
    pairs = pair_cells(summarise(finetune_records))
    console = Console()
    if not console.is_terminal:  # a log file: wide enough that no number is cut
        console = Console(width=140)
    short = ["backbone", "σ Å", "train", "row", "E RMSE", "E MAE"]
    short += ["F RMSE", "F MAE"] if with_forces else []
    for dataset in data.finetune:
        table = Table(
            title=f"{dataset.name}: pretrained vs from scratch, test errors "
            f"(E kcal/mol{', F kcal/mol/Å' if with_forces else ''}), mean ± std over "
            "seeds"
        )
        for column in [*short, "epochs"]:
            table.add_column(column)
        mine = [p for p in pairs if p.pretrained.dataset == dataset.name]
        for row in table_rows(mine, with_forces):
            change = row[3] == "relative change"
            row = [cell.replace(" ± ", "±") for cell in row]
            row[3] = {"from scratch": "scratch", "relative change": "change"}.get(row[3], row[3])
            # the terminal shows the epochs run per seed (report.md has best/run)
            row[-1] = (
                row[-1].replace("MAE ratio ", "ratio ")
                if change
                else ",".join(part.split("/")[1] for part in row[-1].split(", "))
            )
            table.add_row(*row, style="bold" if change else None)
        console.print(table)
    if config is not None and runs_at_cap(finetune_records):  # warn only where runs hit the cap
        text = convergence_text(config, finetune_records)
        if text:  # None for the paper protocol's fixed epochs
            console.print(f"[yellow]{text.replace('**', '').replace('`', '')}.[/yellow]")


def write_outputs(
    config: CompareConfig,
    data: ComparisonData,
    pretrain_records: Sequence[dict[str, Any]],
    finetune_records: Sequence[dict[str, Any]],
    *,
    alignments: Sequence[dict[str, Any]] = (),
    command: str | None,
) -> tuple[Path, Path, list[Path]]:
    """Write results.csv, the plots and report.md into ``config.out``; print the tables."""
    from .plots import write_plots

    results = write_results_csv(config.out / RESULTS_FILE, finetune_records)
    plots = write_plots(config.out, summarise(finetune_records))
    report = write_report(
        config.out / REPORT_FILE,
        config,
        data,
        pretrain_records,
        finetune_records,
        plots,
        alignments=alignments,
        command=command,
    )
    print_table(data, finetune_records, config)
    print_alignments(alignments)
    return report, results, plots

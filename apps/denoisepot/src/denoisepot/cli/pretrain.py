"""`denoisepot pretrain`: denoise pretraining of a backbone (the paper's recipe by default).

Thin wiring over :func:`denoisepot.engine.pretrain.run_pretraining`; torch and Lightning are
imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DenoisepotError
from .options import parse_hparams

#: epochs shown in the closing table of a long run (the best is added)
SUMMARY_EPOCHS = 12


def _size(text: str | None, option: str) -> int | float | None:
    """A subset size: an integer count or a fraction in (0, 1]."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DenoisepotError(
            f"{option} {text!r}: give a count (1000) or a fraction (0.1)"
        ) from None
    if value.is_integer() and "." not in text:
        count = int(value)
        if count < 1:
            raise DenoisepotError(f"{option} must be at least 1, got {count}")
        return count
    if not 0.0 < value <= 1.0:
        raise DenoisepotError(f"{option} fraction must be in (0, 1], got {value}")
    return value


def pretrain(
    backbone: Annotated[str, typer.Option(
        "--backbone", "-b", help="Registered backbone: schnet, egnn, et or se3t.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of the run.")],
    data: Annotated[list[Path] | None, typer.Option(
        "--data", "-d",
        help="A store or release file; repeat to mix datasets. Omitted: the built-in dataset.",
    )] = None,
    sigma: Annotated[float, typer.Option("--sigma", help="Noise σ per coordinate (Å).")] = 0.2,
    epochs: Annotated[int, typer.Option("--epochs")] = 5,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Global batch (split over all processes).")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 2e-4,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.0,
    warmup_epochs: Annotated[float, typer.Option(
        "--warmup-epochs", help="Linear warmup length (epochs).")] = 0.7,
    plateau_epochs: Annotated[float, typer.Option(
        "--plateau-epochs", help="Constant learning rate after warmup (epochs).")] = 0.3,
    min_lr: Annotated[float, typer.Option("--min-lr", help="End of the cosine decay.")] = 1e-7,
    seed: Annotated[int, typer.Option("--seed", help="Fixes split, noise, order, init.")] = 0,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Validation share of each molecule's conformations.")] = 0.05,
    train_size: Annotated[str | None, typer.Option(
        "--train-size", help="Subsample training conformations per store: count or fraction.",
    )] = None,
    val_size: Annotated[str | None, typer.Option(
        "--val-size", help="Subsample validation conformations per store: count or fraction.",
    )] = None,
    noise_head: Annotated[str | None, typer.Option(
        "--noise-head", help="gradient, displacement or vector (default: the backbone's).",
    )] = None,
    centre_noise: Annotated[bool | None, typer.Option(
        "--centre-noise/--no-centre-noise",
        help="Remove each molecule's mean noise from the target (default: gradient heads).",
    )] = None,
    normalise_target: Annotated[bool, typer.Option(
        "--normalise-target", help="Predict noise/σ instead of the noise in Å.")] = False,
    hparam: Annotated[list[str] | None, typer.Option(
        "--hparam", help="Backbone hyperparameter override key=value; repeatable.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its training state.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the run in --out.")] = False,
    accelerator: Annotated[str, typer.Option(
        "--accelerator", help="auto, cpu or gpu.")] = "auto",
    devices: Annotated[int, typer.Option("--devices", help="Processes per node.")] = 1,
    num_nodes: Annotated[int, typer.Option("--num-nodes")] = 1,
    strategy: Annotated[str, typer.Option("--strategy", help="auto or ddp.")] = "auto",
    num_workers: Annotated[int, typer.Option(
        "--num-workers", help="DataLoader worker processes per device.")] = 0,
    state_every: Annotated[int, typer.Option(
        "--state-every", help="Write the resumable training state every N steps.")] = 500,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Pretrain a backbone by predicting the Gaussian noise added to nonequilibrium
    conformations; writes best.pt/last.pt checkpoints, logs and the split to --out."""
    from rich.console import Console
    from rich.table import Table

    from ..engine.pretrain_config import PretrainConfig, check_config

    config = PretrainConfig(
        backbone=backbone, out=out, data=list(data or []), sigma_angstrom=sigma, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        plateau_epochs=plateau_epochs, min_lr=min_lr, seed=seed, val_fraction=val_fraction,
        train_size=_size(train_size, "--train-size"), val_size=_size(val_size, "--val-size"),
        noise_head=noise_head, centre_noise=centre_noise, normalise_target=normalise_target,
        backbone_hparams=parse_hparams(hparam or []), resume=resume, overwrite=overwrite,
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        num_workers=num_workers, state_every_n_steps=max(1, state_every), progress=progress,
    )
    check_config(config)  # before the training engine's imports (torch, Lightning Fabric)

    from ..engine.pretrain import run_pretraining

    result = run_pretraining(config)
    if result.global_rank != 0:
        return
    shown = summary_epochs(result.history)
    caption = None
    if len(shown) < len(result.history):
        caption = (f"{len(shown)} of {len(result.history)} epochs; every one is in "
                   f"{Path(out) / 'logs'}")
    table = Table(title=f"pretraining: {backbone}, σ = {sigma} Å", caption=caption)
    table.add_column("epoch", justify="right")
    table.add_column("validation loss (Å²/atom)", justify="right")
    table.add_column("predict-zero baseline", justify="right")
    table.add_column("ratio", justify="right")
    for row in shown:
        table.add_row(str(int(row["epoch"])), f"{row['val_loss']:.5f}",
                      f"{row['val_baseline']:.5f}", f"{row['val_loss'] / row['val_baseline']:.3f}")
    console = Console()
    console.print(table)
    console.print(f"best checkpoint: {result.best_checkpoint}\nlast checkpoint: "
                  f"{result.last_checkpoint}\n{result.conformations_seen:,} conformations in "
                  f"{result.seconds:.1f} s")


def summary_epochs(history: list[dict], limit: int = SUMMARY_EPOCHS) -> list[dict]:
    """The epochs of ``history`` for the closing table: all of a short run; of a long one
    (hundreds of epochs) about ``limit`` evenly spaced from the first to the last, and the
    best."""
    if len(history) <= limit:
        return list(history)
    picked = {round(i * (len(history) - 1) / (limit - 1)) for i in range(limit)}
    picked.add(min(range(len(history)), key=lambda i: history[i]["val_loss"]))
    return [history[i] for i in sorted(picked)]


def register(app: typer.Typer) -> None:
    """Add `pretrain` to ``app``."""
    app.command("pretrain")(pretrain)

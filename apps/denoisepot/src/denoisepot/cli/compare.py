"""`denoisepot compare`: pretrained versus from scratch, fairly, in the paper's table shape."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..compare.config import CompareConfig
from .options import parse_backbone_hparams

#: the defaults shown by --help are the configuration's own
_D = CompareConfig(out=Path("compare-out"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("compare")(compare)


def _numbers(option: str, text: str, kind: type, example: str) -> list:
    from ..errors import DenoisepotError

    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DenoisepotError(
            f"{option} {text!r}: give comma-separated numbers, e.g. {option} {example}"
        ) from None
    if not values:
        raise DenoisepotError(f"{option}: give at least one value")
    return values


def _join(values: list) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def compare(
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            "--backbone", help="Backbone to compare; repeat for several (default: schnet)."
        ),
    ] = None,
    hparam: Annotated[
        list[str] | None,
        typer.Option(
            "--hparam",
            help="Backbone hyperparameter backbone:key=value on top of --scale's, e.g. "
            "egnn:num_rbf=0 for the paper's raw-distance EGNN (repeatable).",
        ),
    ] = None,
    pretrain_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--pretrain-data",
            help="Pretraining data (store or release file); repeat "
            "to mix (default: the built-in set).",
        ),
    ] = None,
    finetune_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--finetune-data",
            help="Fine-tuning data; repeat for several (default: the built-in set).",
        ),
    ] = None,
    train_sizes: Annotated[
        str, typer.Option("--train-sizes", help="Training-set sizes, comma-separated.")
    ] = _join(_D.train_sizes),
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, comma-separated.")] = _join(
        _D.seeds
    ),
    sigmas: Annotated[
        str, typer.Option("--sigmas", help="Pretraining noise σ in Å, comma-separated.")
    ] = _join(_D.sigmas),
    protocol: Annotated[
        str, typer.Option("--protocol", help="converged (early stopping) or paper (fixed epochs).")
    ] = _D.protocol,
    scale: Annotated[
        str, typer.Option("--scale", help="small (CPU-sized networks) or paper (paper defaults).")
    ] = _D.scale,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = _D.out,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="Fine-tuning split: auto (official where the data have one), conformation, "
            "molecule or official.",
        ),
    ] = _D.finetune_split,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="Official split of train/test files: share of the train file held out for "
            "validation (rMD17: 0.05 gives the field's 950 train / 50 validation).",
        ),
    ] = _D.val_fraction,
    pretrain_epochs: Annotated[int, typer.Option("--pretrain-epochs")] = _D.pretrain_epochs,
    pretrain_batch_size: Annotated[
        int, typer.Option("--pretrain-batch-size")
    ] = _D.pretrain_batch_size,
    pretrain_lr: Annotated[float, typer.Option("--pretrain-lr")] = _D.pretrain_lr,
    pretrain_fraction: Annotated[
        float,
        typer.Option(
            "--pretrain-fraction",
            help="Share of each molecule's conformations "
            "kept for pretraining when one store serves both.",
        ),
    ] = _D.pretrain_fraction,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            help="Fine-tuning epoch cap (converged) or "
            "epochs (paper) (default: from --max-steps, or the paper's).",
        ),
    ] = _D.finetune_epochs,
    max_steps: Annotated[
        int,
        typer.Option(
            "--max-steps",
            help="Converged protocol: the epoch cap of each training "
            "size is this many optimizer steps' worth of epochs. Raised in a rerun with "
            "--lr-schedule plateau, runs that stopped early are kept and runs at the old cap "
            "train on from it.",
        ),
    ] = _D.finetune_max_steps,
    patience: Annotated[
        int, typer.Option("--patience", help="Epochs without validation improvement to stop.")
    ] = _D.patience,
    patience_steps: Annotated[
        int,
        typer.Option(
            "--patience-steps",
            help="Patience of at least this many optimizer steps "
            "(small training sets take few steps per epoch); 500 stopped rMD17 runs on a "
            "validation plateau at 200+ conformations. Keep --max-steps well above it.",
        ),
    ] = _D.patience_steps,
    val_every_steps: Annotated[
        int,
        typer.Option(
            "--val-every-steps",
            help="Validate every fine-tuning run about every N optimizer steps, in whole "
            "epochs (0: every epoch). Patience stays in epochs; with a large validation set "
            "and few steps per epoch this makes the small training sets' runs several times "
            "faster.",
        ),
    ] = _D.val_every_steps,
    lr_schedule: Annotated[
        str,
        typer.Option(
            "--lr-schedule",
            help="Fine-tuning's learning rate (both rows): cosine, warmup then cosine decay to "
            "the step cap; plateau, warmup then halved after patience/4 epochs without a better "
            "validation loss, so early stopping ends annealed runs (converged protocol).",
        ),
    ] = _D.lr_schedule,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Fine-tuning batch.")
    ] = _D.finetune_batch_size,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning learning rate.")] = _D.finetune_lr,
    energy_only: Annotated[
        bool, typer.Option("--energy-only", help="Fine-tune on energies only (the paper's).")
    ] = False,
    force_weight: Annotated[float, typer.Option("--force-weight")] = _D.force_weight,
    pretrained_head: Annotated[
        str,
        typer.Option(
            "--pretrained-head",
            help="The pretrained row's energy head: new (as from scratch) or denoiser (from the "
            "gradient noise head's scalar, least-squares scaled on the training labels; SchNet "
            "and the SE(3)-Transformer by default, every backbone with --noise-head gradient).",
        ),
    ] = _D.pretrained_head,
    head_shift: Annotated[
        str,
        typer.Option(
            "--head-shift",
            help="With --pretrained-head denoiser: fit U with a shift per atom of each element "
            "(element) or one per atom (atom); the same on one molecule.",
        ),
    ] = _D.head_shift,
    validate_start: Annotated[
        bool,
        typer.Option(
            "--validate-start",
            help="Validate every run's starting weights too (both rows): a start that "
            "training does not beat on validation is kept (epoch 0); early stopping (and "
            "--lr-schedule plateau's halving) counts from it.",
        ),
    ] = _D.validate_start,
    warmup_steps: Annotated[
        int,
        typer.Option(
            "--warmup-steps",
            help="Fine-tuning's linear learning-rate warmup lasts at least N optimizer steps "
            "(both rows; the default 0.3 epoch is one step on 50 conformations).",
        ),
    ] = _D.warmup_steps,
    noise_head: Annotated[
        str | None,
        typer.Option(
            "--noise-head",
            help="Noise head of every pretraining: gradient, displacement or vector "
            "(default: each backbone's own).",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Cache folder of the built-in set "
            "(default: $DENOISEPOT_CACHE or ~/.cache/denoisepot).",
        ),
    ] = None,
) -> None:
    """Pretrain each backbone once per σ, fine-tune pretrained and from-scratch networks with
    identical settings and seeds, and write report.md, results.csv and plots (kcal/mol).
    Rerun the same command to continue an interrupted comparison: finished runs are reused
    and an interrupted fine-tuning continues from its last finished epoch."""
    config = CompareConfig(
        out=out,
        backbones=list(backbone) if backbone else list(_D.backbones),
        backbone_hparams=parse_backbone_hparams(hparam or []),
        pretrain_data=list(pretrain_data or []),
        finetune_data=list(finetune_data or []),
        train_sizes=_numbers("--train-sizes", train_sizes, int, "50,200,1000"),
        seeds=_numbers("--seeds", seeds, int, "0,1,2"),
        sigmas=_numbers("--sigmas", sigmas, float, "0.1,0.2,0.5"),
        protocol=protocol,
        scale=scale,
        pretrain_fraction=pretrain_fraction,
        pretrain_epochs=pretrain_epochs,
        pretrain_batch_size=pretrain_batch_size,
        pretrain_lr=pretrain_lr,
        finetune_split=split,
        val_fraction=val_fraction,
        finetune_epochs=max_epochs,
        finetune_max_steps=max_steps,
        patience=patience,
        patience_steps=patience_steps,
        val_every_steps=val_every_steps,
        finetune_batch_size=batch_size,
        finetune_lr=lr,
        forces=False if energy_only else None,
        force_weight=force_weight,
        pretrained_head=pretrained_head,
        head_shift=head_shift,
        validate_start=validate_start,
        warmup_steps=warmup_steps,
        lr_schedule=lr_schedule,
        noise_head=noise_head,
        cache_dir=cache_dir,
    )
    config.check()  # before the engine's imports (Lightning, the data generator)

    from ..compare import run_compare

    result = run_compare(config, command=shlex.join(["denoisepot", *sys.argv[1:]]))
    typer.echo(f"report: {result.report}\nresults: {result.results_csv}")
    for plot in result.plots:
        typer.echo(f"plot: {plot}")

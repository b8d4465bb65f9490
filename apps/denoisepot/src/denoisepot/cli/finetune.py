"""`denoisepot finetune`: fine-tune a pretrained backbone (``--from``) or train one from
scratch (``--backbone``) on energies and forces, with the same recipe for both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DenoisepotError
from .options import parse_hparams


def parse_train_size(text: str | None) -> int | float | None:
    """``"200"`` -> 200 conformations, ``"0.25"`` -> a quarter of the training part."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise DenoisepotError(f"--train-size {text!r} is neither a count nor a fraction") from None
    if number.is_integer() and "." not in text and "e" not in text.lower():
        if number < 1:
            raise DenoisepotError(f"--train-size {text} must be at least 1")
        return int(number)
    if not 0.0 < number <= 1.0:
        raise DenoisepotError(f"--train-size {text}: a fraction must be in (0, 1]")
    return number


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("finetune")
    def finetune(
        data: Annotated[
            Path | None,
            typer.Option("--data", help="Store or release file; default: the built-in dataset."),
        ] = None,
        init_checkpoint: Annotated[
            Path | None, typer.Option("--from", help="Pretraining checkpoint (the pretrained row).")
        ] = None,
        backbone: Annotated[
            str | None,
            typer.Option("--backbone", help="Backbone to train from scratch (the baseline row)."),
        ] = None,
        hparam: Annotated[
            list[str] | None,
            typer.Option(
                "--hparam", help="Backbone hyperparameter key=value (with --backbone; repeatable)."
            ),
        ] = None,
        epochs: Annotated[
            int | None,
            typer.Option(
                "--epochs",
                help="paper: epochs (default 10 for ANI, 50 otherwise); converged: the epoch cap.",
            ),
        ] = None,
        protocol: Annotated[
            str,
            typer.Option(
                "--protocol",
                help="paper (fixed epochs) or converged (early stopping on validation loss).",
            ),
        ] = "paper",
        patience: Annotated[
            int,
            typer.Option(
                "--patience",
                help="converged: epochs without a better validation loss before stopping.",
            ),
        ] = 30,
        forces: Annotated[
            bool | None,
            typer.Option(
                "--forces/--energy-only",
                help="Train on forces too (default: where the data have them).",
            ),
        ] = None,
        force_weight: Annotated[
            float,
            typer.Option(
                "--force-weight",
                help="Weight of the force MSE ((eV/Å)²) against the energy MSE (eV²).",
            ),
        ] = 1.0,
        split: Annotated[
            str,
            typer.Option(
                "--split",
                help="conformation (80/10/10 within molecules), molecule (unseen molecules) "
                "or official.",
            ),
        ] = "conformation",
        val_fraction: Annotated[
            float,
            typer.Option(
                "--val-fraction",
                help="official split of train/test files: share of the train file held out "
                "for validation (rMD17: 0.05 gives the field's 950 train / 50 validation).",
            ),
        ] = 0.1,
        train_size: Annotated[
            str | None,
            typer.Option("--train-size", help="Training conformations: a count N or a FRACTION."),
        ] = None,
        train_subset: Annotated[
            str,
            typer.Option(
                "--train-subset",
                help="How --train-size is drawn: stratified (every molecule's share, at least "
                "one each) or random (from all molecules at once).",
            ),
        ] = "stratified",
        batch_size: Annotated[
            int, typer.Option("--batch-size", help="Conformations per batch.")
        ] = 256,
        lr: Annotated[
            float, typer.Option("--lr", help="Peak learning rate of the head (AdamW).")
        ] = 2e-4,
        backbone_lr_factor: Annotated[
            float,
            typer.Option("--backbone-lr-factor", help="Backbone learning rate = lr × this factor."),
        ] = 1.0,
        warmup_steps: Annotated[
            int,
            typer.Option(
                "--warmup-steps",
                help="Linear learning-rate warmup of at least N optimizer steps (the default "
                "0.3 epoch is one step on 50 conformations).",
            ),
        ] = 0,
        lr_schedule: Annotated[
            str,
            typer.Option(
                "--lr-schedule",
                help="cosine: warmup, plateau, cosine to the epoch cap (the paper's); plateau "
                "(converged protocol): warmup, then the rate halves after patience/4 epochs "
                "without a better validation loss.",
            ),
        ] = "cosine",
        freeze_backbone_epochs: Annotated[
            int,
            typer.Option(
                "--freeze-backbone-epochs", help="Train only the head for the first N epochs."
            ),
        ] = 0,
        readout: Annotated[
            str,
            typer.Option(
                "--readout", help="per_atom (size-extensive) or sum_then_mlp (the paper's)."
            ),
        ] = "per_atom",
        head_init: Annotated[
            str,
            typer.Option(
                "--head-init",
                help="new (a fresh energy head) or denoiser (with --from: start from the "
                "gradient noise head's scalar U, which Tweedie's formula makes an energy, scaled "
                "to the training labels by least squares).",
            ),
        ] = "new",
        head_shift: Annotated[
            str,
            typer.Option(
                "--head-shift",
                help="With --head-init denoiser: fit a shift per atom of each element (element) "
                "or one per atom (atom) together with U's slope; the same fit on one molecule, "
                "but U's constant differs between molecules and only per-element shifts absorb "
                "some of it.",
            ),
        ] = "element",
        validate_start: Annotated[
            bool,
            typer.Option(
                "--validate-start",
                help="Validate the starting weights too: the best-validation checkpoint may be "
                "the start (epoch 0), and early stopping (and --lr-schedule plateau's "
                "halving) counts from it.",
            ),
        ] = False,
        val_every: Annotated[
            int,
            typer.Option(
                "--val-every",
                help="Validate every N epochs (patience stays in epochs; the converged "
                "protocol's cap is rounded up to whole validations). Where an epoch is a few "
                "steps and the validation set is large, validating dominates the run.",
            ),
        ] = 1,
        seed: Annotated[
            int, typer.Option("--seed", help="Seed of split, subset and initialisation.")
        ] = 0,
        out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/finetune"),
        devices: Annotated[
            int, typer.Option("--devices", help="Processes per node (DDP when more than one).")
        ] = 1,
        num_nodes: Annotated[
            int, typer.Option("--num-nodes", help="Nodes (torchrun or SLURM start them).")
        ] = 1,
        strategy: Annotated[
            str, typer.Option("--strategy", help="auto or ddp (auto: DDP for several "
                              "processes).")
        ] = "auto",
        accelerator: Annotated[
            str, typer.Option("--accelerator", help="cpu, gpu or auto.")
        ] = "auto",
        num_workers: Annotated[int, typer.Option("--num-workers", help="DataLoader workers.")] = 0,
        progress: Annotated[
            bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
        ] = True,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue the run in --out (with "
                               "--lr-schedule plateau also a finished one, to a higher "
                               "--epochs).")
        ] = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace the run in --out.")
        ] = False,
    ) -> None:
        """Fine-tune on energies (and forces): best-validation checkpoint, test metrics,
        results.csv with per-conformation predictions, parity plot and error histogram."""
        import logging

        from rich.console import Console
        from rich.logging import RichHandler

        from ..engine.finetune_config import FinetuneConfig, check_config

        config = FinetuneConfig(
            out_dir=out,
            data=data,
            init_checkpoint=init_checkpoint,
            backbone=backbone,
            backbone_hparams=parse_hparams(hparam or []),
            protocol=protocol,
            epochs=epochs,
            patience=patience,
            forces=forces,
            force_weight=force_weight,
            split=split,
            val_fraction=val_fraction,
            train_size=parse_train_size(train_size),
            train_subset=train_subset,
            batch_size=batch_size,
            lr=lr,
            backbone_lr_factor=backbone_lr_factor,
            warmup_steps=warmup_steps,
            lr_schedule=lr_schedule,
            freeze_backbone_epochs=freeze_backbone_epochs,
            head_init=head_init,
            head_shift=head_shift,
            validate_start=validate_start,
            val_every=val_every,
            readout=readout,
            seed=seed,
            num_workers=num_workers,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            progress_bar=progress,
            resume=resume,
            overwrite=overwrite,
        )
        check_config(config)  # before the training engine's imports (torch, Lightning)

        from ..engine.finetune import run_finetuning
        from .evaluate import metrics_table

        console = Console()
        handler = RichHandler(console=console, show_path=False)
        for name in ("finetune_heads", "denoisepot"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.INFO)
        result = run_finetuning(config)
        if result is None:  # a data-parallel process other than the first: it reports
            return
        row = "pretrained" if init_checkpoint is not None else "from scratch"
        console.print(
            metrics_table(
                [
                    (f"{row} (test {result.n_test})", result.test_metrics),
                    ("predict the mean", result.baseline_metrics),
                ],
                title=(
                    f"test errors after {result.epochs_run} epochs (best {result.best_epoch}), "
                    f"{result.n_train} training conformations, {result.seconds:.0f} s"
                ),
            )
        )
        console.print(f"best checkpoint: {result.best_checkpoint}")
        console.print(f"per-conformation predictions: {result.results_csv}")
        console.print(f"plots: {out / 'parity.png'}, {out / 'error_histogram.png'}")

"""`denoisepot evaluate CKPT`: test errors of a fine-tuned potential, a parity plot and an
error histogram; for a pretraining checkpoint, its denoising loss on a labelled dataset and how
well its predicted noise aligns with the dataset's forces (what it learned of the force
field)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from finetune_heads import ErrorMetrics
    from rich.table import Table


def metrics_table(rows: list[tuple[str, ErrorMetrics]], title: str) -> Table:
    """A rich table, one column per labelled set of metrics (eV inside): energy MAE/RMSE per
    molecule in kcal/mol and meV, per atom in meV, force MAE/RMSE per component in kcal/mol/Å
    and meV/Å."""
    from molgraph_data.units import EV_IN_KCAL_PER_MOL, EV_IN_MEV
    from rich.table import Table

    table = Table(title=title)
    table.add_column("error")
    for label, _ in rows:
        table.add_column(label, justify="right")
    lines = [
        ("energy MAE (kcal/mol)", "energy_mae", EV_IN_KCAL_PER_MOL),
        ("energy RMSE (kcal/mol)", "energy_rmse", EV_IN_KCAL_PER_MOL),
        ("energy MAE (meV)", "energy_mae", EV_IN_MEV),
        ("energy RMSE (meV)", "energy_rmse", EV_IN_MEV),
        ("energy MAE per atom (meV)", "energy_per_atom_mae", EV_IN_MEV),
        ("force MAE (kcal/mol/Å)", "force_mae", EV_IN_KCAL_PER_MOL),
        ("force RMSE (kcal/mol/Å)", "force_rmse", EV_IN_KCAL_PER_MOL),
        ("force MAE (meV/Å)", "force_mae", EV_IN_MEV),
        ("force RMSE (meV/Å)", "force_rmse", EV_IN_MEV),
    ]
    for name, key, factor in lines:
        values = [metrics.scaled(factor)[key] for _, metrics in rows]
        table.add_row(name, *("—" if v != v else f"{v:.3f}" for v in values))
    return table


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("evaluate")
    def evaluate(
        checkpoint: Annotated[
            Path,
            typer.Argument(
                help="Fine-tuned checkpoint (best.pt of `denoisepot finetune`), or a pretraining "
                "checkpoint (best.pt of `denoisepot pretrain`) with --data (labelled)."
            ),
        ],
        data: Annotated[
            Path | None,
            typer.Option(
                "--data",
                help="Store or release file; default: the store the checkpoint was trained on.",
            ),
        ] = None,
        split: Annotated[
            str | None,
            typer.Option(
                "--split",
                help="train, val, test (rebuilt from the checkpoint's recipe) or all; "
                "default: test (all for a pretraining checkpoint).",
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", help="Output folder; default: <checkpoint folder>/evaluate-<split>."
            ),
        ] = None,
        batch_size: Annotated[
            int, typer.Option("--batch-size", help="Conformations per batch.")
        ] = 256,
    ) -> None:
        """Metrics table (kcal/mol and meV), parity plot and error histogram of a fine-tuned
        potential; for a pretrained denoiser, its loss on --data and its alignment with the
        forces there (Tweedie: the ideal denoiser predicts -(σ²/kT)·F)."""
        from rich.console import Console

        from ..engine.finetune import evaluate_checkpoint

        if _checkpoint_kind(checkpoint) == "pretrain":
            _evaluate_denoiser(checkpoint, data, split or "all", out, batch_size)
            return
        split = split or "test"
        out_dir = out if out is not None else checkpoint.parent / f"evaluate-{split}"
        result = evaluate_checkpoint(checkpoint, data, split, out_dir, batch_size=batch_size)
        console = Console()
        console.print(
            metrics_table(
                [(f"{split} ({result.n_conformations})", result.metrics)],
                title=f"{checkpoint} on {result.store}",
            )
        )
        for name, path in result.files.items():
            console.print(f"{name}: {path}")


def _checkpoint_kind(checkpoint: Path) -> str:
    from equivariant_backbones import CheckpointError, load_checkpoint

    from ..errors import DenoisepotError

    try:
        return str(load_checkpoint(checkpoint)["kind"])
    except CheckpointError as exc:
        raise DenoisepotError(str(exc)) from None


def _evaluate_denoiser(
    checkpoint: Path, data: Path | None, split: str, out: Path | None, batch_size: int
) -> None:
    """Loss and force alignment (where --data holds forces) of a pretraining checkpoint on
    every conformation of --data;
    writes alignment.json into --out (default: <checkpoint folder>/evaluate-<data name>)."""
    from rich.console import Console
    from rich.table import Table

    from ..engine.alignment import denoiser_alignment
    from ..engine.finetune import resolve_store
    from ..engine.runfile import write_json_atomic
    from ..errors import DenoisepotError

    if data is None:
        raise DenoisepotError(
            f"{checkpoint}: a pretraining checkpoint is evaluated on labelled data; pass "
            "--data with a store or release file (with forces for the force alignment)"
        )
    if split != "all":
        raise DenoisepotError(
            f"{checkpoint}: --split {split}: a pretraining checkpoint is evaluated on all of "
            "--data (use --split all or leave it out)"
        )
    out_dir = out if out is not None else checkpoint.parent / f"evaluate-{data.stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    store = resolve_store(data, out_dir / "data")
    result = denoiser_alignment(checkpoint, store, batch_size=batch_size)
    loss_unit = "Å²/atom" if result.loss_unit == "Angstrom^2" else "per atom, σ-normalised"
    table = Table(title=f"pretrained denoiser on {result.n_conformations} conformations")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("σ (Å)", f"{result.sigma_angstrom:g}")
    table.add_row(f"denoising loss ({loss_unit})", f"{result.loss:.4g}")
    table.add_row("predict-zero baseline", f"{result.baseline:.4g}")
    if result.cosine == result.cosine:
        table.add_row("cos(predicted noise, forces)", f"{result.cosine:+.3f}")
    else:
        table.add_row("cos(predicted noise, forces)", "— (no forces in --data)")
    temperature = result.implied_temperature_k
    table.add_row(
        "Tweedie temperature (K)", "—" if temperature != temperature else f"{temperature:.0f}"
    )
    if result.energy_correlation == result.energy_correlation:
        table.add_row("corr(head scalar U, energy)", f"{result.energy_correlation:+.3f}")
    console = Console()
    console.print(f"checkpoint: {checkpoint}\ndata: {store}")
    console.print(table)
    console.print(
        "cos -1: the denoiser predicts noise against the forces, as the ideal denoiser of "
        "Boltzmann samples does (-(σ²/kT)·F); 0: unrelated. The temperature reads kT off the "
        "least-squares slope; a σ comparable to the thermal amplitude of stiff bonds raises it "
        "(the ideal denoiser of a harmonic mode of stiffness k gives kT + kσ²). A gradient head "
        "predicts the noise as -∂U/∂x̃; the ideal U is -(σ²/kT)·E, so corr(U, E) within each "
        "molecule near -1 means the denoiser holds the energy surface."
    )
    path = out_dir / "alignment.json"
    write_json_atomic(path, result.as_dict())
    console.print(f"alignment_json: {path}")

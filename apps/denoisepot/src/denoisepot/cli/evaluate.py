"""`denoisepot evaluate CKPT`: test errors of a fine-tuned potential, a parity plot and an
error histogram."""

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
            Path, typer.Argument(help="Fine-tuned checkpoint (best.pt of `denoisepot finetune`).")
        ],
        data: Annotated[
            Path | None,
            typer.Option(
                "--data",
                help="Store or release file; default: the store the checkpoint was trained on.",
            ),
        ] = None,
        split: Annotated[
            str,
            typer.Option(
                "--split", help="train, val, test (rebuilt from the checkpoint's recipe) or all."
            ),
        ] = "test",
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
        potential."""
        from rich.console import Console

        from ..engine.finetune import evaluate_checkpoint

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

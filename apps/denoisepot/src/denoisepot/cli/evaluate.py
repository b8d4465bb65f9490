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
    """A rich table of energy MAE/RMSE (kcal/mol and meV, per molecule; meV per atom) and
    force MAE/RMSE (kcal/mol/Å and meV/Å) for each labelled set of metrics (eV inside)."""
    from molgraph_data.units import EV_IN_KCAL_PER_MOL, EV_IN_MEV
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    for name in (
        "E MAE\nkcal/mol",
        "E RMSE\nkcal/mol",
        "E MAE\nmeV",
        "E RMSE\nmeV",
        "E MAE/atom\nmeV",
        "F MAE\nkcal/mol/Å",
        "F RMSE\nkcal/mol/Å",
        "F MAE\nmeV/Å",
        "F RMSE\nmeV/Å",
    ):
        table.add_column(name, justify="right")
    for label, metrics in rows:
        kcal = metrics.scaled(EV_IN_KCAL_PER_MOL)
        mev = metrics.scaled(EV_IN_MEV)
        values = [
            kcal["energy_mae"],
            kcal["energy_rmse"],
            mev["energy_mae"],
            mev["energy_rmse"],
            mev["energy_per_atom_mae"],
            kcal["force_mae"],
            kcal["force_rmse"],
            mev["force_mae"],
            mev["force_rmse"],
        ]
        table.add_row(label, *("—" if v != v else f"{v:.3f}" for v in values))
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

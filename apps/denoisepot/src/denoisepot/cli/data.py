"""`denoisepot data`: inspect release files and stores, convert them, split them.

Thin wiring over ``molgraph_data``; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import generate

data_app = typer.Typer(
    name="data",
    help="Inspect, convert and split molecular datasets (ANI-1, ANI-1x, SPICE, ISO17, MD17/22...).",
    no_args_is_help=True,
)


def _reader_options(
    high_energy: bool,
    property_set: str | None,
    spice_energy: str | None,
    subsets: list[str] | None,
    energy_key: str | None,
    forces_key: str | None,
    energy_unit: str | None,
) -> dict[str, Any]:
    """Reader options the user set (defaults are left to each reader)."""
    given = {
        "high_energy": high_energy or None,
        "property_set": property_set,
        "energy": spice_energy,
        "subsets": subsets or None,
        "energy_key": energy_key,
        "forces_key": forces_key,
        "energy_unit": energy_unit,
    }
    return {key: value for key, value in given.items() if value is not None}


FormatOpt = Annotated[
    str | None, typer.Option("--format", "-f", help="Override format detection (see `formats`).")
]
HighEnergyOpt = Annotated[
    bool,
    typer.Option("--high-energy", help="ANI-1: add the coordinatesHE/energiesHE conformations."),
]
PropertySetOpt = Annotated[
    str | None,
    typer.Option(
        "--property-set", help="ANI-1x: wb97x_dz (default, energy+forces), wb97x_tz, ccsd(t)_cbs."
    ),
]
SpiceEnergyOpt = Annotated[
    str | None, typer.Option("--spice-energy", help="SPICE: total (default) or formation.")
]
SubsetOpt = Annotated[
    list[str] | None,
    typer.Option("--subset", help="SPICE: keep groups whose subset contains this text."),
]
EnergyKeyOpt = Annotated[
    str | None, typer.Option("--energy-key", help="ASE files: key of the energy (energy).")
]
ForcesKeyOpt = Annotated[
    str | None, typer.Option("--forces-key", help="ASE files: key of the forces (forces).")
]
EnergyUnitOpt = Annotated[
    str | None, typer.Option("--energy-unit", help="ASE files: eV (default), Hartree, kcal/mol.")
]


def _summary_table(summary: Any) -> Any:
    """A rich table of a molgraph_data Summary."""
    import math

    from ase.data import chemical_symbols
    from molgraph_data import units
    from rich.table import Table

    table = Table(title=str(summary.path), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("format", summary.format)
    table.add_row("level of theory", summary.level_of_theory or "unknown")
    table.add_row("molecules", f"{summary.n_molecules:,}")
    table.add_row("conformations", f"{summary.n_conformations:,}")
    table.add_row("elements", " ".join(chemical_symbols[z] for z in summary.elements))
    table.add_row("atoms per conformation", f"{summary.atoms_min} – {summary.atoms_max}")
    if summary.has_energy and not math.isnan(summary.energy_min_ev):
        lo, hi = summary.energy_min_ev, summary.energy_max_ev
        kcal = units.EV_IN_KCAL_PER_MOL
        table.add_row("energy (eV)", f"{lo:.6f} … {hi:.6f}")
        table.add_row("energy (kcal/mol)", f"{lo * kcal:.4f} … {hi * kcal:.4f}")
    else:
        table.add_row("energy", "none")
    table.add_row("forces", "yes" if summary.has_forces else "no")
    if summary.n_dropped_nan:
        table.add_row("dropped (NaN labels)", f"{summary.n_dropped_nan:,}")
    units_text = ", ".join(f"{k} {v}" for k, v in summary.source_units.items())
    table.add_row("units", units_text)
    return table


@data_app.command("formats")
def formats_command() -> None:
    """List the formats that can be read."""
    from molgraph_data import list_formats
    from rich.console import Console
    from rich.table import Table

    table = Table("format", "what")
    for name, description in list_formats().items():
        table.add_row(name, description)
    Console().print(table)


@data_app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="A release file/folder or a converted store.")],
    format: FormatOpt = None,
    high_energy: HighEnergyOpt = False,
    property_set: PropertySetOpt = None,
    spice_energy: SpiceEnergyOpt = None,
    subset: SubsetOpt = None,
    energy_key: EnergyKeyOpt = None,
    forces_key: ForcesKeyOpt = None,
    energy_unit: EnergyUnitOpt = None,
) -> None:
    """Show format, molecules, conformations, elements, atom counts, energy range and forces."""
    from molgraph_data import summarize
    from rich.console import Console

    options = _reader_options(
        high_energy, property_set, spice_energy, subset, energy_key, forces_key, energy_unit
    )
    summary = summarize(path, format=format, **options)
    Console().print(_summary_table(summary))


@data_app.command("convert")
def convert_command(
    paths: Annotated[
        list[Path], typer.Argument(help="SRC... OUT.h5: release files, then the store.")
    ],
    format: FormatOpt = None,
    high_energy: HighEnergyOpt = False,
    property_set: PropertySetOpt = None,
    spice_energy: SpiceEnergyOpt = None,
    subset: SubsetOpt = None,
    energy_key: EnergyKeyOpt = None,
    forces_key: ForcesKeyOpt = None,
    energy_unit: EnergyUnitOpt = None,
) -> None:
    """Convert release files into one store (Å, eV, eV/Å), streaming and atomically."""
    if len(paths) < 2:
        raise typer.BadParameter("give at least one source and the output store: SRC... OUT.h5")
    from molgraph_data import convert, summarize
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    *sources, out = paths
    options = _reader_options(
        high_energy, property_set, spice_energy, subset, energy_key, forces_key, energy_unit
    )
    console = Console()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("converting: 0 conformations", total=None)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            progress.update(task, description=f"converting: {done[0]:,} conformations")

        store = convert(sources, out, format=format, progress=advance, **options)
    summary = summarize(store)
    console.print(_summary_table(summary))
    if summary.n_dropped_nan:
        console.print(
            f"[yellow]{summary.n_dropped_nan:,} conformations dropped for NaN labels "
            "(per group counts in the store's metadata 'dropped_nan_by_group')[/yellow]"
        )
    console.print(f"wrote {store}")


@data_app.command("split")
def split_command(
    store: Annotated[Path, typer.Argument(help="A converted store (denoisepot data convert).")],
    kind: Annotated[
        str, typer.Option(help="within (each molecule's conformations), molecule, or official.")
    ] = "within",
    fractions: Annotated[
        str, typer.Option(help="train,val[,test] fractions (kinds within and molecule).")
    ] = "0.8,0.1,0.1",
    val_fraction: Annotated[
        float, typer.Option(help="official: share of the train file's rows kept for val.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the random cut.")] = 0,
    train_size: Annotated[
        float | None,
        typer.Option(help="Keep this many training conformations (>1) or this fraction (<=1)."),
    ] = None,
    exclude_split: Annotated[
        list[Path] | None,
        typer.Option("--exclude", help="Split file(s) whose conformations no part may contain."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Split file (default: beside the store).")
    ] = None,
) -> None:
    """Split a store into index files (.npz beside the store) and print their sizes."""
    from molgraph_data import (
        DataError,
        Store,
        exclude,
        load_split,
        official_split,
        save_split,
        split_by_molecule,
        split_within_molecules,
        subset,
    )
    from rich.console import Console
    from rich.table import Table

    try:
        parts = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise typer.BadParameter(f"{fractions!r}: use numbers like 0.8,0.1,0.1") from None
    makers = {
        "within": lambda s: split_within_molecules(s, parts, seed),
        "molecule": lambda s: split_by_molecule(s, parts, seed),
        "official": lambda s: official_split(s, val_fraction, seed),
    }
    if kind not in makers:
        raise typer.BadParameter(f"--kind {kind!r}: choose within, molecule or official")
    with Store(store) as opened:
        split = makers[kind](opened)
        n_total = opened.n_conformations
    for other in exclude_split or []:
        for ids in load_split(other).values():
            split = {name: exclude(part, ids) for name, part in split.items()}
    for name, part in split.items():
        if part.size == 0:
            raise DataError(
                store, f"split part {name!r} is empty; change the fractions, seed or exclusions"
            )
    if train_size is not None:
        size: int | float = int(train_size) if train_size > 1 else float(train_size)
        split["train"] = subset(split["train"], size, seed)
    if out is None:
        label = f"{kind}-{'-'.join(fractions.split(','))}" if kind != "official" else kind
        suffix = "" if train_size is None else f"-train{train_size:g}"
        out = store.with_name(f"{store.stem}.split-{label}-seed{seed}{suffix}.npz")
    save_split(out, split)
    table = Table("part", "conformations", "share", title=str(out))
    for name, part in split.items():
        table.add_row(name, f"{part.size:,}", f"{part.size / n_total:.1%}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the `data` command group (with `generate` from its own module) to ``app``."""
    generate.register(data_app)
    app.add_typer(data_app, name="data")

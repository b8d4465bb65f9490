"""`denoisepot data generate`: nonequilibrium conformations labelled with GFN2-xTB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..datagen.recipe import GenerationRecipe

_D = GenerationRecipe()


def register(data_app: typer.Typer) -> None:
    """Add `generate` to the `data` command group."""
    data_app.command("generate")(generate)


def generate(
    out: Annotated[Path, typer.Option("--out", help="Store to write (HDF5).")],
    smiles: Annotated[
        Path | None,
        typer.Option(
            "--smiles", help="Text file: one SMILES (optionally followed by a name) per line."
        ),
    ] = None,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="Use the built-in list of 56 small C/H/N/O molecules.")
    ] = False,
    conformers: Annotated[
        int,
        typer.Option("--conformers", help="Conformations per molecule (spread over temperatures)."),
    ] = _D.conformers,
    sampling: Annotated[
        str,
        typer.Option(
            "--sampling", help="md (Langevin MD on GFN2-xTB) or normal-modes (ANI-style)."
        ),
    ] = _D.sampling,
    temperature: Annotated[
        list[float] | None,
        typer.Option(
            "--temperature",
            help="Sampling temperature in K; repeat for several (default: 300, 600, 1000).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of embedding and sampling.")] = 0,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (default: all cores).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out.")
    ] = False,
) -> None:
    """Embed molecules with RDKit, sample nonequilibrium conformations, label them with GFN2-xTB
    (energies eV, forces eV/Å) and write a canonical store."""
    from ..datagen import builtin_molecules, generate_store, read_smiles_file
    from ..errors import DenoisepotError

    if builtin == (smiles is not None):
        raise DenoisepotError("data generate: give exactly one of --smiles FILE or --builtin")
    if out.exists() and not overwrite:
        raise DenoisepotError(f"{out}: already exists; choose another --out or pass --overwrite")
    molecules = builtin_molecules() if builtin else read_smiles_file(smiles)
    recipe = GenerationRecipe(
        conformers=conformers,
        sampling=sampling,
        temperatures_kelvin=tuple(temperature) if temperature else _D.temperatures_kelvin,
        seed=seed,
    )
    generate_store(molecules, recipe, out, workers=workers, progress=True)
    typer.echo(
        f"wrote {out}: {len(molecules)} molecules x {conformers} conformations, "
        f"GFN2-xTB energies (eV) and forces (eV/Å)"
    )

"""Molecules from SMILES: parsing a SMILES file and RDKit embedding with MMFF pre-optimisation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DenoisepotError


@dataclass(frozen=True)
class MoleculeSpec:
    """One molecule to generate: a name and its SMILES."""

    name: str
    smiles: str


@dataclass(frozen=True)
class EmbeddedMolecule:
    """A 3D structure: atomic numbers [A], positions [A, 3] Å, total charge, unpaired electrons."""

    numbers: np.ndarray
    positions: np.ndarray
    charge: int
    uhf: int


def read_smiles_file(path: Path) -> list[MoleculeSpec]:
    """Read ``SMILES [name]`` lines (blank lines and lines starting with ``#`` skipped)."""
    from rdkit import Chem, RDLogger

    path = Path(path)
    if not path.is_file():
        raise DenoisepotError(
            f"{path}: no such SMILES file; pass a text file with one SMILES per line"
        )
    RDLogger.DisableLog("rdApp.*")
    specs: list[MoleculeSpec] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split(None, 1)
        if not fields or fields[0].startswith("#"):
            continue
        smiles = fields[0]
        name = fields[1].strip() if len(fields) > 1 else smiles
        if Chem.MolFromSmiles(smiles) is None:
            raise DenoisepotError(
                f"{path}: line {number}: RDKit cannot parse the SMILES {smiles!r}; "
                "fix or remove that line"
            )
        specs.append(MoleculeSpec(name=name, smiles=smiles))
    if not specs:
        raise DenoisepotError(
            f"{path}: no SMILES found; write one SMILES (and optionally a name) per line"
        )
    return specs


def embed_molecule(spec: MoleculeSpec, seed: int) -> EmbeddedMolecule:
    """Embed ``spec`` in 3D with RDKit (ETKDG, fixed seed) and pre-optimise it with MMFF94 (UFF
    where MMFF lacks parameters); positions in Å, explicit hydrogens included."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(spec.smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise DenoisepotError(
                f"{spec.smiles}: RDKit could not embed {spec.name!r} in 3D; check the SMILES"
            )
    if mol.GetNumAtoms() > 1:
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        else:
            AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
    charge = sum(atom.GetFormalCharge() for atom in mol.GetAtoms())
    uhf = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return EmbeddedMolecule(numbers=numbers, positions=positions, charge=int(charge), uhf=int(uhf))

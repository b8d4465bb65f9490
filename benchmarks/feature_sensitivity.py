"""How much of a molecule's energy an untrained backbone's features can see.

For each backbone at the CPU scale of the real-data comparison, freshly initialised (no
training), the per-atom scalar features are summed over each conformation of an rMD17
molecule and two figures are printed:

* the spread of those pooled features across conformations, relative to their size (the
  median over features of std / root mean square: how strongly the features respond to the
  small geometry changes of an MD trajectory), and
* the test energy MAE of a ridge regression on them (fitted on the first half of the
  conformations, tested on the second; the best of a few ridge strengths), beside the error of
  predicting the mean energy.

A backbone whose random features barely move with geometry starts training with almost no
signal; SchNet is the reference it is set against. Run:
    uv run python benchmarks/feature_sensitivity.py [--molecule malonaldehyde] [--conformations 400]
Units: Å, eV inside; kcal/mol printed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rmd17"
#: the four backbones, each at the real-data comparison's "small" scale
#: (denoisepot.compare.config.SMALL_HPARAMS), EGNN as the paper has it (raw d^2) and the
#: SE(3)-Transformer with plain radial MLPs (no LayerNorm, as this package had it before)
BACKBONES = ("schnet", "egnn", "egnn-d2", "et", "se3t", "se3t-plain")
#: rows that are a backbone with other hyperparameters on top of the scale's
VARIANTS = {"egnn-d2": ("egnn", {"num_rbf": 0}), "se3t-plain": ("se3t", {"radial_norm": False})}
RIDGE_STRENGTHS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def pooled_features(name: str, block, seed: int) -> np.ndarray:
    """Per-conformation sums of the untrained backbone's scalar features ``[B, F]``."""
    import torch
    from denoisepot.compare.config import SMALL_HPARAMS
    from equivariant_backbones import build_backbone

    backbone, extra = VARIANTS.get(name, (name, {}))
    torch.manual_seed(seed)
    model = build_backbone(backbone, **{**SMALL_HPARAMS[backbone], **extra}).eval()
    z = torch.as_tensor(block.z, dtype=torch.long)
    pos = torch.as_tensor(block.pos, dtype=torch.float32)
    n_atoms = torch.as_tensor(block.n_atoms, dtype=torch.long)
    batch = torch.repeat_interleave(torch.arange(n_atoms.numel()), n_atoms)
    with torch.no_grad():
        scalar = model(z, pos, batch).scalar.double()
    pooled = torch.zeros(n_atoms.numel(), scalar.shape[1], dtype=torch.float64)
    return pooled.index_add(0, batch, scalar).numpy()


def ridge_probe_mae(features: np.ndarray, energy: np.ndarray) -> float:
    """Test MAE of ridge regression on standardised features (first half fits, second tests),
    the best over :data:`RIDGE_STRENGTHS`."""
    half = len(energy) // 2
    mean, std = features[:half].mean(0), features[:half].std(0) + 1e-12
    train, test = (features[:half] - mean) / std, (features[half:] - mean) / std
    offset = energy[:half].mean()
    best = np.inf
    for strength in RIDGE_STRENGTHS:
        gram = train.T @ train + strength * np.eye(train.shape[1])
        weights = np.linalg.solve(gram, train.T @ (energy[:half] - offset))
        best = min(best, float(np.abs(test @ weights + offset - energy[half:]).mean()))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="malonaldehyde")
    parser.add_argument("--conformations", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    args = parser.parse_args()

    release = DATA / f"rmd17_{args.molecule}_train_01.npz"
    if not release.exists():
        raise SystemExit(f"error: {release}: not found (the rMD17 samples of ../shared/data)")
    from molgraph_data import Store, convert
    from molgraph_data.units import EV_IN_KCAL_PER_MOL

    with tempfile.TemporaryDirectory() as tmp:
        store = convert([release], Path(tmp) / "store.h5")
        with Store(store) as opened:
            count = min(args.conformations, len(opened.energies()))
            # spread over the trajectory file, not its first stretch
            chosen = np.linspace(0, len(opened.energies()) - 1, count).astype(int)
            block = opened.read(chosen)
    energy = np.asarray(block.energy, dtype=np.float64) * EV_IN_KCAL_PER_MOL
    half = len(energy) // 2
    mean_mae = float(np.abs(energy[half:] - energy[:half].mean()).mean())
    print(f"rMD17 {args.molecule}, {count} conformations, untrained backbones (seed {args.seed})")
    print(f"{'backbone':10s} {'feature spread':>15s} {'ridge probe MAE':>16s} "
          f"{'mean predictor':>15s}  (kcal/mol)")
    reference = None
    for name in args.backbones:
        features = pooled_features(name, block, args.seed)
        rms = np.sqrt((features ** 2).mean(0)) + 1e-300
        spread = float(np.median(features.std(0) / rms))
        mae = ridge_probe_mae(features, energy)
        reference = reference or (name, spread)
        ratio = f"  spread {spread / reference[1]:.2f}x {reference[0]}'s"
        print(f"{name:10s} {spread:15.2e} {mae:16.2f} {mean_mae:15.2f}{ratio}")


if __name__ == "__main__":
    main()

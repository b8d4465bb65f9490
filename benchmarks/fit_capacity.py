"""Can a freshly initialised backbone fit a few hundred energies of one molecule?

Each backbone at the CPU scale of the real-data comparison (and the variants of
``feature_sensitivity.py``: EGNN with the paper's raw d², the SE(3)-Transformer with plain
radial MLPs) is trained from scratch on the energies of ``--train`` conformations of an rMD17
molecule alone: a per-atom MLP (32 hidden units) on its scalar features, summed over atoms,
against the standardised energies; Adam at 5e-4, batches of 32, ``--steps`` steps, one thread.
Printed per backbone: the training MSE as a share of the energies' variance (0 is a perfect
fit, 1 is the mean's), the test MAE on 400 conformations of the official test file beside
the mean predictor's, and the time per step.

This is no fine-tuning result (no forces, no reference energies, no early stopping); it asks
only whether a network can learn the energy surface at all, which is what the EGNN and
SE(3)-Transformer rows of docs/real-data-results.md needed answered. Run:
    uv run python benchmarks/fit_capacity.py [--molecule malonaldehyde] [--steps 2000]
Units: Å, eV inside; kcal/mol printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from feature_sensitivity import BACKBONES, DATA, VARIANTS

HEAD_HIDDEN = 32
BATCH = 32
LR = 5e-4
TEST_CONFORMATIONS = 400


def _read(release: Path, tmp: Path):
    """Atomic numbers, positions (Å) and energies (kcal/mol) of every conformation of a
    release file."""
    from molgraph_data import Store, convert
    from molgraph_data.units import EV_IN_KCAL_PER_MOL

    store = convert([release], tmp / f"{release.stem}.h5")
    with Store(store) as opened:
        block = opened.read(np.arange(len(opened.energies())))
    n_atoms = int(block.n_atoms[0])
    pos = np.asarray(block.pos, dtype=np.float32).reshape(-1, n_atoms, 3)
    energy = np.asarray(block.energy, dtype=np.float64) * EV_IN_KCAL_PER_MOL
    return np.asarray(block.z[:n_atoms]), pos, energy


def fit(name: str, train, test, steps: int, seed: int) -> tuple[float, float, float]:
    """(training MSE / variance, test MAE in kcal/mol, ms per step) of one backbone."""
    import torch
    from denoisepot.compare.config import SMALL_HPARAMS
    from equivariant_backbones import build_backbone

    backbone_name, extra = VARIANTS.get(name, (name, {}))
    torch.manual_seed(seed)
    backbone = build_backbone(backbone_name, **{**SMALL_HPARAMS[backbone_name], **extra})
    head = torch.nn.Sequential(torch.nn.Linear(backbone.scalar_dim, HEAD_HIDDEN),
                               torch.nn.SiLU(), torch.nn.Linear(HEAD_HIDDEN, 1))
    optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=LR)
    z = torch.as_tensor(train[0], dtype=torch.long)

    def predict(pos: np.ndarray) -> torch.Tensor:
        count = pos.shape[0]
        batch = torch.repeat_interleave(torch.arange(count), len(z))
        scalar = backbone(z.repeat(count), torch.as_tensor(pos).reshape(-1, 3), batch).scalar
        return head(scalar).view(count, len(z)).sum(1)

    mean, std = train[2].mean(), train[2].std()
    target = torch.as_tensor((train[2] - mean) / std, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(steps):
        chosen = rng.choice(len(target), BATCH, replace=False)
        loss = (predict(train[1][chosen]) - target[chosen]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    per_step = (time.perf_counter() - start) / steps * 1e3
    with torch.no_grad():
        fitted = torch.cat([predict(train[1][i:i + 100]) for i in range(0, len(target), 100)])
        tested = torch.cat([predict(test[1][i:i + 100]) for i in range(0, len(test[2]), 100)])
    train_mse = float((fitted.double() - target.double()).pow(2).mean())
    test_mae = float(np.abs(tested.double().numpy() * std + mean - test[2]).mean())
    return train_mse, test_mae, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="malonaldehyde")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    args = parser.parse_args()
    if args.steps < 1 or args.train < BATCH:
        parser.error(f"--steps must be at least 1 and --train at least {BATCH}")

    releases = [DATA / f"rmd17_{args.molecule}_{part}_01.npz" for part in ("train", "test")]
    for release in releases:
        if not release.exists():
            raise SystemExit(f"error: {release}: not found (the rMD17 samples of ../shared/data)")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        z, pos, energy = _read(releases[0], Path(tmp))
        test_z, test_pos, test_energy = _read(releases[1], Path(tmp))
    if args.train > len(energy):
        parser.error(f"{releases[0]}: holds {len(energy)} conformations, fewer than --train "
                     f"{args.train}")
    chosen = np.sort(np.random.default_rng(args.seed).permutation(len(energy))[:args.train])
    train = z, pos[chosen], energy[chosen]
    test = test_z, test_pos[:TEST_CONFORMATIONS], test_energy[:TEST_CONFORMATIONS]
    mean_mae = float(np.abs(test[2] - train[2].mean()).mean())
    print(f"rMD17 {args.molecule}: fit {args.train} energies from scratch, {args.steps} steps "
          f"(seed {args.seed}); test on {TEST_CONFORMATIONS}")
    print(f"{'backbone':12s} {'train MSE/var':>14s} {'test MAE':>9s} {'mean predictor':>15s} "
          f"{'ms/step':>8s}  (kcal/mol)")
    for name in args.backbones:
        train_mse, test_mae, per_step = fit(name, train, test, args.steps, args.seed)
        print(f"{name:12s} {train_mse:14.3f} {test_mae:9.2f} {mean_mae:15.2f} {per_step:8.0f}",
              flush=True)


if __name__ == "__main__":
    main()

"""What validating less often saves: one fine-tuning run validated every epoch beside the same
run validated every N epochs (``denoisepot finetune --val-every N``; ``compare`` and the
real-data benchmark take ``--val-every-steps``).

The setting is the one where validation costs most: 50 training conformations of the ANI-1
samples in ../shared/data (2 optimizer steps per epoch at batch 32) against a validation set
of 5% of them (1,395 conformations, as large as the real-data benchmark's ANI-1 split holds),
SchNet at compare's CPU scale, energies only, a fixed number of epochs (early stopping off, so
that both runs train the same steps). It prints each run's seconds and test energy MAE and the
ratio of the seconds; the MAEs differ only by which validated epoch was best.

    uv run python benchmarks/validation_interval.py                  # 200 epochs, every 10
    uv run python benchmarks/validation_interval.py --epochs 400 --val-every 20 --backbone et
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from real_data_comparison import ANI1_FILES  # this folder: the same samples


def main() -> None:
    """Parse options, make the store, run both fine-tunings, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=50)
    parser.add_argument("--backbone", default="schnet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [p for p in ANI1_FILES if not p.exists()]
    if missing:
        raise SystemExit(f"error: {missing[0]}: not found (the ANI-1 samples of ../shared/data)")
    if args.epochs % args.val_every:
        raise SystemExit(f"error: --val-every {args.val_every} must divide --epochs {args.epochs}")

    import time

    from denoisepot.compare.config import SMALL_HPARAMS
    from denoisepot.engine.finetune import FinetuneConfig, run_finetuning
    from molgraph_data import convert
    from molgraph_data.units import EV_IN_KCAL_PER_MOL

    with tempfile.TemporaryDirectory() as workdir:
        store = convert(list(ANI1_FILES), Path(workdir) / "ani1.h5")
        rows = []
        for every in (1, args.val_every):
            config = FinetuneConfig(
                out_dir=Path(workdir) / f"every{every}", data=store, backbone=args.backbone,
                backbone_hparams=SMALL_HPARAMS.get(args.backbone, {}), protocol="converged",
                epochs=args.epochs, patience=args.epochs, forces=False,
                split_fractions=(0.90, 0.05, 0.05), train_size=args.train_size,
                batch_size=32, lr=5e-4, seed=args.seed, val_every=every, progress_bar=False,
                accelerator="cpu",
            )
            started = time.perf_counter()
            result = run_finetuning(config)
            seconds = time.perf_counter() - started
            assert result is not None
            rows.append((every, seconds, result))
    (_, base_s, base), (every, fast_s, fast) = rows
    print(f"{args.backbone}, {base.n_train} training / {base.n_val} validation / "
          f"{base.n_test} test conformations of the ANI-1 samples, {args.epochs} epochs, CPU")
    for label, seconds, result in (("every epoch", base_s, base),
                                   (f"every {every} epochs", fast_s, fast)):
        print(f"  validated {label:>16}: {seconds:7.1f} s, best epoch {result.best_epoch + 1}, "
              f"test E MAE {result.test_metrics.energy_mae * EV_IN_KCAL_PER_MOL:.2f} kcal/mol")
    print(f"speed-up of validating every {every} epochs: {base_s / fast_s:.1f}x "
          f"(reference: validating every epoch, 1.0x)")


if __name__ == "__main__":
    main()

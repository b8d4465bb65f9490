"""Throughput of a whole denoise-pretraining step per backbone, beside the data pipeline.

A step is what the engine does per batch: draw the noise, run backbone and noise head,
compute the loss, backpropagate (second order for gradient heads) and take an AdamW step.
The pipeline is what feeds it: read the batch lazily from the store, collate it into a PyG
Batch and move it to the device. Both run over the same batches (random conformations of
the ANI-1 samples in ../shared/data). Target: the pipeline at least 5x faster than the
fastest backbone, so that the model never waits for data.

    python benchmarks/pretrain_throughput.py                 # paper hyperparameters, batch 256
    python benchmarks/pretrain_throughput.py --quick         # small networks, a smoke run
    python benchmarks/pretrain_throughput.py --device cuda --batch-size 256 --steps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from real_data_comparison import ANI1_FILES  # this folder: the same samples

DEFAULT_DATA = list(ANI1_FILES)
#: networks small enough for a smoke run (``--quick``)
QUICK_HPARAMS = {
    "schnet": {"hidden_channels": 32, "num_filters": 32, "num_interactions": 2,
               "num_gaussians": 16},
    "egnn": {"hidden_channels": 32, "num_layers": 2},
    "et": {"hidden_channels": 32, "num_layers": 2, "num_rbf": 16, "num_heads": 4},
    "se3t": {"channels": 4, "max_degree": 1, "num_layers": 1, "num_heads": 2,
             "scalar_channels": 16, "num_basis": 8, "radial_hidden": 16},
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_rate(dataset: object, batches: list[np.ndarray], device: torch.device) -> float:
    """Conformations/s of reading, collating and moving ``batches`` to ``device``."""
    dataset.__getitems__(batches[0]).to(device)  # open the file, warm caches
    _synchronize(device)
    start = time.perf_counter()
    for positions in batches:
        dataset.__getitems__(positions).to(device)
    _synchronize(device)
    return sum(b.size for b in batches) / (time.perf_counter() - start)


def step_rate(name: str, hparams: dict, batches: list, device: torch.device,
              sigma: float, warmup: int) -> tuple[float, int]:
    """Conformations/s of whole pretraining steps of ``name`` on pre-loaded ``batches``;
    also the parameter count."""
    from denoise_objective import (
        DenoisingModel,
        build_noise_head,
        conformation_noise,
        denoising_loss,
    )
    from equivariant_backbones import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(name, **hparams)
    head = build_noise_head(backbone)
    model = DenoisingModel(backbone, head).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    centre = head.kind == "gradient"

    def step(batch: object, stream: int) -> None:
        noise = conformation_noise(batch.noise_key, batch.batch, sigma, seed=0, stream=stream)
        predicted = model(batch.z, batch.pos + noise, batch.batch)
        loss = denoising_loss(predicted, noise, batch.batch, centre=centre)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(batches[i % len(batches)], stream=1000 + i)
    _synchronize(device)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        step(batch, stream=i)
    _synchronize(device)
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    return sum(int(b.num_graphs) for b in batches) / seconds, n_params


def main() -> None:
    """Parse options, run the pipeline and every backbone, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="*", default=DEFAULT_DATA,
                        help="stores or release files (default: the ANI-1 samples)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per backbone")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--backbones", default=None, help="comma-separated (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sigma", type=float, default=0.2, help="noise σ (Å)")
    parser.add_argument("--quick", action="store_true",
                        help="small networks, batch 32, 3 steps: a smoke run")
    args = parser.parse_args()

    from denoisepot.engine.data import MixedConformations
    from equivariant_backbones import list_backbones
    from molgraph_data import ensure_store
    from rich.console import Console
    from rich.table import Table

    if args.quick:
        args.batch_size, args.steps, args.warmup = 32, 3, 1
    device = torch.device(args.device)
    names = args.backbones.split(",") if args.backbones else list_backbones()
    missing = [p for p in args.data if not p.exists()]
    if missing:
        raise SystemExit(f"error: {missing[0]}: not found; pass --data STORE_OR_RELEASE_FILE")
    with tempfile.TemporaryDirectory() as workdir:
        stores = [ensure_store(p, workdir) for p in args.data]
        from molgraph_data import Store

        parts = []
        for path in stores:
            with Store(path) as store:
                parts.append((path, np.arange(store.n_conformations)))
        dataset = MixedConformations(parts)
        order = np.random.default_rng(0).permutation(len(dataset))
        n_batches = max(args.steps, 20)
        batches = [order[i * args.batch_size:(i + 1) * args.batch_size]
                   for i in range(n_batches)]
        pipeline = pipeline_rate(dataset, batches, device)
        loaded = [dataset.__getitems__(b).to(device) for b in batches[:args.steps]]

        card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        networks = "quick (small networks)" if args.quick else "paper hyperparameters"
        table = Table(title=f"pretraining step vs data pipeline: batch {args.batch_size}, "
                            f"{device} ({card}), {networks}")
        for column in ("backbone", "parameters", "step conf/s", "pipeline conf/s",
                       "pipeline / step"):
            table.add_column(column, justify="right")
        rates = {}
        for name in names:
            hparams = QUICK_HPARAMS.get(name, {}) if args.quick else {}
            rate, n_params = step_rate(name, hparams, loaded, device, args.sigma, args.warmup)
            rates[name] = rate
            table.add_row(name, f"{n_params:,}", f"{rate:,.0f}", f"{pipeline:,.0f}",
                          f"{pipeline / rate:.1f}x")
    console = Console()
    console.print(table)
    fastest = max(rates, key=rates.get)
    ratio = pipeline / rates[fastest]
    verdict = "met" if ratio >= 5 else "NOT met"
    console.print(f"target (pipeline >= 5x the fastest backbone, {fastest}): {ratio:.1f}x, "
                  f"{verdict}")


if __name__ == "__main__":
    main()

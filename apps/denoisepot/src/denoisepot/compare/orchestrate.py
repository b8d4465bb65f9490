"""Runs a comparison: pretraining once per backbone and σ, then the pretrained and the
from-scratch fine-tunings with identical settings and seeds, skipping finished runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DenoisepotError
from .config import CompareConfig, identity_hash
from .data import ComparisonData, prepare_data
from .manifest import Manifest

RUNS_DIR = "runs"


@dataclass
class CompareResult:
    """Where the comparison's outputs are and which runs it did now or found finished."""

    out: Path
    report: Path
    results_csv: Path
    plots: list[Path]
    finetune_runs: list[dict[str, Any]]
    pretrain_runs: list[dict[str, Any]]
    runs_executed: int
    runs_skipped: int


def _pretrain_config(
    config: CompareConfig, backbone: str, sigma: float, data: ComparisonData
) -> Any:
    from ..engine.pretrain import PretrainConfig

    return PretrainConfig(
        backbone=backbone,
        out=Path("."),
        data=list(data.pretrain_stores),
        sigma_angstrom=sigma,
        epochs=config.pretrain_epochs,
        batch_size=config.pretrain_batch_size,
        lr=config.pretrain_lr,
        seed=0,
        backbone_hparams=config.hparams(backbone),
        progress=config.progress,
    )


def _finetune_config(
    config: CompareConfig,
    backbone: str,
    size: int,
    seed: int,
    data: ComparisonData,
    checkpoint: Path | None,
) -> Any:
    from ..engine.finetune import FinetuneConfig

    return FinetuneConfig(
        out_dir=Path("."),
        data=data.finetune_store,
        init_checkpoint=checkpoint,
        backbone=None if checkpoint is not None else backbone,
        backbone_hparams={} if checkpoint is not None else config.hparams(backbone),
        protocol=config.protocol,
        epochs=config.finetune_epochs,
        patience=config.patience,
        forces=config.forces,
        force_weight=config.force_weight,
        split=config.finetune_split,
        train_size=size,
        batch_size=config.finetune_batch_size,
        lr=config.finetune_lr,
        seed=seed,
        progress_bar=config.progress,
    )


def _settings(run_config: Any, **replace: Any) -> dict[str, Any]:
    """The settings that define a run (no output folder or display switches)."""
    values = {f.name: getattr(run_config, f.name) for f in dataclasses.fields(run_config)}
    for key in ("out", "out_dir", "progress", "progress_bar", "resume", "overwrite"):
        values.pop(key, None)
    values.update(replace)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def _check_train_sizes(config: CompareConfig, store: Path) -> int:
    from ..engine.finetune import make_split

    split = make_split(store, config.finetune_split, seed=config.seeds[0])
    available = int(split["train"].size)
    if max(config.train_sizes) > available:
        raise DenoisepotError(
            f"{store}: --train-sizes {max(config.train_sizes)} is more than the "
            f"{available} training conformations of the fine-tuning split; use smaller sizes "
            "or more data"
        )
    return available


def run_compare(config: CompareConfig, *, command: str | None = None) -> CompareResult:
    """Run (or continue) the comparison described by ``config``; write ``report.md``,
    ``results.csv`` and the plots into ``config.out`` and return what was produced."""
    from rich.console import Console

    from ..engine.finetune import run_finetuning
    from ..engine.pretrain import run_pretraining
    from .report import write_outputs

    config = dataclasses.replace(config, out=Path(config.out))
    config.check()
    console = Console(stderr=True, quiet=not config.progress)
    config.out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config)
    available = _check_train_sizes(config, data.finetune_store)
    manifest = Manifest(config.out)
    runs = config.out / RUNS_DIR
    n_pretrain = len(config.backbones) * len(config.sigmas)
    total = n_pretrain + len(config.backbones) * len(config.train_sizes) * len(config.seeds) * (
        1 + len(config.sigmas)
    )
    counter = {"done": 0, "executed": 0, "skipped": 0}
    pretrain_records: list[dict[str, Any]] = []
    finetune_records: list[dict[str, Any]] = []

    def announce(name: str, finished: bool) -> None:
        counter["done"] += 1
        state = "finished earlier, reused" if finished else "running"
        console.rule(f"[{counter['done']}/{total}] {name}: {state}")
        counter["skipped" if finished else "executed"] += 1

    for backbone in config.backbones:
        checkpoints: dict[float, tuple[str, Path]] = {}
        for sigma in config.sigmas:
            run_config = _pretrain_config(config, backbone, sigma, data)
            name = f"pretrain-{backbone}-sigma{sigma:g}-{identity_hash(_settings(run_config))}"
            record = manifest.get(name)
            announce(name, record is not None)
            if record is None:
                result = run_pretraining(
                    dataclasses.replace(run_config, out=runs / name, resume=True)
                )
                record = {
                    "backbone": backbone,
                    "sigma": sigma,
                    "seconds": result.seconds,
                    "conformations_seen": result.conformations_seen,
                    "epochs": config.pretrain_epochs,
                    "best_val_loss": result.best_val_loss,
                    "final_val_loss": result.final_val_loss,
                    "baseline_val_loss": result.baseline_val_loss,
                    "checkpoint": str(result.best_checkpoint),
                }
                manifest.add(name, record)
            pretrain_records.append({"run": name, **record})
            checkpoints[sigma] = (name, Path(record["checkpoint"]))
        for seed in config.seeds:
            for size in config.train_sizes:
                rows: list[tuple[str, float | None, Path | None, str | None]] = [
                    ("scratch", None, None, None)
                ]
                rows += [
                    ("pretrained", sigma, checkpoints[sigma][1], checkpoints[sigma][0])
                    for sigma in config.sigmas
                ]
                for row, sigma, checkpoint, pretrain_run in rows:
                    run_config = _finetune_config(config, backbone, size, seed, data, checkpoint)
                    settings = _settings(run_config, init_checkpoint=pretrain_run)
                    label = row if sigma is None else f"{row}-sigma{sigma:g}"
                    name = (
                        f"finetune-{backbone}-{label}-n{size}-seed{seed}-{identity_hash(settings)}"
                    )
                    record = manifest.get(name)
                    announce(name, record is not None)
                    if record is None:
                        result = run_finetuning(
                            dataclasses.replace(run_config, out_dir=runs / name, overwrite=True)
                        )
                        record = {
                            "backbone": backbone,
                            "row": row,
                            "sigma": sigma,
                            "train_size": size,
                            "seed": seed,
                            "pretrain_run": pretrain_run,
                            "test": result.test_metrics.as_dict(),
                            "val": result.val_metrics.as_dict(),
                            "baseline": result.baseline_metrics.as_dict(),
                            "epochs_run": result.epochs_run,
                            "best_epoch": result.best_epoch,
                            "seconds": result.seconds,
                            "n_train": result.n_train,
                            "n_val": result.n_val,
                            "n_test": result.n_test,
                            "used_forces": result.used_forces,
                        }
                        manifest.add(name, record)
                    finetune_records.append({"run": name, **record})
    report, results_csv, plots = write_outputs(
        config,
        data,
        pretrain_records,
        finetune_records,
        available_train=available,
        command=command,
    )
    return CompareResult(
        out=config.out,
        report=report,
        results_csv=results_csv,
        plots=plots,
        finetune_runs=finetune_records,
        pretrain_runs=pretrain_records,
        runs_executed=counter["executed"],
        runs_skipped=counter["skipped"],
    )

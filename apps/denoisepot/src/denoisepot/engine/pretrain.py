"""Denoise pretraining: the loop around denoise_objective, on Lightning Fabric.

Fabric supplies the devices, the process group (``--devices N --num-nodes M --strategy ddp``,
torchrun and SLURM launchers) and the loggers; the loop itself is written out here so that a
run killed at any moment resumes from its training-state file to exactly the same numbers:
the data order of every epoch and the noise of every conformation are pure functions of the
seed (see :mod:`denoisepot.engine.data` and ``denoise_objective.conformation_noise``), so the
state is just weights, optimizer, scheduler, RNG states and the (epoch, batch) position.

Output folder ``out``: ``run.json`` (the settings that define the run), ``split.npz``,
``best.pt`` and ``last.pt`` (pretraining checkpoints), ``training_state.pt`` (resume),
``logs/`` (CSV, and TensorBoard when installed), ``stores/`` (converted release files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DenoisepotError, Terminated
from .pretrain_config import PretrainConfig, check_config
from .runfile import RUN_FILE, check_same_settings, write_json_atomic
from .stopping import sigterm_requests

SPLIT_FILE = "split.npz"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
STATE_FILE = "training_state.pt"
LOG_DIR = "logs"
#: files and folders that belong to a run (removed by ``overwrite``; ``stores/`` is a cache)
RUN_ENTRIES = (RUN_FILE, SPLIT_FILE, BEST_FILE, LAST_FILE, STATE_FILE, LOG_DIR)
#: validation noise uses this stream; epoch ``e`` of training uses stream ``e + 1``
VALIDATION_STREAM = 0


@dataclass
class PretrainResult:
    """What a finished run produced; losses in Å² per atom (dimensionless if normalised)."""

    out: Path
    best_checkpoint: Path
    last_checkpoint: Path
    final_val_loss: float
    best_val_loss: float
    baseline_val_loss: float
    conformations_seen: int
    seconds: float
    history: list[dict[str, float]]
    global_rank: int = 0


#: settings that define a run; a resumed run must agree on all of them
_IDENTITY_FIELDS = (
    "backbone", "sigma_angstrom", "epochs", "batch_size", "lr", "weight_decay",
    "warmup_epochs", "plateau_epochs", "min_lr", "seed", "val_fraction", "train_size",
    "val_size", "noise_head", "centre_noise", "normalise_target", "backbone_hparams",
)


def _identity(config: PretrainConfig, sources: list[str]) -> dict[str, Any]:
    identity = {name: getattr(config, name) for name in _IDENTITY_FIELDS}
    identity["data"] = sources
    return json.loads(json.dumps(identity))


def _resolve_stores(config: PretrainConfig) -> tuple[list[Path], list[Path]]:
    """(source paths, store paths): release files are converted once into the work folder;
    no ``data`` means the built-in dataset."""
    from molgraph_data import ensure_store

    if not config.data:
        from ..datagen import ensure_builtin_store

        builtin = ensure_builtin_store(progress=config.progress)
        return [builtin], [builtin]
    workdir = Path(config.data_workdir or config.out / "stores")
    workdir.mkdir(parents=True, exist_ok=True)
    sources = [Path(p) for p in config.data]
    return sources, [ensure_store(p, workdir) for p in sources]


def _prepare_output(config: PretrainConfig) -> dict[str, Any]:
    """On the first process: check (or resume) the output folder and find the data; returns
    what every process needs (store paths, the run's identity, whether to resume)."""
    out = Path(config.out)
    held = [name for name in RUN_ENTRIES if (out / name).exists()]
    if held and not (config.resume or config.overwrite):
        raise DenoisepotError(
            f"{out}: the folder holds another run ({', '.join(held)}); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out"
        )
    if config.overwrite:
        for name in held:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    sources, stores = _resolve_stores(config)
    identity = _identity(config, [os.fspath(p) for p in sources])
    run_file = out / RUN_FILE
    resume_state = None
    if config.resume and run_file.exists():
        check_same_settings(run_file, identity)
        if (out / STATE_FILE).exists():
            resume_state = os.fspath(out / STATE_FILE)
    return {"stores": [os.fspath(p) for p in stores], "identity": identity,
            "sources": [os.fspath(p) for p in sources], "resume_state": resume_state}


def _make_fabric(config: PretrainConfig) -> Any:
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    processes = config.devices * config.num_nodes
    # find_unused_parameters: the last EGNN feature update, for one, does not reach the
    # displacement head
    strategy = (DDPStrategy(find_unused_parameters=True)
                if config.strategy == "ddp" or processes > 1 else "auto")
    return Fabric(accelerator=config.accelerator, devices=config.devices,
                  num_nodes=config.num_nodes, strategy=strategy)


def _make_loggers(out: Path) -> list[Any]:
    from lightning.fabric.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(out / LOG_DIR, name="csv")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.fabric.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out / LOG_DIR, name="tensorboard"))
    return loggers


def run_pretraining(config: PretrainConfig) -> PretrainResult:
    """Pretrain ``config.backbone`` by coordinate denoising on ``config.data``; writes the
    output folder described in this module's docstring and returns where things went and
    the losses (Å² per atom, summed over x, y, z)."""
    from denoise_objective import (
        DenoisingModel,
        build_noise_head,
        conformation_noise,
        denoising_loss,
        noise_head_to_dict,
        predict_zero_baseline,
    )
    from equivariant_backbones import backbone_to_dict, build_backbone

    from .. import __version__
    from .data import (
        MixedConformations,
        elements_seen,
        epoch_batches,
        iterate,
        save_splits,
        split_stores,
        store_provenance,
        validation_batches,
    )
    from .progress import TrainingProgress
    from .schedule import warmup_plateau_cosine
    from .state import (
        capture_rng_state,
        load_training_state,
        restore_rng_state,
        save_pretrain_checkpoint,
        save_training_state,
    )

    config = dataclasses.replace(config, out=Path(config.out),
                                 data=[Path(p) for p in config.data])
    check_config(config)
    fabric = _make_fabric(config)
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size
    is_zero = rank == 0

    plan: dict[str, Any] = {}
    failure: Exception | None = None
    if is_zero:
        try:
            plan = _prepare_output(config)
        except Exception as exc:  # noqa: BLE001 - every rank must learn about the failure
            failure, plan = exc, {"error": str(exc)}
    plan = fabric.broadcast(plan, src=0)
    if failure is not None:
        raise failure
    if "error" in plan:
        raise DenoisepotError(plan["error"])
    out = config.out
    stores = [Path(p) for p in plan["stores"]]
    splits = split_stores(stores, val_fraction=config.val_fraction, seed=config.seed,
                          train_size=config.train_size, val_size=config.val_size)
    train_set = MixedConformations([(s.path, s.train) for s in splits])
    val_set = MixedConformations([(s.path, s.val) for s in splits])
    batch_size = config.batch_size
    steps_per_epoch = len(train_set) // batch_size
    if steps_per_epoch == 0:
        raise DenoisepotError(
            f"--batch-size {batch_size} is larger than the training set "
            f"({len(train_set)} conformations); lower --batch-size or add data"
        )
    if len(val_set) == 0:
        raise DenoisepotError(
            f"the validation split is empty; raise --val-fraction ({config.val_fraction}) "
            "or add data"
        )
    if is_zero:
        write_json_atomic(out / RUN_FILE, plan["identity"])
        save_splits(out / SPLIT_FILE, splits)
        provenance = [store_provenance(s, Path(src))
                      for s, src in zip(stores, plan["sources"], strict=True)]
        elements = elements_seen(stores)

    torch.manual_seed(config.seed)
    backbone = build_backbone(config.backbone, **config.backbone_hparams)
    head = build_noise_head(backbone, config.noise_head)
    centre = head.kind == "gradient" if config.centre_noise is None else config.centre_noise
    target_sigma = config.sigma_angstrom if config.normalise_target else None
    module = DenoisingModel(backbone, head)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = warmup_plateau_cosine(
        optimizer,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        plateau_steps=round(config.plateau_epochs * steps_per_epoch),
        min_lr=config.min_lr,
    )
    counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "conformations_seen": 0,
                "best_val_loss": math.inf, "seconds": 0.0}
    history: list[dict[str, float]] = []
    state = load_training_state(Path(plan["resume_state"])) if plan["resume_state"] else None
    if state is not None:
        module.load_state_dict(state["model"])
        counters.update(state["counters"])
        history = list(state["history"])
    model, optimizer = fabric.setup(module, optimizer)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])

    loggers = _make_loggers(out) if is_zero else []
    started = time.perf_counter()
    seconds_before = counters["seconds"]
    last_state_time = started
    steps_since_state = 0

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def write_state(epoch: int, step_in_epoch: int) -> None:
        counters.update(epoch=epoch, step_in_epoch=step_in_epoch, seconds=elapsed())
        save_training_state(out / STATE_FILE, {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "counters": dict(counters),
            "history": history,
        })

    def checkpoint_payload(val_loss: float, baseline: float) -> dict[str, Any]:
        return {
            "backbone": backbone_to_dict(module.backbone),
            "noise_head": noise_head_to_dict(module.head),
            "objective": {
                "sigma_angstrom": config.sigma_angstrom,
                "centre_target": centre,
                "normalise_target": config.normalise_target,
                "noise": "independent N(0, sigma^2) on every coordinate",
                "loss": "squared error summed over x, y, z; mean over atoms",
            },
            "data": provenance,
            "split": {
                "file": os.fspath(out / SPLIT_FILE),
                "method": "within molecules",
                "fractions": [1.0 - config.val_fraction, config.val_fraction],
                "seed": config.seed,
                "n_train": [int(s.train.size) for s in splits],
                "n_val": [int(s.val.size) for s in splits],
            },
            "seed": config.seed,
            "elements": elements,
            "units": {"length": "Angstrom", "sigma": "Angstrom",
                      "loss": "dimensionless" if config.normalise_target else "Angstrom^2"},
            "training": {
                "epoch": counters["epoch"], "epochs": config.epochs,
                "global_step": counters["global_step"],
                "conformations_seen": counters["conformations_seen"],
                "val_loss": val_loss, "val_baseline": baseline,
                "best_val_loss": counters["best_val_loss"],
                "batch_size": batch_size, "lr": config.lr,
                "weight_decay": config.weight_decay, "warmup_epochs": config.warmup_epochs,
                "plateau_epochs": config.plateau_epochs, "min_lr": config.min_lr,
                "seconds": elapsed(), "processes": world,
            },
            "versions": {"denoisepot": str(__version__), "torch": str(torch.__version__)},
        }

    def validate() -> tuple[float, float]:
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=fabric.device)
        batches = validation_batches(len(val_set), max(1, batch_size // world), rank=rank,
                                     world_size=world)
        with torch.no_grad():
            for batch in iterate(val_set, batches, config.num_workers):
                batch = batch.to(fabric.device)
                noise = conformation_noise(batch.noise_key, batch.batch, config.sigma_angstrom,
                                           seed=config.seed, stream=VALIDATION_STREAM)
                predicted = model.module(batch.z, batch.pos + noise, batch.batch)
                sums[0] += denoising_loss(predicted, noise, batch.batch, centre=centre,
                                          sigma_angstrom=target_sigma, reduction="sum").double()
                sums[1] += predict_zero_baseline(noise, batch.batch, centre=centre,
                                                 sigma_angstrom=target_sigma,
                                                 reduction="sum").double()
                sums[2] += batch.num_nodes
        sums = fabric.all_reduce(sums, reduce_op="sum")
        model.train()
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def log(metrics: dict[str, float]) -> None:
        for logger in loggers:
            logger.log_metrics(metrics, step=counters["global_step"])

    # one process: SIGTERM ends the step and keeps it (several would each need to agree)
    stopping = sigterm_requests() if world == 1 else contextlib.nullcontext(lambda: False)
    with TrainingProgress(enabled=config.progress and is_zero) as progress, \
            stopping as stop_requested:
        if state is not None:
            progress.log(f"resuming {out} at epoch {counters['epoch'] + 1}, "
                         f"batch {counters['step_in_epoch']}")
        model.train()
        for epoch in range(counters["epoch"], config.epochs):
            start = counters["step_in_epoch"] if epoch == counters["epoch"] else 0
            batches = epoch_batches(len(train_set), batch_size, seed=config.seed, epoch=epoch,
                                    rank=rank, world_size=world, start=start)
            progress.start_epoch(f"epoch {epoch + 1}/{config.epochs}", steps_per_epoch, start)
            for step_in_epoch, batch in enumerate(
                    iterate(train_set, batches, config.num_workers), start=start + 1):
                batch = batch.to(fabric.device)
                noise = conformation_noise(batch.noise_key, batch.batch, config.sigma_angstrom,
                                           seed=config.seed, stream=epoch + 1)
                predicted = model(batch.z, batch.pos + noise, batch.batch)
                squared = denoising_loss(predicted, noise, batch.batch, centre=centre,
                                         sigma_angstrom=target_sigma, reduction="sum")
                # one collective: the batch's atom count over all processes, so that the
                # averaged gradients are those of the global per-atom mean
                totals = torch.stack([squared.detach().double(),
                                      torch.tensor(float(batch.num_nodes), dtype=torch.float64,
                                                   device=fabric.device)])
                totals = fabric.all_reduce(totals, reduce_op="sum")
                loss = squared * (world / totals[1]).to(squared.dtype)
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                optimizer.step()
                scheduler.step()
                counters["global_step"] += 1
                counters["conformations_seen"] += batch_size
                train_loss = float(totals[0] / totals[1])
                rate = progress.step(train_loss, batch_size)
                if counters["global_step"] % config.log_every_n_steps == 0:
                    log({"train/loss": train_loss, "train/lr": scheduler.get_last_lr()[0],
                         "train/conformations_per_s": rate, "epoch": epoch})
                steps_since_state += 1
                if is_zero and (
                        steps_since_state >= config.state_every_n_steps
                        or time.perf_counter() - last_state_time >= config.state_every_seconds):
                    write_state(epoch, step_in_epoch)
                    steps_since_state, last_state_time = 0, time.perf_counter()
                if stop_requested():
                    write_state(epoch, step_in_epoch)
                    for logger in loggers:
                        logger.save()
                    raise Terminated()
            val_loss, baseline = validate()
            counters["epoch"], counters["step_in_epoch"] = epoch + 1, 0
            improved = val_loss < counters["best_val_loss"]
            if improved:
                counters["best_val_loss"] = val_loss
            history.append({"epoch": epoch + 1, "global_step": counters["global_step"],
                             "val_loss": val_loss, "val_baseline": baseline,
                             "lr": scheduler.get_last_lr()[0]})
            log({"val/loss": val_loss, "val/baseline": baseline, "epoch": epoch})
            progress.log(f"epoch {epoch + 1}: validation loss {val_loss:.5g} "
                         f"(predict-zero baseline {baseline:.5g})")
            if is_zero:
                payload = checkpoint_payload(val_loss, baseline)
                if improved:
                    save_pretrain_checkpoint(out / BEST_FILE, payload)
                save_pretrain_checkpoint(out / LAST_FILE, payload)
                write_state(epoch + 1, 0)
                steps_since_state, last_state_time = 0, time.perf_counter()
                for logger in loggers:
                    logger.save()
            fabric.barrier()
    for logger in loggers:
        logger.finalize("success")
    final = history[-1]
    return PretrainResult(
        out=out,
        best_checkpoint=out / BEST_FILE,
        last_checkpoint=out / LAST_FILE,
        final_val_loss=final["val_loss"],
        best_val_loss=counters["best_val_loss"],
        baseline_val_loss=final["val_baseline"],
        conformations_seen=counters["conformations_seen"],
        seconds=elapsed(),
        history=history,
        global_rank=rank,
    )

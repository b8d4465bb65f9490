"""Runs a comparison: pretraining once per backbone and σ, then the pretrained and the
from-scratch fine-tunings with identical settings and seeds, skipping finished runs.

Runs go to worker processes, one single-threaded run per core: for molecules of a few dozen
atoms one thread per run is far faster than several threads per run, and from-scratch
fine-tunings need no pretraining, so they fill the cores while pretraining runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datagen.generate import default_workers
from ..engine.runfile import FINETUNE_ADDED_LATER
from ..engine.stopping import sigterm_raises, stop_pool
from ..errors import DenoisepotError
from .config import CompareConfig, identity_hash
from .data import ComparisonData, FinetuneSet, prepare_data
from .manifest import Manifest

RUNS_DIR = "runs"
#: conformations of each fine-tuning dataset (evenly spaced) on which every pretrained
#: denoiser's alignment with the reference forces is measured
ALIGNMENT_CONFORMATIONS = 1000


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
    alignments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Job:
    """One pretraining or fine-tuning run: its name (settings hash included), the engine
    configuration, what the report needs to know, and the pretraining it waits for."""

    name: str
    kind: str
    config: Any
    meta: dict[str, Any]
    after: str | None = None
    waiting: list[Job] = field(default_factory=list)
    #: a finished fine-tuning with a lower epoch cap that this one continues (see
    #: :func:`_lower_cap_run`)
    extends: str | None = None


#: settings added after comparisons were first made, with the value that reproduces the runs
#: made before they existed: left out of a run's identity at that value, so those runs resume
#: (train_subset and head_shift changed their defaults; _finetune_job keeps names for them
#: where the old and new values compute the same)
_ADDED_LATER = {key: value for key, value in FINETUNE_ADDED_LATER.items()
                if key not in ("train_subset", "head_shift")}


def _settings(run_config: Any, **replace: Any) -> dict[str, Any]:
    """The settings that define a run (no output folder or display switches)."""
    values = {f.name: getattr(run_config, f.name) for f in dataclasses.fields(run_config)}
    for key in ("out", "out_dir", "progress", "progress_bar", "resume", "overwrite"):
        values.pop(key, None)
    for key, default in _ADDED_LATER.items():
        if key in values and values[key] == default:
            del values[key]
    values.update(replace)
    return values


#: how a path inside the comparison's folder enters a run's identity
OUT_MARK = "$OUT"


def _portable(settings: dict[str, Any], root: Path) -> dict[str, Any]:
    """``settings`` with every path inside ``root`` (the comparison's folder: its converted,
    generated and partitioned stores) written relative to it, so that a copied or moved
    comparison keeps its run names and reuses its runs."""
    base = Path(os.path.abspath(root))

    def portable(value: Any) -> Any:
        if isinstance(value, Path):
            try:
                inside = Path(os.path.abspath(value)).relative_to(base)
            except ValueError:
                return value
            return f"{OUT_MARK}/{inside.as_posix()}"
        if isinstance(value, list | tuple) and value and all(isinstance(v, Path) for v in value):
            return [portable(v) for v in value]
        return value

    return {key: portable(value) for key, value in settings.items()}


def _run_name(prefix: str, settings: dict[str, Any], root: Path,
              finished: Collection[str]) -> str:
    """``prefix`` and the hash of the run's settings, paths inside ``root`` relative to it.
    A comparison made before names were portable named its runs by the absolute paths: where
    such a run has finished and the portable name has not, the old name is kept (it resumes)."""
    name = f"{prefix}-{identity_hash(_portable(settings, root))}"
    legacy = f"{prefix}-{identity_hash(settings)}"
    return legacy if legacy in finished and name not in finished else name


def _lower_cap_run(prefix: str, settings: dict[str, Any], root: Path,
                   finished: Mapping[str, dict[str, Any]]) -> str | None:
    """The finished fine-tuning whose settings are ``settings`` but for a lower epoch cap, the
    highest such cap where there are several; None where there is none. Only for the
    ``plateau`` schedule: nothing there depends on the cap before it is reached, so the run
    with the higher cap is that run continued (ended by early stopping: the same run; at its
    cap: trained on from its last epoch), which the fine-tuning engine does on resume."""
    if settings.get("lr_schedule") != "plateau" or settings.get("epochs") is None:
        return None
    best: tuple[int, str] | None = None
    for name, record in finished.items():
        cap = record.get("epoch_cap")
        if (not name.startswith(f"{prefix}-") or not isinstance(cap, int)
                or cap >= settings["epochs"] or (best is not None and cap <= best[0])):
            continue
        lower = {**settings, "epochs": cap}
        if name in (f"{prefix}-{identity_hash(_portable(lower, root))}",
                    f"{prefix}-{identity_hash(lower)}"):
            best = (cap, name)
    return None if best is None else best[1]


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (taken as alive where that cannot be told)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_abandoned_copies(target: Path) -> None:
    """Remove the half-made copies for ``target`` left by comparisons stopped while copying
    (named by their process id; a copy whose process still runs is left to it)."""
    for path in target.parent.glob(f".{target.name}.*.tmp"):
        pid = path.name[len(target.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _start_from_lower_cap(job: Job, runs: Path) -> None:
    """Give ``job`` a copy of the folder of the run it continues (unless it has its own
    already: an interrupted continuation resumes from there). The copy is made beside it
    and renamed into place, so a half-made folder is never taken for a run; copies a
    stopped comparison left half-made are removed."""
    if job.extends is None:
        return
    target = job.config.out_dir
    _remove_abandoned_copies(target)
    if target.exists():
        return
    source = runs / job.extends
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp)  # another comparison sharing the folder made it first


def _best_checkpoint(pretrain: Job) -> Path:
    """Where pretraining ``pretrain``'s best checkpoint is now (in its run folder)."""
    from ..engine.pretrain import BEST_FILE

    return pretrain.config.out / BEST_FILE


@functools.lru_cache(maxsize=64)
def _molecule_count(store: Path) -> int:
    from molgraph_data import Store

    with Store(store) as opened:
        return int(opened.n_molecules)


def _finetune_job(
    config: CompareConfig,
    runs: Path,
    backbone: str,
    hparams: dict[str, Any],
    dataset: FinetuneSet,
    size: int,
    seed: int,
    row: str,
    parent: Job | None,
    progress: bool,
    finished: Collection[str] | Mapping[str, dict[str, Any]] = (),
) -> Job:
    """The fine-tuning of ``row`` ("scratch", or "pretrained" from ``parent``'s checkpoint).
    Given the manifest's records as ``finished``, a run not finished that continues one with
    a lower epoch cap names it (see :func:`_lower_cap_run`)."""
    from ..engine.finetune_config import FinetuneConfig

    checkpoint = None if parent is None else _best_checkpoint(parent)
    finetune = FinetuneConfig(
        out_dir=Path("."),
        data=dataset.store,
        init_checkpoint=checkpoint,
        backbone=None if parent is not None else backbone,
        backbone_hparams={} if parent is not None else hparams,
        protocol=config.protocol,
        epochs=config.epoch_cap(size),
        patience=config.patience_for(size),
        val_every=config.val_every_for(size),
        forces=config.forces,
        force_weight=config.force_weight,
        split=dataset.split,
        # only an official split of train/test files holds validation out of the train file
        val_fraction=(
            config.val_fraction if dataset.split == "official" else FinetuneConfig.val_fraction
        ),
        train_size=size,
        batch_size=config.finetune_batch_size,
        lr=config.finetune_lr,
        warmup_steps=config.warmup_steps,
        lr_schedule=config.lr_schedule,
        head_init="new" if parent is None else config.pretrained_head,
        head_shift=config.head_shift,
        validate_start=config.validate_start,
        seed=seed,
        progress_bar=progress,
        # an interrupted run (killed, Ctrl-C, SIGTERM from a scheduler) continues from its
        # last finished epoch and ends where it would have; its folder's name holds its
        # settings, and a folder whose recorded settings differ is refused, not overwritten
        resume=True,
    )
    parent_name = None if parent is None else parent.name
    settings = _settings(
        finetune, init_checkpoint=parent_name, backbone=backbone, backbone_hparams=hparams
    )
    if _molecule_count(dataset.store) == 1:
        # one molecule: the stratified draw is the random one and a shift per element is one
        # per atom, so runs made before these choices existed keep their names
        settings.pop("train_subset")
        settings.pop("head_shift")
    elif finetune.head_init == "new" or finetune.head_shift == "atom":
        settings.pop("head_shift")  # unused, or what runs did before the choice existed
    sigma = None if parent is None else parent.meta["sigma"]
    label = row if sigma is None else f"{row}-sigma{sigma:g}"
    if parent is not None and config.pretrained_head != "new":
        label += f"-head{config.pretrained_head}"
    prefix = f"finetune-{dataset.name}-{backbone}-{label}-n{size}-seed{seed}"
    name = _run_name(prefix, settings, config.out, finished)
    extends = None
    if isinstance(finished, Mapping) and name not in finished:
        extends = _lower_cap_run(prefix, settings, config.out, finished)
        if extends is not None and not (runs / extends / "lightning" / "last.ckpt").is_file():
            extends = None  # its folder is gone (a manifest copied alone): train anew
    return Job(
        name,
        "finetune",
        dataclasses.replace(finetune, out_dir=runs / name),
        {
            "dataset": dataset.name,
            "backbone": backbone,
            "row": row,
            "sigma": sigma,
            "train_size": size,
            "seed": seed,
            "pretrain_run": parent_name,
        },
        after=parent_name,
        extends=extends,
    )


def plan_jobs(
    config: CompareConfig,
    data: ComparisonData,
    progress: bool,
    finished: Collection[str] | Mapping[str, dict[str, Any]] = (),
) -> list[Job]:
    """Every run of the comparison: per backbone the pretraining per σ, then per fine-tuning
    dataset, seed and training size one from-scratch and one pretrained fine-tuning per σ.
    ``finished`` names the runs the manifest holds (see :func:`_run_name`), or maps them to
    their records (then a run can continue one with a lower cap: :func:`_lower_cap_run`)."""
    from equivariant_backbones import backbone_class

    from ..engine.pretrain_config import PretrainConfig

    runs = config.out / RUNS_DIR
    jobs: list[Job] = []
    for backbone in config.backbones:
        hparams = config.hparams(backbone)
        # a noise head that is the backbone's own default is the default run (same identity)
        noise_head = config.noise_head
        if noise_head == backbone_class(backbone).default_noise_head:
            noise_head = None
        pretrain_jobs: dict[float, Job] = {}
        for sigma in config.sigmas:
            pretrain = PretrainConfig(
                backbone=backbone,
                out=Path("."),
                data=list(data.pretrain_stores),
                sigma_angstrom=sigma,
                epochs=config.pretrain_epochs,
                batch_size=config.pretrain_batch_size,
                lr=config.pretrain_lr,
                seed=0,
                noise_head=noise_head,
                backbone_hparams=hparams,
                progress=progress,
                resume=True,
            )
            head = "" if noise_head is None else f"-{noise_head}"
            name = _run_name(f"pretrain-{backbone}-sigma{sigma:g}{head}",
                             _settings(pretrain), config.out, finished)
            job = Job(
                name,
                "pretrain",
                dataclasses.replace(pretrain, out=runs / name),
                {
                    "backbone": backbone,
                    "sigma": sigma,
                    "epochs": config.pretrain_epochs,
                    "noise_head": noise_head or backbone_class(backbone).default_noise_head,
                },
            )
            pretrain_jobs[sigma] = job
            jobs.append(job)
        for dataset in data.finetune:
            for seed in config.seeds:
                for size in config.train_sizes:
                    rows: list[tuple[str, Job | None]] = [("scratch", None)]
                    rows += [("pretrained", pretrain_jobs[sigma]) for sigma in config.sigmas]
                    for row, parent in rows:
                        jobs.append(
                            _finetune_job(
                                config,
                                runs,
                                backbone,
                                hparams,
                                dataset,
                                size,
                                seed,
                                row,
                                parent,
                                progress,
                                finished,
                            )
                        )
    return jobs


def run_job(kind: str, run_config: Any, meta: dict[str, Any], threads: int | None) -> dict:
    """Run one pretraining or fine-tuning and return its record for the manifest (errors
    in eV and eV/Å, times in s). A user error comes back as a DenoisepotError with the same
    one-line message (some error types cannot cross a process boundary intact)."""
    from ..errors import user_error_types

    try:
        return _run_job(kind, run_config, meta, threads)
    except user_error_types() as exc:
        raise DenoisepotError(str(exc)) from None


def _run_job(kind: str, run_config: Any, meta: dict[str, Any], threads: int | None) -> dict:
    import torch

    from ..engine.finetune import run_finetuning
    from ..engine.pretrain import run_pretraining

    if threads is not None:
        torch.set_num_threads(threads)
        # after the imports: Lightning sets its own log level when it loads
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if kind == "pretrain":
        result = run_pretraining(run_config)
        return {
            **meta,
            "seconds": result.seconds,
            "conformations_seen": result.conformations_seen,
            "best_val_loss": result.best_val_loss,
            "final_val_loss": result.final_val_loss,
            "baseline_val_loss": result.baseline_val_loss,
            "checkpoint": str(result.best_checkpoint),
        }
    result = run_finetuning(run_config)
    return {
        **meta,
        "test": result.test_metrics.as_dict(),
        "val": result.val_metrics.as_dict(),
        "baseline": result.baseline_metrics.as_dict(),
        "epochs_run": result.epochs_run,
        "epoch_cap": run_config.epochs,
        "patience": run_config.patience,
        "val_every": run_config.val_every,
        "best_epoch": result.best_epoch,
        "lr_at_floor": result.lr_at_floor,
        "seconds": result.seconds,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "n_test": result.n_test,
        "used_forces": result.used_forces,
        **({} if result.start_metrics is None else {"start": result.start_metrics.as_dict()}),
    }


def _worker_init() -> None:
    """One OpenMP thread per worker (set before torch loads)."""
    os.environ["OMP_NUM_THREADS"] = "1"


def _check_train_sizes(config: CompareConfig, dataset: FinetuneSet) -> None:
    """Record how many training conformations the dataset's split offers; refuse sizes above."""
    from ..engine.finetune import make_split

    split = make_split(
        dataset.store, dataset.split, seed=config.seeds[0], val_fraction=config.val_fraction
    )
    dataset.available_train = int(split["train"].size)
    dataset.validation = int(split["val"].size)
    dataset.test = int(split["test"].size)
    if max(config.train_sizes) > dataset.available_train:
        raise DenoisepotError(
            f"{dataset.store}: --train-sizes {max(config.train_sizes)} is more than the "
            f"{dataset.available_train} training conformations of its {dataset.split} split; "
            "use smaller sizes or more data"
        )


def _execute(jobs: list[Job], workers: int, finished: Callable[[Job, dict], None]) -> None:
    """Run ``jobs`` (already topologically ordered: pretraining before its fine-tunings)
    in-process (one worker) or in a pool, calling ``finished`` as each completes."""
    if workers == 1:
        for job in jobs:
            finished(job, run_job(job.kind, job.config, job.meta, None))
        return
    names = {job.name for job in jobs}
    ready = [job for job in jobs if job.after is None or job.after not in names]
    by_name = {job.name: job for job in jobs}
    for job in jobs:
        if job.after is not None and job.after in names:
            by_name[job.after].waiting.append(job)
    # longest first: pretraining, then fine-tunings by training size
    ready.sort(key=lambda j: (j.kind != "pretrain", -j.meta.get("train_size", 0)))
    context = multiprocessing.get_context("spawn")
    # SIGTERM's default would end this process alone and leave the workers training on,
    # their results never recorded: raise instead, so that _run_pool stops them
    with sigterm_raises():
        _run_pool(ready, workers, finished, context)


def _run_pool(
    ready: list[Job], workers: int, finished: Callable[[Job, dict], None], context: Any
) -> None:
    """Run the ``ready`` jobs, and those waiting on them as they finish, in a pool of
    ``workers`` processes."""
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
    running: dict[Future, Job] = {}
    try:
        while ready or running:
            while ready and len(running) < workers:
                job = ready.pop(0)
                running[pool.submit(run_job, job.kind, job.config, job.meta, 1)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                finished(job, future.result())
                ready.extend(job.waiting)
                ready.sort(key=lambda j: -j.meta.get("train_size", 0))
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM) or a run failed: stop the other runs now rather than
        # wait for them, and see them gone before returning; the manifest keeps every finished
        # run and a rerun continues from there
        stop_pool(pool)
        raise
    pool.shutdown()


def _paths(value: Any) -> list[Path]:
    """A path or a list of paths as a list of Paths."""
    if isinstance(value, str | os.PathLike):
        return [Path(value)]
    return [Path(v) for v in value]


def run_compare(config: CompareConfig, *, command: str | None = None) -> CompareResult:
    """Run (or continue) the comparison described by ``config``; write ``report.md``,
    ``results.csv`` and the plots into ``config.out`` and return what was produced."""
    from molgraph_data.units import EV_IN_KCAL_PER_MOL
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .report import write_outputs

    config = dataclasses.replace(
        config,
        out=Path(config.out),
        pretrain_data=_paths(config.pretrain_data),
        finetune_data=_paths(config.finetune_data),
    )
    config.check()
    console = Console(stderr=True, quiet=not config.progress)
    config.out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config)
    for dataset in data.finetune:
        _check_train_sizes(config, dataset)
    manifest = Manifest(config.out)
    workers = config.workers or default_workers()
    jobs = plan_jobs(
        config, data, progress=config.progress and workers == 1, finished=dict(manifest.runs)
    )
    todo = [job for job in jobs if manifest.get(job.name) is None]
    workers = max(1, min(workers, len(todo)))
    extended = sum(job.extends is not None for job in todo)
    console.print(
        f"{len(jobs)} runs: {len(jobs) - len(todo)} finished earlier and reused, "
        f"{len(todo)} to run on {workers} worker(s)"
        + (f", {extended} of them continuing a run with a lower step cap" if extended else "")
    )
    for job in todo:
        _start_from_lower_cap(job, config.out / RUNS_DIR)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        console=console,
        disable=not config.progress or workers == 1,
    )

    with bar:
        task = bar.add_task("compare", total=len(todo))

        def finished(job: Job, record: dict) -> None:
            manifest.add(job.name, record)
            if job.kind == "finetune":
                mae = record["test"]["energy_mae"] * EV_IN_KCAL_PER_MOL
                summary = f"test energy MAE {mae:.3f} kcal/mol, {record['epochs_run']} epochs"
            else:
                summary = f"{record['seconds']:.0f} s"

            console.print(f"finished {job.name}: {summary}")
            bar.advance(task)

        _execute(todo, workers, finished)
    _fill_start_metrics(jobs, manifest)
    # the checkpoint where the run is now (the record has where it was written: a copied or
    # moved comparison would look in the old folder)
    pretrain_records = [
        {"run": j.name, **manifest.get(j.name), "checkpoint": str(_best_checkpoint(j))}
        for j in jobs
        if j.kind == "pretrain"
    ]
    finetune_records = [
        {"run": j.name, **manifest.get(j.name)} for j in jobs if j.kind == "finetune"
    ]
    alignments = denoiser_alignments(data, pretrain_records, manifest)
    report, results_csv, plots = write_outputs(
        config,
        data,
        pretrain_records,
        finetune_records,
        alignments=alignments,
        command=command,
    )
    return CompareResult(
        out=config.out,
        report=report,
        results_csv=results_csv,
        plots=plots,
        finetune_runs=finetune_records,
        pretrain_runs=pretrain_records,
        runs_executed=len(todo),
        runs_skipped=len(jobs) - len(todo),
        alignments=alignments,
    )


def _fill_start_metrics(jobs: list[Job], manifest: Manifest) -> None:
    """Give every finished run with a head from the denoiser its starting test errors (runs
    recorded before they were kept lack them): rebuilt without training, seconds per run."""
    from ..engine.finetune import denoiser_start_metrics

    for job in jobs:
        record = manifest.get(job.name)
        if (job.kind == "finetune" and job.config.head_init == "denoiser"
                and record is not None and "start" not in record):
            start = denoiser_start_metrics(job.config)
            manifest.add(job.name, {**record, "start": start.as_dict()})


def denoiser_alignments(
    data: ComparisonData, pretrain_records: list[dict[str, Any]], manifest: Manifest
) -> list[dict[str, Any]]:
    """For every pretrained backbone and every fine-tuning dataset: the denoiser's loss there,
    the alignment of its predicted noise with the reference forces where the data have them
    and a gradient head's corr(U, E) (see
    :mod:`denoisepot.engine.alignment`), on up to ``ALIGNMENT_CONFORMATIONS`` evenly spaced
    conformations; kept in the manifest so that a rerun does not measure them again."""
    import numpy as np
    from molgraph_data import Store

    from ..engine.alignment import denoiser_alignment

    records = []
    for dataset in data.finetune:
        with Store(dataset.store) as store:
            total = store.n_conformations
        if total == 0:
            continue
        indices = np.unique(
            np.linspace(0, total - 1, min(total, ALIGNMENT_CONFORMATIONS)).astype(np.int64)
        )
        for pretrain in pretrain_records:
            name = f"alignment-{pretrain['run']}-{dataset.name}"
            record = manifest.get(name)
            if record is None:
                result = denoiser_alignment(Path(pretrain["checkpoint"]), dataset.store, indices)
                record = {
                    "backbone": pretrain["backbone"],
                    "sigma": pretrain["sigma"],
                    "dataset": dataset.name,
                    "pretrain_run": pretrain["run"],
                    **result.as_dict(),
                }
                manifest.add(name, record)
            records.append(record)
    return records

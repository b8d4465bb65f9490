"""Fine-tuning engine: one recipe for the pretrained and the from-scratch rows.

``run_finetuning(FinetuneConfig(...))`` splits the store, fits per-element reference energies
on the training part, builds the potential (backbone from a pretraining checkpoint or fresh
from the registry; a new energy head either way), trains it with Lightning (AdamW, warmup /
plateau / cosine per batch or, with ``lr_schedule="plateau"``, warmup then halving after
validations without progress; energies and optionally forces), keeps the best-validation
checkpoint (kind "finetune"), evaluates it on the test part and writes ``results.csv`` (one
row per test conformation), ``metrics.json`` and ``split.npz`` into the output folder.

Data parallel (``devices * num_nodes`` processes): every process takes every
``world_size``-th batch of each epoch's shuffled order, the same number of steps each (the
last ``n_batches % world_size`` batches of an epoch are left out), and a disjoint share of the
validation set; the validation errors are summed over the processes, so they, early stopping
and the best checkpoint are those of the whole validation set, on every process. Only global
rank 0 evaluates the test part and writes the reports.

Resume: ``lightning/last.ckpt`` (weights, optimizer, schedule, loop counters, the best and
early-stopping state) is replaced atomically after every epoch; the data order of an epoch
depends on the seed and the epoch only, so a run killed at any moment and resumed ends where
an uninterrupted run ends. Under the ``plateau`` schedule a finished run may be resumed with a
higher epoch cap: it ends where a run given that cap from the start ends.

Units: Å, eV, eV/Å throughout; reports convert to kcal/mol and meV.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from equivariant_backbones import atomic_torch_save, load_checkpoint
from finetune_heads import (
    FINETUNE_FORMAT_VERSION,
    FINETUNE_KIND,
    EnergyHead,
    ErrorMetrics,
    MetricAccumulator,
    Potential,
    load_pretrained_backbone,
    parameter_groups,
    potential_to_checkpoint,
    set_backbone_trainable,
)
from lightning.pytorch.utilities.exceptions import SIGTERMException
from molgraph_data import (
    BatchIndexSampler,
    ReferenceEnergies,
    Store,
    fit_reference_energies,
    make_dataloader,
    official_split,
    split_by_molecule,
    split_within_molecules,
    stratified_subset,
    subset,
)
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..errors import DenoisepotError, Terminated
from .backbone_options import build_checked_backbone
from .finetune_config import (
    CONVERGED_EPOCH_CAP,
    HEAD_SHIFTS,
    PAPER_EPOCHS,
    PAPER_EPOCHS_DEFAULT,
    PLATEAU_FACTOR,
    PLATEAU_PATIENCE_SHARE,
    TRAIN_SUBSETS,
    FinetuneConfig,
    check_config,
    validations,
)
from .runfile import (
    FINETUNE_ADDED_LATER,
    RUN_FILE,
    check_same_settings,
    read_run_file,
    write_json_atomic,
)
from .schedule import reduce_on_plateau, warmup_linear, warmup_plateau_cosine

logger = logging.getLogger("denoisepot.finetune")


class _NoAdverts(logging.Filter):
    """Drops the "💡 Tip: try installing ..." notices Lightning logs on every Trainer: they
    advertise cloud services and tell a denoisepot user nothing about their run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def _hide_lightning_adverts() -> None:
    target = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in target.filters):
        target.addFilter(_NoAdverts())

BEST_CHECKPOINT = "best.pt"
RESULTS_CSV = "results.csv"
METRICS_JSON = "metrics.json"
SPLIT_NPZ = "split.npz"
_RESUME_DIR = "lightning"
RESUME_CHECKPOINT = f"{_RESUME_DIR}/last.ckpt"
#: files and folders that belong to a run (removed by ``overwrite``; ``data/`` is a cache of
#: converted release files)
RUN_ENTRIES = (BEST_CHECKPOINT, RESULTS_CSV, METRICS_JSON, SPLIT_NPZ, _RESUME_DIR, "logs",
               "parity.png", "error_histogram.png", RUN_FILE)
#: settings that do not change what a run computes (may differ when it is resumed)
_NOT_DEFINING = ("out_dir", "resume", "overwrite", "progress_bar", "num_workers",
                 "accelerator", "strategy")
#: smallest batch used for evaluation (no optimizer step, so larger batches are cheaper)
EVAL_BATCH_SIZE = 256


@dataclass
class FinetuneResult:
    """Outcome of a run: test errors in eV (eV/Å), the epochs used and where things are."""

    best_checkpoint: Path
    results_csv: Path
    test_metrics: ErrorMetrics
    val_metrics: ErrorMetrics
    baseline_metrics: ErrorMetrics
    epochs_run: int
    best_epoch: int
    seconds: float
    n_train: int
    n_val: int
    n_test: int
    used_forces: bool
    #: test errors of the potential fine-tuning started from, for a head from the denoiser
    #: (its scalar U scaled on the training labels, no optimizer step yet); else None
    start_metrics: ErrorMetrics | None = None
    #: whether every parameter group's learning rate had decayed to ``min_lr`` when training
    #: ended (the plateau schedule's floor: a run at its epoch cap then changes little more)
    lr_at_floor: bool = False


def resolve_store(data: Path | None, workdir: Path) -> Path:
    """The store to fine-tune on: ``data`` (a store, or a release file converted once into
    ``workdir``) or, when omitted, the built-in dataset."""
    from molgraph_data import ensure_store

    if data is None:
        from ..datagen import ensure_builtin_store

        return ensure_builtin_store()
    return ensure_store(data, workdir)


def make_split(
    store_path: Path,
    split: str,
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    val_fraction: float = 0.1,
    train_size: int | float | None = None,
    train_subset: str = "stratified",
) -> dict[str, np.ndarray]:
    """Train/val/test conformation indices of the store: ``conformation`` (within each
    molecule), ``molecule`` (unseen molecules) or ``official`` (the release's split), with the
    training part cut to ``train_size`` (count or fraction) by ``seed``: ``stratified`` keeps
    every molecule's share (at least one conformation each where the size allows), ``random``
    draws from all at once (the same for a single molecule)."""
    if train_subset not in TRAIN_SUBSETS:
        raise DenoisepotError(f"--train-subset {train_subset!r}: use one of {TRAIN_SUBSETS}")
    if split == "conformation":
        parts = split_within_molecules(store_path, fractions, seed)
    elif split == "molecule":
        parts = split_by_molecule(store_path, fractions, seed)
    else:
        parts = official_split(store_path, val_fraction, seed)
    if train_size is not None and train_subset == "stratified":
        with Store(store_path) as store:
            molecule = store.molecule_index[parts["train"]]
        parts["train"] = stratified_subset(parts["train"], molecule, train_size, seed)
    elif train_size is not None:
        parts["train"] = subset(parts["train"], train_size, seed)
    for name in ("train", "val", "test"):
        if name not in parts or parts[name].size == 0:
            raise DenoisepotError(
                f"{store_path}: the {split} split leaves no {name} conformations; use more "
                "data or another --split"
            )
    return {name: parts[name] for name in ("train", "val", "test")}


def check_elements_trained(store_path: Path, split: dict[str, np.ndarray]) -> None:
    """Raise DenoisepotError (one line) when validation or test conformations hold an element
    that no training conformation has: its reference energy would be unfitted (zero) and
    every such prediction off by the element's whole atomic energy. Reads one conformation
    per molecule (a molecule's composition is fixed)."""
    from ase.data import chemical_symbols

    with Store(store_path) as store:
        molecule = store.molecule_index
        first = np.unique(molecule, return_index=True)[1]
        block = store.read(first)
    atoms_of = np.split(block.z, np.cumsum(block.n_atoms)[:-1])
    elements = {int(m): set(z.tolist()) for m, z in zip(molecule[first], atoms_of, strict=True)}

    def present(indices: np.ndarray) -> set[int]:
        return set().union(*(elements[int(m)] for m in np.unique(molecule[indices])))

    missing = (present(split["val"]) | present(split["test"])) - present(split["train"])
    if missing:
        names = ", ".join(chemical_symbols[z] for z in sorted(missing))
        raise DenoisepotError(
            f"{store_path}: the validation or test conformations hold {names}, which no "
            "training conformation has, so its reference energy cannot be fitted; use a larger "
            "--train-size or another --split"
        )


def _paper_epochs(store: Store) -> int:
    formats = {source.get("format") for source in store.metadata.get("sources", [])}
    if formats and all(f in PAPER_EPOCHS for f in formats):
        return min(PAPER_EPOCHS[f] for f in formats)
    return PAPER_EPOCHS_DEFAULT


def _forces_of(batch: Any) -> torch.Tensor | None:
    return batch.forces if "forces" in batch else None


def steps_per_epoch(n_train: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps per epoch on each of ``world_size`` data-parallel processes: each takes
    every ``world_size``-th batch of the epoch and all take the same number (a step waits for
    every process's gradients), so the last ``n_batches % world_size`` batches of each epoch's
    shuffled order are left out; none on one process."""
    n_batches = -(-n_train // batch_size)
    if n_batches < world_size:
        raise DenoisepotError(
            f"{n_train} training conformations make {n_batches} batches of {batch_size}, fewer "
            f"than the {world_size} processes; lower --batch-size or use fewer --devices"
        )
    return n_batches // world_size


def validation_batch_size(n_val: int, batch_size: int, world_size: int = 1) -> int:
    """Conformations per validation batch: at most ``batch_size``, and small enough that each
    of ``world_size`` processes gets at least one batch (each must reach the all-reduce of the
    validation errors)."""
    if n_val < world_size:
        raise DenoisepotError(
            f"{n_val} validation conformations cannot be shared by {world_size} processes; "
            "use more data or fewer --devices"
        )
    return max(1, min(batch_size, n_val // world_size))


class FinetuneData(L.LightningDataModule):
    """Training and validation batches of the store's ``train`` and ``val`` conformations for
    one data-parallel process, made where Lightning knows its rank and the world size."""

    def __init__(
        self, store_path: Path, split: dict[str, np.ndarray], *, batch_size: int, seed: int,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.store_path = store_path
        self.train_indices = split["train"]
        self.val_indices = split["val"]
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    def train_loader(self, rank: int = 0, world_size: int = 1) -> Any:
        """Every ``world_size``-th batch (from ``rank``) of each epoch's order, which is
        shuffled by the seed and the epoch only."""
        return make_dataloader(self.store_path, self.train_indices, self.batch_size,
                               shuffle=True, seed=self.seed, num_workers=self.num_workers,
                               rank=rank, world_size=world_size)

    def val_loader(self, rank: int = 0, world_size: int = 1) -> Any:
        """This process's disjoint share of the validation conformations, in order."""
        size = validation_batch_size(self.val_indices.size, self.batch_size, world_size)
        return make_dataloader(self.store_path, self.val_indices, size, shuffle=False,
                               seed=self.seed, num_workers=self.num_workers, rank=rank,
                               world_size=world_size)

    def train_dataloader(self) -> Any:
        loader = self.train_loader(self.trainer.global_rank, self.trainer.world_size)
        # the order of the epoch the (possibly resumed) run starts with
        loader.batch_sampler.set_epoch(self.trainer.current_epoch)
        return loader

    def val_dataloader(self) -> Any:
        return self.val_loader(self.trainer.global_rank, self.trainer.world_size)


#: where a resume checkpoint keeps the ``plateau`` schedule's reduce-on-plateau state
PLATEAU_STATE_KEY = "denoisepot_plateau_scheduler"


class FinetuneModule(L.LightningModule):
    """Trains a :class:`Potential` on energies (eV) and optionally forces (eV/Å).

    Loss: mean squared energy error per molecule (eV²) plus ``force_weight`` times the mean
    squared force error per component ((eV/Å)²); the validation loss is the same quantity.
    """

    def __init__(
        self,
        potential: Potential,
        *,
        use_forces: bool,
        force_weight: float,
        lr: float,
        backbone_lr_factor: float,
        weight_decay: float,
        freeze_backbone_epochs: int,
        total_steps: int,
        warmup_steps: int,
        plateau_steps: int,
        min_lr: float,
        lr_schedule: str = "cosine",
        lr_patience: int = 0,
        start_val_loss: float | None = None,
    ) -> None:
        super().__init__()
        self.potential = potential
        self.potential.compute_forces = use_forces
        self.use_forces = use_forces
        self.force_weight = force_weight
        self.lr = lr
        self.backbone_lr_factor = backbone_lr_factor
        self.weight_decay = weight_decay
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self.schedule = {"total_steps": total_steps, "warmup_steps": warmup_steps,
                         "plateau_steps": plateau_steps, "min_lr": min_lr}
        self.lr_schedule = lr_schedule
        #: validations without a better loss before the ``plateau`` schedule halves the rate
        self.lr_patience = lr_patience
        #: the ``plateau`` schedule's reduce-on-plateau part, stepped by this module (see
        #: :meth:`on_validation_epoch_end`), and its state from a resume checkpoint until built
        self._plateau: ReduceLROnPlateau | None = None
        self._plateau_state: dict[str, Any] | None = None
        #: the validated start's loss (``validate_start``): the plateau's first best, as it is
        #: early stopping's, so that the rate halves on epochs that do not beat the start
        self.start_val_loss = start_val_loss
        self._val = MetricAccumulator()
        self.last_val_metrics: ErrorMetrics | None = None
        self.last_val_loss = math.nan

    def _loss(self, batch: Any, output: dict[str, torch.Tensor]) -> torch.Tensor:
        energy_error = (output["energy"] - batch.energy).to(torch.float32)
        loss = energy_error.pow(2).mean()
        if self.use_forces:
            loss = loss + self.force_weight * (output["forces"] - batch.forces).pow(2).mean()
        return loss

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Energies (eV) and, when trained on them, forces (eV/Å) of a collated batch."""
        return self.potential(batch.z, batch.pos, batch.batch, int(batch.num_graphs))

    def on_train_epoch_start(self) -> None:
        set_backbone_trainable(self.potential, self.current_epoch >= self.freeze_backbone_epochs)
        # Lightning calls set_epoch on a loader's sampler and on its batch sampler's sampler,
        # not on a batch sampler itself; this epoch's batches are drawn after this hook
        sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if isinstance(sampler, BatchIndexSampler):
            sampler.set_epoch(self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, self(batch))
        self.log("train_loss", loss, prog_bar=True, batch_size=int(batch.num_graphs))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = MetricAccumulator()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        output = self(batch)
        self._val.update(output["energy"], batch.energy, batch.n_atoms,
                         output.get("forces"), _forces_of(batch) if self.use_forces else None)

    def on_validation_epoch_end(self) -> None:
        totals = self._val.totals()
        if self.trainer.world_size > 1:
            # every process's sums and counts: the errors of the whole validation set
            totals = self.trainer.strategy.reduce(totals.to(self.device), reduce_op="sum")
        metrics = MetricAccumulator.from_totals(totals).compute()
        self.last_val_metrics = metrics
        val_loss = validation_loss(metrics, self.use_forces, self.force_weight)
        self.last_val_loss = val_loss
        # the values are the same on every process; sync_dist averages identical numbers
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=True)
        self.log("val_energy_mae_ev", metrics.energy_mae, sync_dist=True)
        if self.use_forces:
            self.log("val_force_mae_ev_per_a", metrics.force_mae, sync_dist=True)
        if self._plateau is not None and not self.trainer.sanity_checking:
            # stepped here, not by Lightning after the epoch: Lightning's epoch-interval
            # schedulers step after the epoch's resume checkpoint is written, so a resumed run
            # would have lost the last epoch's count towards the next halving
            self._plateau.step(val_loss)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._plateau is not None:
            checkpoint[PLATEAU_STATE_KEY] = self._plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # most strategies restore the module before configure_optimizers builds the plateau;
        # those with restore_checkpoint_after_setup restore it after
        self._plateau_state = checkpoint.get(PLATEAU_STATE_KEY)
        if self._plateau is not None and self._plateau_state is not None:
            self._plateau.load_state_dict(self._plateau_state)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            parameter_groups(self.potential, self.lr, self.backbone_lr_factor),
            lr=self.lr, weight_decay=self.weight_decay,
        )
        if self.lr_schedule == "plateau":
            warmup = warmup_linear(optimizer, warmup_steps=self.schedule["warmup_steps"])
            self._plateau = reduce_on_plateau(
                optimizer, patience=self.lr_patience, factor=PLATEAU_FACTOR,
                min_lr=self.schedule["min_lr"])
            if self._plateau_state is not None:
                self._plateau.load_state_dict(self._plateau_state)
            elif self.start_val_loss is not None:
                self._plateau.best = self.start_val_loss
            # Lightning steps the warmup per batch; the plateau steps after each validation
            return [optimizer], [{"scheduler": warmup, "interval": "step"}]
        scheduler = warmup_plateau_cosine(optimizer, **self.schedule)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def validation_loss(metrics: ErrorMetrics, use_forces: bool, force_weight: float) -> float:
    """The loss that selects checkpoints and stops training: the energy MSE (eV²) plus, with
    forces, ``force_weight`` times the force MSE per component ((eV/Å)²)."""
    loss = metrics.energy_rmse**2
    if use_forces:
        loss += force_weight * metrics.force_rmse**2
    return loss


class BestCheckpoint(L.Callback):
    """Writes the fine-tuned checkpoint (kind "finetune") whenever the validation loss
    improves; its state (best loss and epoch) is saved with Lightning's resume checkpoint."""

    def __init__(self, path: Path, extra: dict[str, Any]) -> None:
        self.path = path
        self.extra = extra
        self.best_loss = math.inf
        self.best_epoch = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        assert isinstance(pl_module, FinetuneModule)
        # the float64 loss over the whole validation set, the same on every process
        loss = pl_module.last_val_loss
        if not loss < self.best_loss:
            return
        self.best_loss, self.best_epoch = loss, trainer.current_epoch
        if trainer.is_global_zero:
            metrics = pl_module.last_val_metrics
            atomic_torch_save(
                potential_to_checkpoint(
                    pl_module.potential,
                    **self.extra,
                    epoch=trainer.current_epoch,
                    val_metrics_ev=None if metrics is None else metrics.as_dict(),
                ),
                self.path,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_loss = float(state_dict["best_loss"])
        self.best_epoch = int(state_dict["best_epoch"])


class AtomicCheckpointIO(L.pytorch.plugins.TorchCheckpointIO):
    """Lightning's checkpoint writer, but a checkpoint goes to a temporary file beside its
    path and is renamed into place, so a process killed while writing never leaves a
    truncated checkpoint where a good one was."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, os.fspath(path))


class ResumeCheckpoint(L.pytorch.callbacks.Checkpoint):
    """Saves Lightning's whole training state to ``path`` at the end of every training epoch
    (after validation and early stopping, so their state is in it). Remembers an early stop,
    so that resuming a stopped run trains no further, and the seconds the run had taken, so
    that a resumed run reports its whole time (``earlier_seconds`` plus this process's)."""

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started
        self.stopped = False
        self.earlier_seconds = 0.0

    def seconds(self) -> float:
        """The run's seconds so far, over every process that trained it."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped = bool(trainer.should_stop)
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopped:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped = bool(state_dict["stopped"])
        # checkpoints written before the time was kept count from the resume
        self.earlier_seconds = float(state_dict.get("seconds", 0.0))


#: force components of at most this many conformations are kept for the parity plot
PLOT_FORCE_CONFORMATIONS = 2000


@dataclass
class Predictions:
    """Per-conformation predictions on a set of conformations (eV; force MAE eV/Å) and a
    sample of force components (eV/Å) for plots."""

    table: dict[str, np.ndarray]
    forces_predicted: np.ndarray | None
    forces_reference: np.ndarray | None


@torch.no_grad()
def predict(
    potential: Potential,
    store_path: Path,
    indices: np.ndarray,
    *,
    batch_size: int = 256,
    with_forces: bool,
) -> tuple[ErrorMetrics, Predictions]:
    """Errors (eV, eV/Å) and per-conformation predictions of ``potential`` on the store's
    ``indices``: conf_id, mol_id, n_atoms, reference and predicted energy (eV), the energy
    without per-element reference energies, and with forces each conformation's force MAE."""
    potential.eval()
    potential.compute_forces = with_forces
    device = next(potential.parameters()).device
    reference_energies = potential.head.reference_energies_ev
    accumulator = MetricAccumulator()
    columns = ("conf_id", "mol_id", "n_atoms", "energy_ref_ev", "energy_pred_ev",
               "element_reference_ev", "force_mae_ev_per_a")
    rows: dict[str, list[np.ndarray]] = {k: [] for k in columns}
    force_pred: list[np.ndarray] = []
    force_ref: list[np.ndarray] = []
    kept = 0
    for batch in make_dataloader(store_path, indices, batch_size, shuffle=False, seed=0):
        batch = batch.to(device)
        num = int(batch.num_graphs)
        output = potential(batch.z, batch.pos, batch.batch, num)
        forces_ref = _forces_of(batch) if with_forces else None
        accumulator.update(output["energy"], batch.energy, batch.n_atoms,
                           output.get("forces"), forces_ref)
        element_sum = torch.zeros(num, dtype=torch.float64, device=device).index_add(
            0, batch.batch, reference_energies[batch.z])
        for key, value in (("conf_id", batch.conf_id), ("mol_id", batch.mol_id),
                           ("n_atoms", batch.n_atoms), ("energy_ref_ev", batch.energy),
                           ("energy_pred_ev", output["energy"]),
                           ("element_reference_ev", element_sum)):
            rows[key].append(value.cpu().numpy())
        if forces_ref is not None:
            per_atom = (output["forces"] - forces_ref).abs().sum(dim=1).double()
            per_conf = torch.zeros(num, dtype=torch.float64, device=device).index_add(
                0, batch.batch, per_atom)
            rows["force_mae_ev_per_a"].append((per_conf / (3 * batch.n_atoms)).cpu().numpy())
            if kept < PLOT_FORCE_CONFORMATIONS:
                force_pred.append(output["forces"].cpu().numpy().ravel())
                force_ref.append(forces_ref.cpu().numpy().ravel())
                kept += num
    table = {k: np.concatenate(v) for k, v in rows.items() if v}
    return accumulator.compute(), Predictions(
        table=table,
        forces_predicted=np.concatenate(force_pred) if force_pred else None,
        forces_reference=np.concatenate(force_ref) if force_ref else None,
    )


def write_results_csv(path: Path, table: dict[str, np.ndarray]) -> Path:
    """Write per-conformation predictions (energies eV, force MAE eV/Å) as CSV, atomically."""
    columns = [c for c in ("conf_id", "mol_id", "n_atoms", "energy_ref_ev", "energy_pred_ev",
                           "element_reference_ev", "force_mae_ev_per_a") if c in table]
    error = table["energy_pred_ev"] - table["energy_ref_ev"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, "energy_error_ev"])
        for i in range(error.size):
            row: list[Any] = [int(table[c][i]) for c in columns[:3]]
            row += [repr(float(table[c][i])) for c in columns[3:]]
            row.append(repr(float(error[i])))
            writer.writerow(row)
    tmp.replace(path)
    return path


def write_report_files(out_dir: Path, predictions: Predictions) -> dict[str, Path]:
    """``results.csv``, the parity plot and the error histogram of one evaluation in
    ``out_dir`` (plots in kcal/mol); returns their paths by name."""
    from molgraph_data.units import EV_IN_KCAL_PER_MOL

    from ..plots import error_histogram, parity_plot

    table = predictions.table
    has_forces = predictions.forces_reference is not None
    paths = {"results_csv": write_results_csv(out_dir / RESULTS_CSV, table)}
    # energies relative to the per-element reference energies: the part the model learns
    reference = table["energy_ref_ev"] - table["element_reference_ev"]
    predicted = table["energy_pred_ev"] - table["element_reference_ev"]
    paths["parity_png"] = parity_plot(
        out_dir / "parity.png", reference, predicted,
        forces_reference=predictions.forces_reference,
        forces_predicted=predictions.forces_predicted,
        energy_factor=EV_IN_KCAL_PER_MOL, energy_unit="kcal/mol",
        energy_label="energy − element references",
    )
    paths["histogram_png"] = error_histogram(
        out_dir / "error_histogram.png", predicted - reference,
        force_errors=(predictions.forces_predicted - predictions.forces_reference)
        if has_forces else None,
        energy_factor=EV_IN_KCAL_PER_MOL, energy_unit="kcal/mol",
    )
    return paths


def baseline_metrics(
    store_path: Path, indices: np.ndarray, per_element_ev: np.ndarray,
    residual_per_atom_mean_ev: float, with_forces: bool,
) -> ErrorMetrics:
    """Errors of the trivial model that predicts the reference energies plus the mean
    per-atom residual of the training data, and zero forces (eV, eV/Å)."""
    reference = torch.as_tensor(per_element_ev, dtype=torch.float64)
    accumulator = MetricAccumulator()
    for batch in make_dataloader(store_path, indices, 1024, shuffle=False, seed=0):
        per_atom = reference[batch.z] + residual_per_atom_mean_ev
        predicted = torch.zeros(int(batch.num_graphs), dtype=torch.float64).index_add(
            0, batch.batch, per_atom)
        forces_ref = _forces_of(batch) if with_forces else None
        accumulator.update(predicted, batch.energy, batch.n_atoms,
                           None if forces_ref is None else torch.zeros_like(forces_ref),
                           forces_ref)
    return accumulator.compute()


def build_potential(
    config: FinetuneConfig, reference: ReferenceEnergies, elements: list[int]
) -> Potential:
    """The potential to fine-tune: the pretrained backbone of ``config.init_checkpoint``
    (noise head dropped, unseen ``elements`` warned about) or a fresh ``config.backbone``,
    under a new energy head holding the reference energies (eV) and residual statistics.
    The head's initialisation depends on ``config.seed`` only, the same for both rows."""
    if config.init_checkpoint is not None:
        backbone = load_pretrained_backbone(config.init_checkpoint,
                                            finetune_elements=elements).backbone
    else:
        if config.backbone is None:
            raise DenoisepotError("give a pretraining checkpoint (--from) or a backbone name "
                                  "(--backbone)")
        torch.manual_seed(config.seed)
        backbone = build_checked_backbone(config.backbone, config.backbone_hparams)
    torch.manual_seed(config.seed + 1)
    head = EnergyHead(
        backbone.scalar_dim,
        hidden_features=config.head_hidden,
        readout=config.readout,
        reference_energies_ev=torch.from_numpy(reference.per_element_ev),
        residual_scale_ev=max(reference.residual_per_atom_std_ev, 1e-3),
        residual_shift_ev=reference.residual_per_atom_mean_ev,
    )
    return Potential(backbone, head)


def transfer_denoiser_head(
    potential: Potential, checkpoint: Path, store: Path, train: np.ndarray, *,
    use_forces: bool, shift: str = "element",
) -> tuple[float, dict[int, float]]:
    """Start the energy head from the pretrained denoiser's scalar ``U`` (its gradient noise
    head predicts the noise as -∂U/∂x̃; Tweedie's formula makes the ideal U = -(σ²/kT)·E up to
    a constant) and fit it to the training labels by least squares: E - Σ ref ≈ slope·U plus a
    shift per atom of each element (``shift="element"``) or one shift per atom (``"atom"``).
    Where the training forces are used the slope comes from them (E = slope·U, so
    F = -slope·∂U/∂x) and the shifts from the energies; energy-only, slope and shifts are fitted
    together. U's constant is arbitrary for each molecule (the denoising loss sees only its
    gradients), so on several compositions one per-atom shift cannot absorb it and drags the
    slope towards zero; with one composition the two choices are the same fit.
    Returns (slope, {element: shift per atom}) in eV; logged. Deterministic."""
    from equivariant_backbones import CheckpointError
    from finetune_heads import NUM_ELEMENT_SLOTS, load_denoiser_energy, scale_energy_head
    from molgraph_data import make_dataloader

    if shift not in HEAD_SHIFTS:
        raise DenoisepotError(f"--head-shift {shift!r}: use one of {HEAD_SHIFTS}")
    try:
        load_denoiser_energy(potential.head, checkpoint)
    except CheckpointError as exc:
        raise DenoisepotError(str(exc)) from None
    head = potential.head
    u_values, targets, compositions = [], [], []
    dot = norm = 0.0
    for batch in make_dataloader(store, train, EVAL_BATCH_SIZE, shuffle=False, seed=0):
        pos = batch.pos.clone().requires_grad_(use_forces)
        with torch.set_grad_enabled(use_forces):
            atom_u = head.mlp(potential.backbone(batch.z, pos, batch.batch).scalar).squeeze(-1)
            u = torch.zeros(int(batch.num_graphs), dtype=torch.float64).index_add(
                0, batch.batch, atom_u.double())
            if use_forces:
                (gradient,) = torch.autograd.grad(atom_u.sum(), pos)
                gradient = gradient.double()
                dot += float((gradient * batch.forces.double()).sum())
                norm += float((gradient * gradient).sum())
        reference = head.reference_energies_ev[batch.z]
        residual = batch.energy.double() - torch.zeros_like(u).index_add(0, batch.batch,
                                                                          reference)
        composition = torch.zeros(int(batch.num_graphs), NUM_ELEMENT_SLOTS, dtype=torch.float64)
        composition.index_put_((batch.batch, batch.z), torch.ones_like(reference),
                               accumulate=True)
        u_values.append(u.detach().numpy())
        targets.append(residual.numpy())
        compositions.append(composition.numpy())
    u_all, target, composition = (np.concatenate(v) for v in (u_values, targets, compositions))
    elements = np.nonzero(composition.any(axis=0))[0]
    counts = composition[:, elements]
    n = counts.sum(axis=1)
    slope = -dot / norm if use_forces and norm > 0.0 else None
    if shift == "atom" or np.unique(counts, axis=0).shape[0] == 1:
        if slope is None:
            (slope, per_atom), *_ = np.linalg.lstsq(np.stack([u_all, n], axis=1), target,
                                                    rcond=None)
        else:
            per_atom = ((target - slope * u_all) * n).sum() / (n * n).sum()
        slope, per_atom = float(slope), float(per_atom)
        scale_energy_head(head, slope, per_atom)
        shifts = {int(z): per_atom for z in elements}
    else:
        if slope is None:
            solution, *_ = np.linalg.lstsq(np.column_stack([u_all, counts]), target, rcond=None)
            slope, per_element = float(solution[0]), solution[1:]
        else:
            per_element, *_ = np.linalg.lstsq(counts, target - slope * u_all, rcond=None)
        scale_energy_head(head, slope, 0.0)
        with torch.no_grad():
            head.reference_energies_ev[torch.from_numpy(elements)] += torch.from_numpy(
                per_element)
        shifts = {int(z): float(value) for z, value in zip(elements, per_element, strict=True)}
    logger.info("energy head from the denoiser %s: E = Σ ref + %.4g eV · U + shifts per atom "
                "%s eV", checkpoint, slope, {z: round(v, 5) for z, v in shifts.items()})
    return slope, shifts


def _check_out_dir(config: FinetuneConfig) -> None:
    out = config.out_dir
    held = [name for name in RUN_ENTRIES if (out / name).exists()]
    if held and not (config.resume or config.overwrite):
        raise DenoisepotError(
            f"{out}: the output folder already holds a run ({', '.join(held)}); pass --resume "
            "to continue it, --overwrite to replace it, or choose another --out"
        )


def _prepare_out_dir(config: FinetuneConfig) -> None:
    out = config.out_dir
    if config.overwrite and not config.resume and out.exists():
        for name in RUN_ENTRIES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _check_or_record_settings(config: FinetuneConfig) -> bool:
    """Write the settings that define the run to ``run.json``; when resuming, refuse (one
    line naming them) settings that differ from the recorded ones, but for a higher epoch
    cap under the ``plateau`` schedule (:func:`_extends`), which is recorded instead.
    Returns whether the cap was raised."""
    settings = json.loads(json.dumps(
        {k: v for k, v in config.to_plain().items() if k not in _NOT_DEFINING}))
    path = config.out_dir / RUN_FILE
    if config.resume and path.is_file():
        recorded = read_run_file(path)
        extends = _extends(config, recorded)
        # a higher cap continues the run: everything else must be as recorded
        expected = {**settings, "epochs": recorded.get("epochs")} if extends else settings
        check_same_settings(path, expected, absent_means=FINETUNE_ADDED_LATER,
                            recorded=recorded)
        if extends:
            write_json_atomic(path, {**recorded, "epochs": settings["epochs"]})
        return extends
    write_json_atomic(path, settings)
    return False


def _restate_cap(best: Path, recipe: dict[str, Any]) -> None:
    """Give a continued run's best checkpoint, saved before its cap was raised, the new cap
    in its recipe (``epochs``, ``max_epochs``), as a run given that cap from the start has."""
    if not best.is_file():
        return
    payload = load_checkpoint(best, expected_kind=FINETUNE_KIND,
                              supported_versions=(FINETUNE_FORMAT_VERSION,))
    cap = {key: recipe[key] for key in ("epochs", "max_epochs")}
    if {key: payload["recipe"].get(key) for key in cap} != cap:
        atomic_torch_save({**payload, "recipe": {**payload["recipe"], **cap}}, best)


def _extends(config: FinetuneConfig, recorded: dict[str, Any]) -> bool:
    """Whether resuming with ``config`` raises the epoch cap of the run recorded as
    ``recorded`` under the ``plateau`` schedule. Nothing there depends on the cap before it is
    reached (unlike the cosine schedule's decay), so the run continues where it ended and ends
    where a run given the higher cap from the start would: one stopped early stays as it was,
    one that reached its cap trains on."""
    if config.lr_schedule != "plateau" or recorded.get("lr_schedule") != "plateau":
        return False
    old = recorded.get("epochs") or CONVERGED_EPOCH_CAP
    return (config.epochs or CONVERGED_EPOCH_CAP) > old


def _strategy(config: FinetuneConfig) -> Any:
    """DDP for several processes (unused parameters allowed: a frozen backbone, or backbone
    outputs the energy does not use); otherwise ``config.strategy`` as given."""
    processes = config.devices * config.num_nodes
    if config.strategy == "ddp" or (config.strategy == "auto" and processes > 1):
        return L.pytorch.strategies.DDPStrategy(find_unused_parameters=True)
    return config.strategy


def _log_version(config: FinetuneConfig) -> str:
    """The CSV log's subfolder of ``logs/``: none for a new run; for a resumed one the first
    free ``resumed-K`` (Lightning's CSV logger empties the folder it writes to, and the epochs
    before the interruption must stay readable)."""
    logs = Path(config.out_dir) / "logs"
    if not (config.resume and (logs / "metrics.csv").exists()):
        return ""
    k = 1
    while (logs / f"resumed-{k}").exists():
        k += 1
    return f"resumed-{k}"


def run_finetuning(config: FinetuneConfig) -> FinetuneResult | None:
    """Fine-tune (or train from scratch) as ``config`` says; returns the best checkpoint,
    its test metrics (eV, eV/Å), the epochs run and the wall time in seconds.

    With several data-parallel processes only global rank 0 checks and writes the output
    folder, evaluates the test part and returns the result; the other ranks train, then
    return None."""
    from molgraph_data import save_split

    started = time.perf_counter()
    check_config(config)
    if config.backbone is not None:  # a bad --hparam is refused before the folder is made
        build_checked_backbone(config.backbone, config.backbone_hparams)
    config.out_dir = Path(config.out_dir)
    store_path = resolve_store(config.data, config.out_dir / "data")

    with Store(store_path) as store:
        has_forces = store.has_forces
        elements = [int(e) for e in store.elements]
        paper_epochs = _paper_epochs(store)
        n_conformations = store.n_conformations
        sources = [{k: s.get(k) for k in ("path", "format", "level_of_theory")}
                   for s in store.metadata.get("sources", [])]
    use_forces = has_forces if config.forces is None else config.forces
    if use_forces and not has_forces:
        raise DenoisepotError(f"{store_path}: the data hold no forces; fine-tune with "
                              "--energy-only")
    split = _config_split(config, store_path)
    check_elements_trained(store_path, split)
    world_size = config.devices * config.num_nodes
    train_steps = steps_per_epoch(split["train"].size, config.batch_size, world_size)
    # a validation set too small for the processes is an error before the folder is touched
    validation_batch_size(split["val"].size, config.batch_size, world_size)
    if config.protocol == "paper":
        max_epochs = config.epochs or paper_epochs
        if max_epochs % config.val_every:
            raise DenoisepotError(
                f"--val-every {config.val_every} does not divide the paper protocol's "
                f"{max_epochs} epochs: its last epoch would not be validated"
            )
    else:
        # a cap rounded up to whole validations: the last epoch is validated
        max_epochs = config.val_every * validations(config.epochs or CONVERGED_EPOCH_CAP,
                                                    config.val_every)
    extra = {
        "recipe": {**config.to_plain(), "protocol": config.protocol, "max_epochs": max_epochs,
                   "used_forces": use_forces},
        "data": {"store": str(store_path), "n_conformations": n_conformations,
                 "sources": sources, "elements": elements,
                 "split_sizes": {k: int(v.size) for k, v in split.items()}},
        "pretrained_from": None if config.init_checkpoint is None else str(
            config.init_checkpoint),
        "seed": config.seed,
    }
    resume_checkpoint = config.out_dir / RESUME_CHECKPOINT
    resume_callback = ResumeCheckpoint(resume_checkpoint, started)
    callbacks: list[L.Callback] = [
        BestCheckpoint(config.out_dir / BEST_CHECKPOINT, extra),
        resume_callback,
        # the learning rate of every parameter group, in logs/metrics.csv
        L.pytorch.callbacks.LearningRateMonitor(logging_interval="step"),
    ]
    if config.protocol == "converged":
        callbacks.append(L.pytorch.callbacks.EarlyStopping(
            monitor="val_loss", patience=validations(config.patience, config.val_every),
            mode="min", check_finite=True))
    if config.progress_bar:
        callbacks.append(L.pytorch.callbacks.RichProgressBar(leave=False))
    _hide_lightning_adverts()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        check_val_every_n_epoch=config.val_every,
        limit_train_batches=train_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=_strategy(config),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        callbacks=callbacks,
        logger=L.pytorch.loggers.CSVLogger(config.out_dir, name="logs",
                                           version=_log_version(config)),
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,
        inference_mode=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, train_steps)),
        deterministic=False,
    )
    if trainer.world_size != world_size:
        raise DenoisepotError(
            f"the launcher runs {trainer.world_size} processes, but --devices × --num-nodes is "
            f"{world_size}; give the numbers the launcher uses"
        )
    if trainer.is_global_zero:
        # the other ranks (started by the first one when it begins training, or together
        # with it by a launcher) leave the folder to the first
        _check_out_dir(config)
        _prepare_out_dir(config)
        if _check_or_record_settings(config):
            _restate_cap(config.out_dir / BEST_CHECKPOINT, extra["recipe"])
        save_split(config.out_dir / SPLIT_NPZ, split)
    reference = fit_reference_energies(store_path, split["train"])

    L.seed_everything(config.seed, workers=True, verbose=False)
    potential = build_potential(config, reference, elements)
    start_metrics = None
    if config.head_init == "denoiser":
        transfer_denoiser_head(potential, config.init_checkpoint, store_path, split["train"],
                               use_forces=use_forces, shift=config.head_shift)
        if trainer.is_global_zero:
            start_metrics = _start_errors(potential, store_path, split["test"], config,
                                          has_forces)
    potential.compute_forces = use_forces
    start_val_loss = None
    if config.validate_start and not (config.resume and resume_checkpoint.is_file()):
        start_val_loss = _seed_with_start(potential, store_path, split["val"], config,
                                          use_forces, callbacks, write=trainer.is_global_zero)
    module = FinetuneModule(
        potential,
        use_forces=use_forces,
        force_weight=config.force_weight,
        lr=config.lr,
        backbone_lr_factor=config.backbone_lr_factor,
        weight_decay=config.weight_decay,
        freeze_backbone_epochs=config.freeze_backbone_epochs,
        total_steps=max_epochs * train_steps,
        warmup_steps=max(round(config.warmup_epochs * train_steps), config.warmup_steps),
        plateau_steps=round(config.plateau_epochs * train_steps),
        min_lr=config.min_lr,
        lr_schedule=config.lr_schedule,
        lr_patience=validations(max(1, config.patience // PLATEAU_PATIENCE_SHARE),
                                config.val_every),
        start_val_loss=start_val_loss,
    )
    data = FinetuneData(store_path, split, batch_size=config.batch_size, seed=config.seed,
                        num_workers=config.num_workers)
    try:
        trainer.fit(module, datamodule=data,
                    ckpt_path=resume_checkpoint if config.resume and resume_checkpoint.is_file()
                    else None,
                    weights_only=True)
    except SIGTERMException:
        # Lightning ends the fit at the step's end with exit status 0; the last finished
        # epoch is in the resume checkpoint
        raise Terminated() from None
    epochs_run = int(trainer.current_epoch)
    if not trainer.is_global_zero:
        return None
    lr_at_floor = bool(trainer.optimizers) and all(
        group["lr"] <= config.min_lr * (1.0 + 1e-6) for group in trainer.optimizers[0].param_groups)

    from finetune_heads import load_finetuned

    best_potential, payload = load_finetuned(config.out_dir / BEST_CHECKPOINT)
    val_metrics = ErrorMetrics(**payload["val_metrics_ev"])
    test_metrics, predictions = predict(best_potential, store_path, split["test"],
                                        batch_size=max(config.batch_size, EVAL_BATCH_SIZE),
                                        with_forces=has_forces)
    baseline = baseline_metrics(store_path, split["test"], reference.per_element_ev,
                                reference.residual_per_atom_mean_ev, has_forces)
    results_csv = write_report_files(config.out_dir, predictions)["results_csv"]
    seconds = resume_callback.seconds()
    result = FinetuneResult(
        best_checkpoint=config.out_dir / BEST_CHECKPOINT,
        results_csv=results_csv,
        test_metrics=test_metrics,
        val_metrics=val_metrics,
        baseline_metrics=baseline,
        epochs_run=epochs_run,
        best_epoch=int(payload["epoch"]),
        seconds=seconds,
        n_train=int(split["train"].size),
        n_val=int(split["val"].size),
        n_test=int(split["test"].size),
        used_forces=use_forces,
        start_metrics=start_metrics,
        lr_at_floor=lr_at_floor,
    )
    write_metrics_json(config.out_dir / METRICS_JSON, result)
    return result


def denoiser_start_metrics(config: FinetuneConfig) -> ErrorMetrics:
    """Test errors (eV, eV/Å) of the potential that a ``head_init="denoiser"`` run starts
    from, rebuilt from its settings without training: the same split, reference energies and
    least-squares scaling of the denoiser's U as :func:`run_finetuning` (deterministic), so a
    run finished before these were recorded can still report them."""
    if config.head_init != "denoiser" or config.init_checkpoint is None:
        raise DenoisepotError("the starting errors are those of a head from the denoiser: "
                              "give --from CKPT with --head-init denoiser")
    store_path = resolve_store(config.data, Path(config.out_dir) / "data")
    with Store(store_path) as store:
        has_forces = store.has_forces
        elements = [int(e) for e in store.elements]
    use_forces = has_forces if config.forces is None else config.forces
    split = _config_split(config, store_path)
    reference = fit_reference_energies(store_path, split["train"])
    potential = build_potential(config, reference, elements)
    transfer_denoiser_head(potential, config.init_checkpoint, store_path, split["train"],
                           use_forces=use_forces, shift=config.head_shift)
    return _start_errors(potential, store_path, split["test"], config, has_forces)


def _config_split(config: FinetuneConfig, store_path: Path) -> dict[str, np.ndarray]:
    """The run's train/val/test indices (:func:`make_split` with the config's settings)."""
    return make_split(store_path, config.split, seed=config.seed,
                      fractions=config.split_fractions, val_fraction=config.val_fraction,
                      train_size=config.train_size, train_subset=config.train_subset)


def _start_errors(potential: Potential, store_path: Path, test: np.ndarray,
                  config: FinetuneConfig, with_forces: bool) -> ErrorMetrics:
    """Test errors of ``potential`` before fine-tuning; the global random state, the
    training mode and whether forces are computed are left as they were (training continues
    from them)."""
    compute_forces = potential.compute_forces
    with torch.random.fork_rng(devices=[]):
        metrics = predict(potential, store_path, test,
                          batch_size=max(config.batch_size, EVAL_BATCH_SIZE),
                          with_forces=with_forces)[0]
    potential.train()
    potential.compute_forces = compute_forces
    return metrics


def _seed_with_start(potential: Potential, store_path: Path, val: np.ndarray,
                     config: FinetuneConfig, use_forces: bool, callbacks: list[L.Callback],
                     write: bool) -> float:
    """Validate the starting weights with the training's validation loss (energy MSE plus the
    weighted force MSE, eV units) and make them the best so far: ``best.pt`` (epoch -1, the
    report's epoch 0) and the best scores of :class:`BestCheckpoint` and early stopping; the
    loss is returned for the ``plateau`` schedule's best."""
    metrics = _start_errors(potential, store_path, val, config, use_forces)
    loss = validation_loss(metrics, use_forces, config.force_weight)
    for callback in callbacks:
        if isinstance(callback, BestCheckpoint):
            callback.best_loss, callback.best_epoch = loss, -1
            if write:
                atomic_torch_save(potential_to_checkpoint(
                    potential, **callback.extra, epoch=-1, val_metrics_ev=metrics.as_dict()),
                    callback.path)
        elif isinstance(callback, L.pytorch.callbacks.EarlyStopping):
            callback.best_score = torch.tensor(loss)
    return loss


def write_metrics_json(path: Path, result: FinetuneResult) -> Path:
    """Write the run's summary (errors in eV and eV/Å) as JSON."""
    summary: dict[str, Any] = {}
    for item in fields(result):
        value = getattr(result, item.name)
        if isinstance(value, ErrorMetrics):
            value = value.as_dict()
        elif isinstance(value, Path):
            value = str(value)
        summary[item.name] = value
    summary["units"] = {"energy": "eV", "forces": "eV/Angstrom"}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=True))
    tmp.replace(path)
    return path


@dataclass
class EvaluationResult:
    """Errors (eV, eV/Å) of a fine-tuned checkpoint on one part of a store, and its files."""

    metrics: ErrorMetrics
    split: str
    store: Path
    n_conformations: int
    files: dict[str, Path]


def evaluate_checkpoint(
    checkpoint: Path, data: Path | None, split: str, out_dir: Path, *, batch_size: int = 256
) -> EvaluationResult:
    """Evaluate the fine-tuned ``checkpoint`` on the ``split`` part (train, val, test; the
    split is rebuilt from the checkpoint's recipe) or ``all`` of ``data`` (default: the store
    it was trained on); writes results.csv, metrics.json and the plots into ``out_dir``."""
    from finetune_heads import load_finetuned

    potential, payload = load_finetuned(checkpoint)
    recipe = payload.get("recipe") or {}
    data_info = payload.get("data") or {}
    if data is None:
        if not data_info.get("store"):
            raise DenoisepotError(f"{checkpoint}: the checkpoint does not record its data; "
                                  "pass --data STORE")
        data = Path(data_info["store"])
    out_dir.mkdir(parents=True, exist_ok=True)
    store_path = resolve_store(data, out_dir / "data")
    with Store(store_path) as store:
        has_forces = store.has_forces
        n_conformations = store.n_conformations
    if split == "all":
        indices = np.arange(n_conformations, dtype=np.int64)
    elif split in ("train", "val", "test"):
        if data_info.get("n_conformations") != n_conformations or not recipe.get("split"):
            raise DenoisepotError(
                f"{store_path}: not the store {checkpoint} was fine-tuned on "
                f"({n_conformations} conformations, it recorded "
                f"{data_info.get('n_conformations')}), so its {split} split cannot be rebuilt; "
                "use --split all"
            )
        train_size = recipe.get("train_size")
        indices = make_split(
            store_path, recipe["split"], seed=int(recipe["seed"]),
            fractions=tuple(recipe["split_fractions"]), val_fraction=float(recipe["val_fraction"]),
            train_size=train_size,
            # checkpoints made before the choice existed drew their subsets at random
            train_subset=recipe.get("train_subset", "random"),
        )[split]
    else:
        raise DenoisepotError(f"unknown split {split!r}; choose train, val, test or all")
    metrics, predictions = predict(potential, store_path, indices, batch_size=batch_size,
                                   with_forces=has_forces)
    files = write_report_files(out_dir, predictions)
    summary = {"checkpoint": str(checkpoint), "store": str(store_path), "split": split,
               "n_conformations": int(indices.size), "metrics_ev": metrics.as_dict(),
               "units": {"energy": "eV", "forces": "eV/Angstrom"}}
    tmp = out_dir / f".{METRICS_JSON}.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    files["metrics_json"] = tmp.replace(out_dir / METRICS_JSON)
    return EvaluationResult(metrics=metrics, split=split, store=store_path,
                            n_conformations=int(indices.size), files=files)

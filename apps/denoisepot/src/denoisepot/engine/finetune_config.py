"""What defines a fine-tuning run: :class:`FinetuneConfig`, its choices and
:func:`check_config`.

Light to import (no torch, no Lightning), so that the CLI and ``compare`` refuse bad settings
in one line before paying for the training engine (:mod:`denoisepot.engine.finetune`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DenoisepotError

PROTOCOLS = ("paper", "converged")
#: the energy head's start: ``new`` (random, the same for both rows) or, for a pretrained
#: backbone with a gradient noise head, ``denoiser`` (the noise head's scalar U, scaled by least
#: squares on the training labels; see :func:`denoisepot.engine.finetune.transfer_denoiser_head`)
HEAD_INITS = ("new", "denoiser")
SPLITS = ("conformation", "molecule", "official")
#: how ``train_size`` conformations are drawn from the training part: ``stratified`` (every
#: molecule's share, at least one each where the size allows) or ``random`` (from all at once)
TRAIN_SUBSETS = ("stratified", "random")
#: the shifts fitted with the denoiser's U when ``head_init="denoiser"``: one per atom of each
#: element, or one per atom (the same fit when the training set has one composition)
HEAD_SHIFTS = ("element", "atom")
#: the learning rate over a run: ``cosine`` (warmup, plateau, cosine decay to the epoch cap;
#: the paper's) or ``plateau`` (warmup, then halved after ``patience // 4`` epochs without a
#: better validation loss; converged protocol only: early stopping then ends an annealed run
#: instead of one still at 60-95% of its peak rate)
LR_SCHEDULES = ("cosine", "plateau")
#: ``plateau`` schedule: the factor of each reduction and the share of ``patience`` it waits
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE_SHARE = 4
#: paper protocol: fixed epochs by source format (ANI: 10; SPICE, ISO17 and others: 50)
PAPER_EPOCHS = {"ani1": 10, "ani1x": 10}
PAPER_EPOCHS_DEFAULT = 50
#: converged protocol: epoch cap when none is given
CONVERGED_EPOCH_CAP = 500


def validations(epochs: int, val_every: int) -> int:
    """``epochs`` epochs counted in validations made every ``val_every`` epochs, rounded up:
    never a shorter wait than asked for, and ``val_every`` times it is the smallest epoch cap
    of at least ``epochs`` whose last epoch is validated."""
    return math.ceil(epochs / val_every)


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run; paths, Å, eV, eV/Å.

    Give ``init_checkpoint`` (a pretraining checkpoint: the pretrained row) or ``backbone``
    with ``backbone_hparams`` (the from-scratch row); all other settings are shared.
    ``epochs``: the fixed epoch count of the ``paper`` protocol (default by dataset) or the
    cap of the ``converged`` protocol (early stopping after ``patience`` epochs without a
    better validation loss). ``forces=None`` trains on forces where the data have them.
    ``train_size``: a count (int) or a fraction (float) of the training part, drawn by
    ``train_subset`` (see :data:`TRAIN_SUBSETS`). ``val_fraction``: with the ``official``
    split of data released as train and test files, the share of the train file held out
    for validation (0.05 on rMD17's 1,000 gives the field's 950 train / 50 validation).
    ``validate_start``: validate the starting weights too, so that the best-validation
    checkpoint may be the start (epoch 0: a head from the denoiser that training does not
    improve on is kept) and early stopping (and the ``plateau`` schedule's halving) counts
    from it. ``warmup_steps``: the learning
    rate's linear warmup lasts at least this many optimizer steps (``warmup_epochs`` alone
    is a step or two on a small training set). ``lr_schedule``: see :data:`LR_SCHEDULES`.
    ``val_every``: validate after every this many epochs (1: every epoch). Where one epoch is a
    few steps and the validation set is large (50 training conformations of many molecules),
    validating dominates a run; validating less often keeps ``patience`` and the ``plateau``
    schedule's wait in epochs (rounded up to whole validations) and rounds the epoch cap up to
    a whole number of validations, so that the last epoch is validated.
    """

    out_dir: Path
    data: Path | None = None
    init_checkpoint: Path | None = None
    backbone: str | None = None
    backbone_hparams: dict[str, Any] = field(default_factory=dict)
    protocol: str = "paper"
    epochs: int | None = None
    patience: int = 30
    forces: bool | None = None
    force_weight: float = 1.0
    split: str = "conformation"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    val_fraction: float = 0.1
    train_size: int | float | None = None
    train_subset: str = "stratified"
    batch_size: int = 256
    lr: float = 2e-4
    backbone_lr_factor: float = 1.0
    freeze_backbone_epochs: int = 0
    weight_decay: float = 0.0
    warmup_epochs: float = 0.3
    warmup_steps: int = 0
    plateau_epochs: float = 0.7
    min_lr: float = 1e-7
    lr_schedule: str = "cosine"
    readout: str = "per_atom"
    head_hidden: int | None = None
    head_init: str = "new"
    head_shift: str = "element"
    validate_start: bool = False
    val_every: int = 1
    seed: int = 0
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress_bar: bool = True
    resume: bool = False
    overwrite: bool = False

    def to_plain(self) -> dict[str, Any]:
        """The configuration as JSON-friendly plain data (paths as strings)."""
        plain = asdict(self)
        for key, value in plain.items():
            if isinstance(value, Path):
                plain[key] = str(value)
            elif isinstance(value, tuple):
                plain[key] = list(value)
        return plain


def check_lr_schedule(schedule: str, protocol: str) -> None:
    """Raise DenoisepotError (one line) unless ``schedule`` is one of :data:`LR_SCHEDULES`
    that ``protocol`` can run (``plateau`` needs early stopping: the converged protocol);
    shared by fine-tuning's and compare's checks."""
    if schedule not in LR_SCHEDULES:
        raise DenoisepotError(f"--lr-schedule {schedule!r}: use one of {LR_SCHEDULES}")
    if schedule == "plateau" and protocol != "converged":
        raise DenoisepotError("--lr-schedule plateau needs --protocol converged (early "
                              "stopping decides each run's length)")


def check_config(config: FinetuneConfig) -> None:
    """Raise DenoisepotError (one line naming the option) for settings that cannot run;
    cheap, so that the CLI refuses before it imports torch and Lightning."""
    if (config.init_checkpoint is None) == (config.backbone is None):
        raise DenoisepotError("give either a pretraining checkpoint (--from CKPT) or a backbone "
                              "name (--backbone NAME), not both or neither")
    if config.init_checkpoint is not None and config.backbone_hparams:
        raise DenoisepotError("--hparam applies to --backbone only; a pretrained backbone takes "
                              "its hyperparameters from the checkpoint")
    if config.head_init not in HEAD_INITS:
        raise DenoisepotError(f"--head-init {config.head_init!r}: use one of {HEAD_INITS}")
    if config.head_shift not in HEAD_SHIFTS:
        raise DenoisepotError(f"--head-shift {config.head_shift!r}: use one of {HEAD_SHIFTS}")
    if config.head_init == "denoiser" and config.init_checkpoint is None:
        raise DenoisepotError("--head-init denoiser starts the energy head from a pretrained "
                              "denoiser: give its checkpoint with --from")
    if config.protocol not in PROTOCOLS:
        raise DenoisepotError(f"unknown protocol {config.protocol!r}; choose one of {PROTOCOLS}")
    check_lr_schedule(config.lr_schedule, config.protocol)
    if config.split not in SPLITS:
        raise DenoisepotError(f"unknown split {config.split!r}; choose one of {SPLITS}")
    if config.train_subset not in TRAIN_SUBSETS:
        raise DenoisepotError(
            f"--train-subset {config.train_subset!r}: use one of {TRAIN_SUBSETS}"
        )
    if not 0.0 < config.val_fraction < 1.0:
        raise DenoisepotError(f"--val-fraction must be between 0 and 1, got {config.val_fraction}")
    if config.epochs is not None and config.epochs < 1:
        raise DenoisepotError(f"--epochs must be at least 1, got {config.epochs}")
    if config.force_weight < 0:
        raise DenoisepotError(f"--force-weight must be >= 0, got {config.force_weight}")
    if config.strategy not in ("auto", "ddp"):
        raise DenoisepotError(f"--strategy {config.strategy!r}: use auto or ddp")
    if config.devices < 1 or config.num_nodes < 1:
        raise DenoisepotError("--devices and --num-nodes must be at least 1")
    if config.warmup_steps < 0:
        raise DenoisepotError(f"--warmup-steps must be >= 0, got {config.warmup_steps}")
    if config.val_every < 1:
        raise DenoisepotError(f"--val-every must be at least 1, got {config.val_every}")
    if config.batch_size < 1 or config.lr <= 0:
        raise DenoisepotError("--batch-size must be >= 1 and the learning rate positive")

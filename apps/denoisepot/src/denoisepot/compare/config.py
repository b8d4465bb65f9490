"""Settings of a pretrained-versus-from-scratch comparison and the two hyperparameter scales."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DenoisepotError

PROTOCOLS = ("converged", "paper")
SCALES = ("small", "paper")
SPLITS = ("auto", "conformation", "molecule", "official")

#: reduced hyperparameters for CPU runs ("small" scale); "paper" uses the registry defaults
SMALL_HPARAMS: dict[str, dict[str, Any]] = {
    "schnet": {
        "hidden_channels": 64,
        "num_filters": 64,
        "num_interactions": 3,
        "num_gaussians": 32,
        "cutoff": 5.0,
    },
    # a radial basis for EGNN's distances: with the paper's raw d^2 a 64 x 3 EGNN does not
    # learn rMD17 energies (its from-scratch runs end at the mean's error; see the EGNN
    # module's docstring and benchmarks/feature_sensitivity.py)
    "egnn": {"hidden_channels": 64, "num_layers": 3, "cutoff": 5.0, "num_rbf": 32},
    "et": {"hidden_channels": 64, "num_layers": 3, "num_rbf": 32, "num_heads": 4, "cutoff": 5.0},
    "se3t": {
        "channels": 4,
        "max_degree": 2,
        "num_layers": 2,
        "num_heads": 2,
        "scalar_channels": 16,
        "num_basis": 16,
        "radial_hidden": 16,
        "cutoff": 5.0,
    },
}


@dataclass
class CompareConfig:
    """A comparison: for every backbone and σ (Å) one pretraining, then for every training-set
    size and seed one fine-tuning from the pretrained backbone and one from scratch, with the
    same recipe, on every fine-tuning dataset. ``pretrained_head="denoiser"`` starts the
    pretrained row's energy head from its denoiser (the one difference the rows may have
    besides the backbone's weights, and it is reported; ``head_shift`` as in fine-tuning); it
    needs a gradient noise head, the default of SchNet and the SE(3)-Transformer, which
    ``noise_head="gradient"`` gives every backbone (None: each backbone's own). Empty
    ``pretrain_data`` / ``finetune_data`` mean the built-in set. ``finetune_split`` "auto" is
    the release's official split where the store has one (rMD17 train/test files, ISO17), else
    80/10/10 within each molecule.
    A store used for both is partitioned within each molecule: ``pretrain_fraction`` of every
    molecule's conformations for pretraining, the rest for fine-tuning (never seen before).
    ``warmup_steps``: every fine-tuning's learning-rate warmup lasts at least this many
    optimizer steps (both rows). ``lr_schedule``: every fine-tuning's learning-rate schedule
    (both rows; see :data:`denoisepot.engine.finetune_config.LR_SCHEDULES`).
    ``val_every_steps``: validate every fine-tuning run after about this many optimizer steps,
    in whole epochs (0: every epoch; see :meth:`val_every_for`)."""

    out: Path
    backbones: list[str] = field(default_factory=lambda: ["schnet"])
    pretrain_data: list[Path] = field(default_factory=list)
    finetune_data: list[Path] = field(default_factory=list)
    train_sizes: list[int] = field(default_factory=lambda: [100, 1000])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    sigmas: list[float] = field(default_factory=lambda: [0.2])
    protocol: str = "converged"
    scale: str = "small"
    backbone_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    pretrain_fraction: float = 0.5
    pretrain_epochs: int = 20
    pretrain_batch_size: int = 64
    pretrain_lr: float = 5e-4
    finetune_split: str = "auto"
    val_fraction: float = 0.1
    finetune_epochs: int | None = None
    finetune_max_steps: int = 2000
    patience: int = 25
    # 2,000, not 500: on rMD17 a 500-step patience stopped runs on a plateau of the validation
    # loss (energies only at 200 conformations the pretrained row, with forces at 200 and 900
    # both rows), biasing the ratio either way; docs/real-data-results.md has the runs
    patience_steps: int = 2000
    val_every_steps: int = 0
    finetune_batch_size: int = 32
    finetune_lr: float = 5e-4
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    forces: bool | None = None
    force_weight: float = 1.0
    pretrained_head: str = "new"
    head_shift: str = "element"
    validate_start: bool = False
    noise_head: str | None = None
    cache_dir: Path | None = None
    workers: int | None = None
    progress: bool = True

    def hparams(self, backbone: str) -> dict[str, Any]:
        """The backbone's hyperparameters: the scale's (none at "paper": the registry's
        defaults), then ``backbone_hparams[backbone]`` on top. A hyperparameter the backbone
        gained after runs were recorded (``hparams_added_later``) is always given, at its
        default unless set: runs are named by these, so a run of the network from before
        is never taken for one of today's."""
        from equivariant_backbones import backbone_class

        cls = backbone_class(backbone)
        signature = inspect.signature(cls.__init__).parameters
        added = {key: signature[key].default for key in cls.hparams_added_later}
        base = dict(SMALL_HPARAMS.get(backbone, {})) if self.scale == "small" else {}
        return {**added, **base, **self.backbone_hparams.get(backbone, {})}

    def epoch_cap(self, train_size: int) -> int | None:
        """Fine-tuning epochs for ``train_size`` conformations: ``finetune_epochs`` when given;
        else, for the converged protocol, enough epochs for ``finetune_max_steps`` optimizer
        steps (small training sets get more epochs, so no row stops for lack of steps); else
        None (the paper's epochs for the data). A converged cap is rounded up to whole
        validations (see :meth:`val_every_for`), as the fine-tuning engine would."""
        if self.protocol != "converged":
            return self.finetune_epochs
        if self.finetune_epochs is not None:
            cap = self.finetune_epochs
        else:
            steps_per_epoch = math.ceil(train_size / self.finetune_batch_size)
            cap = max(1, math.ceil(self.finetune_max_steps / steps_per_epoch))
        from ..engine.finetune_config import validations  # light: no torch

        every = self.val_every_for(train_size)
        return every * validations(cap, every)  # the last epoch is validated

    def patience_for(self, train_size: int) -> int:
        """Early-stopping patience in epochs for ``train_size`` conformations: at least
        ``patience`` epochs and at least ``patience_steps`` optimizer steps, so that a small
        training set (few steps per epoch) is not stopped by noise after a few dozen steps."""
        steps_per_epoch = math.ceil(train_size / self.finetune_batch_size)
        return max(self.patience, math.ceil(self.patience_steps / steps_per_epoch))

    def val_every_for(self, train_size: int) -> int:
        """Epochs between validations for ``train_size`` conformations: the whole epochs in
        ``val_every_steps`` optimizer steps (at least 1), or 1 when it is 0. 50 conformations
        at batch 32 are 2 steps per epoch, so ``val_every_steps=20`` validates every 10th
        epoch, and 1,000 conformations (32 steps) still every epoch."""
        if self.val_every_steps == 0:
            return 1
        steps_per_epoch = math.ceil(train_size / self.finetune_batch_size)
        return max(1, self.val_every_steps // steps_per_epoch)

    def check(self) -> None:
        """Raise DenoisepotError (one line naming the option) for settings that cannot run.

        The backbone names and noise heads are checked last: they need the backbone registry,
        which imports torch."""
        # the pretrained row's energy head: the fine-tuning engine's choices ("new", "denoiser")
        from ..engine.finetune_config import HEAD_INITS, HEAD_SHIFTS, check_lr_schedule

        if not self.backbones:
            raise DenoisepotError("--backbone: give at least one backbone")
        if self.protocol not in PROTOCOLS:
            raise DenoisepotError(f"--protocol {self.protocol!r}: use one of {PROTOCOLS}")
        if self.pretrained_head not in HEAD_INITS:
            raise DenoisepotError(
                f"--pretrained-head {self.pretrained_head!r}: use one of {HEAD_INITS}"
            )
        if self.head_shift not in HEAD_SHIFTS:
            raise DenoisepotError(f"--head-shift {self.head_shift!r}: use one of {HEAD_SHIFTS}")
        check_lr_schedule(self.lr_schedule, self.protocol)
        if self.finetune_split not in SPLITS:
            raise DenoisepotError(f"--split {self.finetune_split!r}: use one of {SPLITS}")
        if not 0.0 < self.val_fraction < 1.0:
            raise DenoisepotError(
                f"--val-fraction must be between 0 and 1, got {self.val_fraction}"
            )
        if self.scale not in SCALES:
            raise DenoisepotError(f"--scale {self.scale!r}: use one of {SCALES}")
        if not self.train_sizes or min(self.train_sizes) < 1:
            raise DenoisepotError("--train-sizes must be positive counts, e.g. 50,200,1000")
        if not self.seeds:
            raise DenoisepotError("--seeds: give at least one seed, e.g. 0,1,2")
        if not self.sigmas or not all(math.isfinite(s) and s > 0 for s in self.sigmas):
            raise DenoisepotError("--sigmas must be positive numbers of Å, e.g. 0.1,0.2")
        if self.warmup_steps < 0:
            raise DenoisepotError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.val_every_steps < 0:
            raise DenoisepotError(
                f"--val-every-steps must be >= 0, got {self.val_every_steps}")
        if self.val_every_steps and self.protocol != "converged":
            raise DenoisepotError("--val-every-steps needs --protocol converged (the paper "
                                  "protocol validates every one of its fixed epochs)")
        if not 0.0 < self.pretrain_fraction < 1.0:
            raise DenoisepotError("--pretrain-fraction must be between 0 and 1")
        for option, value in (
            ("--pretrain-epochs", self.pretrain_epochs),
            ("--patience", self.patience),
            ("--pretrain-batch-size", self.pretrain_batch_size),
            ("--batch-size", self.finetune_batch_size),
            ("--max-steps", self.finetune_max_steps),
            ("--patience-steps", self.patience_steps),
            ("--workers", 1 if self.workers is None else self.workers),
        ):
            if value < 1:
                raise DenoisepotError(f"{option} must be at least 1, got {value}")
        self._check_backbones()

    def _check_backbones(self) -> None:
        from equivariant_backbones import NOISE_HEAD_KINDS, backbone_class, list_backbones

        from ..engine.backbone_options import build_checked_backbone

        known = list_backbones()
        for name in self.backbones:
            if name not in known:
                raise DenoisepotError(
                    f"--backbone {name!r} is unknown; choose from {', '.join(known)}"
                )
        if self.noise_head is not None and self.noise_head not in NOISE_HEAD_KINDS:
            raise DenoisepotError(
                f"--noise-head {self.noise_head!r}: use one of {', '.join(NOISE_HEAD_KINDS)}"
            )
        for name in self.backbone_hparams:
            if name not in self.backbones:
                raise DenoisepotError(
                    f"--hparam {name}:...: {name!r} is not among the compared backbones "
                    f"({', '.join(self.backbones)})"
                )
            build_checked_backbone(name, self.hparams(name), prefix=f"{name}:")
        if self.pretrained_head == "denoiser":
            for name in self.backbones:
                kind = self.noise_head or backbone_class(name).default_noise_head
                if kind != "gradient":
                    raise DenoisepotError(
                        f"--pretrained-head denoiser needs a gradient noise head (a scalar "
                        f"energy); {name}'s is {kind}: add --noise-head gradient"
                    )

def identity_hash(settings: dict[str, Any]) -> str:
    """Short stable hash of plain settings (names a run folder; changes when a setting does)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def plain(config: CompareConfig) -> dict[str, Any]:
    """The configuration as JSON-friendly data."""
    return json.loads(json.dumps(asdict(config), default=str))

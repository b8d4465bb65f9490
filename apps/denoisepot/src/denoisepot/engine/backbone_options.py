"""A backbone from the command line's ``--backbone`` and ``--hparam``, or one clear error
line naming the option that is wrong (shared by pretrain, finetune and compare)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import DenoisepotError


def build_checked_backbone(name: str, hparams: Mapping[str, Any], *, prefix: str = "") -> Any:
    """Build backbone ``name`` with ``hparams`` on top of its defaults; an unknown backbone,
    a hyperparameter it does not take or a value it rejects is a DenoisepotError naming the
    option (``prefix`` is how ``--hparam`` names the backbone, e.g. ``"egnn:"`` in compare)."""
    from equivariant_backbones import UnknownBackboneError, backbone_class

    try:
        cls = backbone_class(name)
    except UnknownBackboneError as exc:
        raise DenoisepotError(f"--backbone: {exc}") from None
    accepted = sorted(set(inspect.signature(cls.__init__).parameters) - {"self"})
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        hint = ""
        if ":" in unknown[0] and not prefix:
            hint = " (give key=value here; backbone:key=value is compare's form)"
        raise DenoisepotError(
            f"--hparam {prefix}{unknown[0]}: {name} has no such hyperparameter; choose from "
            f"{', '.join(accepted)}{hint}"
        )
    try:
        return cls(**hparams)
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: torch's sizes
        option = f"--hparam {prefix.rstrip(':')}" if prefix else "--hparam"
        raise DenoisepotError(f"{option}: {name} rejects these values ({exc})") from None

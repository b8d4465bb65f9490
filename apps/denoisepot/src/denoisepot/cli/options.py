"""Option parsing shared by the commands (light: no torch)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import DenoisepotError


def parse_hparams(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict; values are read as JSON (numbers, true/false, lists)
    and otherwise kept as text."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DenoisepotError(
                f"--hparam {item!r} is not key=value (e.g. --hparam hidden_channels=64)"
            )
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed


def parse_backbone_hparams(items: list[str]) -> dict[str, dict[str, Any]]:
    """``backbone:key=value`` strings to ``{backbone: {key: value}}`` (values as in
    :func:`parse_hparams`), for commands that build several backbones."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in items:
        backbone, sep, pair = item.partition(":")
        if not sep or not backbone.strip() or "=" in backbone:
            raise DenoisepotError(
                f"--hparam {item!r} is not backbone:key=value (e.g. --hparam egnn:num_rbf=0)"
            )
        try:
            values = parse_hparams([pair])
        except DenoisepotError:
            raise DenoisepotError(
                f"--hparam {item!r} is not backbone:key=value (e.g. --hparam egnn:num_rbf=0)"
            ) from None
        parsed.setdefault(backbone.strip(), {}).update(values)
    return parsed

"""`denoisepot info CKPT`: print any denoisepot checkpoint (pretrain or finetune) as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: lists longer than this are shortened in the table
_MAX_LIST_ITEMS = 12


def _describe_weights(state_dict: dict[str, Any]) -> str:
    """``N tensors, M values`` for a state dict."""
    count = sum(int(t.numel()) for t in state_dict.values() if hasattr(t, "numel"))
    return f"{len(state_dict)} tensors, {count:,} values"


def _format(value: Any) -> str:
    if hasattr(value, "numel"):  # a tensor
        if value.numel() <= _MAX_LIST_ITEMS:
            return str(value.tolist())
        return f"tensor {tuple(value.shape)} {value.dtype}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple) and len(value) > _MAX_LIST_ITEMS:
        shown = ", ".join(_format(v) for v in value[:_MAX_LIST_ITEMS])
        return f"[{shown}, ... ({len(value)} items)]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def checkpoint_rows(payload: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(key, text) rows of a checkpoint: nested dicts become dotted keys, weights are
    summarised, long lists shortened."""
    rows: list[tuple[str, str]] = []
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and (key == "state_dict" or key in ("model", "optimizer")
                                        and prefix == ""):
            rows.append((name, _describe_weights(value) if key != "optimizer" else "present"))
        elif isinstance(value, dict) and value:
            rows.extend(checkpoint_rows(value, prefix=f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value[:_MAX_LIST_ITEMS]):
                rows.extend(checkpoint_rows(item, prefix=f"{name}[{index}]."))
            if len(value) > _MAX_LIST_ITEMS:
                rows.append((name, f"... {len(value)} items"))
        else:
            rows.append((name, _format(value)))
    return rows


def info(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint written by denoisepot.")],
) -> None:
    """Print a checkpoint's header, backbone, recipe, data and training summary."""
    from equivariant_backbones import load_checkpoint
    from rich.console import Console
    from rich.table import Table

    payload = load_checkpoint(checkpoint)
    table = Table()
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, text in checkpoint_rows(payload):
        table.add_row(key, text)
    console = Console()
    console.print(f"{checkpoint} ({payload['kind']} checkpoint, format "
                  f"{payload['format_version']})", soft_wrap=True, highlight=False)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `info` to ``app``."""
    app.command("info")(info)

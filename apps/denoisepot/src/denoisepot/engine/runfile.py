"""``run.json``: the settings that define a pretraining or fine-tuning run, written when the run
starts and compared when it is resumed, so that a resumed run never mixes two recipes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import DenoisepotError

RUN_FILE = "run.json"
#: fine-tuning settings added after runs were first recorded, with the value that a run made
#: before each existed used (such a run resumes with it, and compare leaves a setting at that
#: value out of a run's name, so older runs keep theirs)
FINETUNE_ADDED_LATER = {"train_subset": "random", "head_init": "new", "head_shift": "atom",
                        "validate_start": False, "warmup_steps": 0, "lr_schedule": "cosine",
                        "val_every": 1}


def write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as JSON to a temporary file beside ``path``, then rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_run_file(run_file: Path) -> dict[str, Any]:
    """The settings recorded in ``run_file``; DenoisepotError naming the file if it is not a
    JSON object (cut short or edited by hand), since a resume must not guess the recipe."""
    try:
        recorded = json.loads(run_file.read_text())
    except (OSError, ValueError) as exc:  # JSON and Unicode decoding errors are ValueErrors
        raise DenoisepotError(
            f"{run_file}: cannot read the recorded settings ({exc}); "
            "use --overwrite to start the run again"
        ) from None
    if not isinstance(recorded, dict):
        raise DenoisepotError(
            f"{run_file}: not a run file (a JSON object of settings was expected); "
            "use --overwrite to start the run again"
        )
    return recorded


def check_same_settings(
    run_file: Path,
    settings: dict[str, Any],
    absent_means: dict[str, Any] | None = None,
    recorded: dict[str, Any] | None = None,
) -> None:
    """Raise DenoisepotError, naming every differing setting, if ``settings`` (plain JSON data)
    differ from those recorded in ``run_file`` (``recorded``: its content, where the caller
    has read it already). ``absent_means``: for settings added after runs were recorded, the
    value that a run file without them was made with."""
    if recorded is None:
        recorded = read_run_file(run_file)
    recorded = {**(absent_means or {}), **recorded}
    changed = sorted(k for k in recorded.keys() | settings.keys()
                     if recorded.get(k) != settings.get(k))
    if changed:
        shown = ", ".join(f"{k}: {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise DenoisepotError(
            f"{run_file}: --resume with other settings than the run in this folder ({shown}); "
            "repeat the original options or use --overwrite"
        )

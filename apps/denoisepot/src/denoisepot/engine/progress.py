"""A rich progress bar for training loops: loss, learning rate and conformations per second."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """The current epoch's bar on rank 0 (silent elsewhere or when disabled); each finished
    epoch leaves its line through ``log``, not its bar, so a run of thousands of epochs keeps
    one bar on a terminal and writes one to a log file."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} conf/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self._task: int | None = None
        self._last_time = time.perf_counter()

    def __enter__(self) -> TrainingProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, value, traceback)

    def start_epoch(self, description: str, total: int, completed: int) -> None:
        """A new bar of ``total`` steps, ``completed`` of them already done (resume), in
        place of the last epoch's."""
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total, completed=completed,
                                             loss="-", rate="-")
        self._last_time = time.perf_counter()

    def step(self, loss: float, conformations: int) -> float:
        """Advance one step; returns conformations per second of that step."""
        now = time.perf_counter()
        rate = conformations / max(now - self._last_time, 1e-9)
        self._last_time = now
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4g}", rate=f"{rate:,.0f}")
        return rate

    def log(self, message: str) -> None:
        """Print a line above the bars (rank 0 only)."""
        if self.enabled:
            self._progress.console.print(message)

"""Fixtures shared by every package's tests: where the real dataset samples live, and a
runner that stops a command with SIGTERM once it reaches a given point."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real release-format samples (../shared/data); skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real dataset samples not found at {SHARED_DATA} (not part of a clone)")
    return SHARED_DATA


@dataclass
class Terminated:
    """What ``sigterm_when`` saw: the exit status, stderr's lines and the worker processes
    that outlived the command."""

    returncode: int
    stderr: list[str]
    workers_left: list[int]


@pytest.fixture
def sigterm_when(tmp_path_factory: pytest.TempPathFactory):
    """``sigterm_when(command, ready, workers=N)``: run ``command``, poll until it has
    ``workers`` multiprocessing workers and ``ready()`` holds (failing if it ends first), send
    it SIGTERM and wait for it; survivors among the workers are reported, then killed."""
    import psutil

    def alive(process: psutil.Process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def is_worker(process: psutil.Process) -> bool:
        try:
            return "spawn_main" in " ".join(process.cmdline())
        except psutil.Error:  # gone already
            return False

    def run(command: list[str], ready: Callable[[], bool] = lambda: True, *,
            workers: int = 0) -> Terminated:
        # stderr to a file: workers left running would hold a pipe open
        stderr = tmp_path_factory.mktemp("sigterm") / "stderr.txt"
        with stderr.open("w") as sink:
            process = subprocess.Popen(command, stderr=sink)
        parent = psutil.Process(process.pid)
        found: list[psutil.Process] = []
        try:
            while len(found) < workers or not ready():
                assert process.poll() is None, stderr.read_text()
                time.sleep(0.1)
                found = [child for child in parent.children() if is_worker(child)]
            process.send_signal(signal.SIGTERM)
            process.wait()
            return Terminated(process.returncode, stderr.read_text().splitlines(),
                              [worker.pid for worker in found if alive(worker)])
        finally:
            for worker in found:
                if alive(worker):
                    worker.kill()
            if process.poll() is None:
                process.kill()

    return run


@pytest.fixture
def record_epochs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[int]]:
    """Call to start recording: returns the list of the epochs that fine-tuning runs in this
    process train from then on, in order."""

    def start() -> list[int]:
        from denoisepot.engine.finetune import FinetuneModule

        epochs: list[int] = []
        original = FinetuneModule.on_train_epoch_start

        def recording(module: FinetuneModule) -> None:
            epochs.append(module.current_epoch)
            original(module)

        monkeypatch.setattr(FinetuneModule, "on_train_epoch_start", recording)
        return epochs

    return start

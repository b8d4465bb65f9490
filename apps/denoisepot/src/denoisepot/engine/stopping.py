"""What SIGTERM (``kill``, a batch system's time limit) does to a long job: a training loop
finishes its step, keeps its state and ends with :class:`~denoisepot.errors.Terminated`
(exit status 143) rather than dying wherever it was; a process that runs others raises at
once so that it can stop them (:func:`stop_pool`). Handlers are set only from the main
thread (elsewhere, the default stays) and the previous handler is put back on leaving."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

from ..errors import Terminated

#: seconds a worker asked to stop (SIGTERM) gets to end its step before it is killed
WORKER_STOP_SECONDS = 5.0


@contextlib.contextmanager
def _on_sigterm(handler: Callable[[int, object], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_requests() -> Iterator[Callable[[], bool]]:
    """While active, SIGTERM only records a request; the function yielded says whether
    one came (the loop asks it after each step)."""
    requested = threading.Event()

    def record(signum: int, frame: object) -> None:
        requested.set()

    with _on_sigterm(record):
        yield requested.is_set


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises Terminated where this (main) thread is, as Ctrl-C raises
    KeyboardInterrupt, so that cleanup code runs."""

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    with _on_sigterm(stop):
        yield


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool``'s workers now (interrupted, or one of its jobs failed) and see them gone,
    rather than wait for their jobs: SIGTERM, then SIGKILL for any still running after
    WORKER_STOP_SECONDS (a worker in a Lightning fit ends its step and waits for work)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(WORKER_STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()

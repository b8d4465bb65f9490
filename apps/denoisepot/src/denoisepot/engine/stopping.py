"""What SIGTERM (``kill``, a batch system's time limit) does to a long job: a training loop
finishes its step, keeps its state and ends with :class:`~denoisepot.errors.Terminated`
(exit status 143) rather than dying wherever it was; a process that runs others raises at
once so that it can stop them. Handlers are set only from the main thread (elsewhere,
the default stays) and the previous handler is put back on leaving."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from ..errors import Terminated


@contextlib.contextmanager
def _on_sigterm(handler: Callable[[int, object], None]) -> Iterator[bool]:
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield True
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

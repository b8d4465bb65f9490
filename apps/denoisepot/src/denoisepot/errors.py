"""Which exceptions are a user's mistake (shown as one line) rather than a bug (traceback)."""

from __future__ import annotations

import signal
import sys

#: exit status of a command stopped by SIGTERM, as a shell reports a process that it ended
TERMINATED_STATUS = 128 + signal.SIGTERM


class DenoisepotError(Exception):
    """A user error raised by the app itself; the message names the file and the fix."""


class Terminated(SystemExit):
    """A command stopped by SIGTERM (``kill``, a batch system's time limit) after keeping
    what it had finished: exit status 143, so that neither a scheduler nor ``&&`` takes it
    for a success (Lightning ends a fit stopped so with exit status 0)."""

    def __init__(self, code: int = TERMINATED_STATUS) -> None:
        super().__init__(code)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that the CLI reports as one clear line and exit status 1.

    Only the packages already imported are asked for theirs (an exception of a type that was
    never imported cannot have been raised), so a refusal made before torch is loaded does
    not load it.
    """
    types: list[type[BaseException]] = [DenoisepotError]
    if "equivariant_backbones" in sys.modules:
        from equivariant_backbones import CheckpointError, UnknownBackboneError

        types += [CheckpointError, UnknownBackboneError]
    if "molgraph_data" in sys.modules:
        from molgraph_data.errors import DataError

        types.append(DataError)
    return tuple(types)

"""Which exceptions are a user's mistake (shown as one line) rather than a bug (traceback)."""

from __future__ import annotations


class DenoisepotError(Exception):
    """A user error raised by the app itself; the message names the file and the fix."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that the CLI reports as one clear line and exit status 1.

    Imported lazily: only called after an exception, when these modules are loaded anyway.
    """
    from equivariant_backbones import CheckpointError, UnknownBackboneError
    from molgraph_data.errors import DataError

    return (DenoisepotError, DataError, CheckpointError, UnknownBackboneError)

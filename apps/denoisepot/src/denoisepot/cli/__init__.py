"""The ``denoisepot`` command line. Thin wiring over the packages' APIs.

Heavy libraries (torch, lightning, h5py) are imported inside the commands so that
``denoisepot --help`` answers fast. Each command group lives in its own module and adds
itself to ``app`` through ``register(app)``.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

import typer

from . import compare, data, evaluate, finetune, info, pretrain

app = typer.Typer(
    name="denoisepot",
    help="Denoise pretraining on nonequilibrium molecules, "
    "then fine-tuning on energies and forces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (data, pretrain, finetune, evaluate, info, compare):
    _module.register(app)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"denoisepot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print the version and exit.",
    ),
) -> None:
    """Denoise pretraining on nonequilibrium molecules, then fine-tuning on energies and forces."""


#: starts of deprecation notices that libraries we use raise on every run; nothing a user of
#: denoisepot can act on (no commas or colons: they also travel in PYTHONWARNINGS)
_LIBRARY_NOTICES = (
    "`torch.jit.script` is deprecated",  # torch_geometric's import
    "`isinstance(treespec",  # Lightning's pytree helper on torch's LeafSpec
)


def silence_library_notices() -> None:
    """Hide ``_LIBRARY_NOTICES`` here and in worker processes (through PYTHONWARNINGS)."""
    for start in _LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=re.escape(start), category=FutureWarning)
    ours = ",".join(f"ignore:{start}:FutureWarning" for start in _LIBRARY_NOTICES)
    given = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{given},{ours}" if given else ours


#: how to continue each command stopped by SIGTERM
_CONTINUE = {
    "data": "nothing was written; the same command starts it again",
    "compare": "rerun the same command to continue (finished runs are kept, an interrupted "
    "fine-tuning resumes from its last finished epoch)",
    "finetune": "the same command with --resume continues from the last finished epoch",
    "pretrain": "the same command with --resume continues from the step it stopped at",
}


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line on stderr
    and exit status 1 (a bug still shows its traceback), and a stop by SIGTERM into one
    line saying how to continue and exit status 143."""
    from ..errors import Terminated

    silence_library_notices()
    try:
        app()
    except Terminated:
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        print(f"error: terminated (SIGTERM); {_CONTINUE.get(command, 'nothing was lost')}",
              file=sys.stderr)
        raise
    except Exception as exc:  # noqa: BLE001 - classified below
        from ..errors import user_error_types

        if isinstance(exc, user_error_types()):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        raise

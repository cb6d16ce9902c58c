"""How every command of the project runs: the stage commands (``python -m stages.<name>``) and ``patchcore``.

A command's bad input reaches the user as one line on stderr and exit code 2, never a traceback;
SIGTERM unwinds like any error, so the atomic writes remove their temporaries. The options the
stage commands share are declared once here.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import NoReturn

import typer

from patchcore.config import DEFAULT_PARAMS
from patchcore.errors import UsageError, failure

PARAMS = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read")
CATEGORY = typer.Option(..., "--category", "-c", help="category name, one of params.yaml run.categories")
BACKBONE = typer.Option(..., "--backbone", "-b", help="backbone name, a key of params.yaml backbones")

MAX_MESSAGE = 1000  # characters: a line a person reads, whatever value a message quotes


def stage_app(help: str) -> typer.Typer:
    """The Typer app of one stage command: its single command runs without a subcommand name."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=help)


def _terminated(signum: int, _frame: object) -> None:
    # SystemExit unwinds the stage like any error: the atomic writes remove their temporaries
    raise SystemExit(128 + signum)


def _fail(message: str, code: int) -> NoReturn:
    line = " ".join(message.split())  # one line, whatever a quoted value held
    typer.echo(f"error: {line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + '...'}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # after a failed HDF5 write the library would retry the write at interpreter exit and
    # crash; the temporaries are already removed, so leave without running finalisers
    os._exit(code)


def run(app: typer.Typer) -> None:
    """Run ``app`` as a program: errors the user can fix are one line and exit code 2."""
    signal.signal(signal.SIGTERM, _terminated)
    warnings.filterwarnings(
        "ignore", message=r"Image size \(\d+ pixels\) exceeds limit"
    )  # refused past 64 M in our own line
    try:
        app()
    except (UsageError, KeyboardInterrupt, OSError) as exc:
        handled = failure(exc)
        if handled is None:
            raise
        _fail(*handled)

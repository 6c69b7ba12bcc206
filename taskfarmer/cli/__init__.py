"""What a person sees: the ``farmer`` and ``pytaskfarmer.py`` commands (entry points
``taskfarmer.cli:main`` and ``taskfarmer.cli:pytaskfarmer_main``), the progress display and the
status view. No farm logic lives here: :mod:`.command` turns options into a
:class:`~taskfarmer.farm.FarmConfig` and runs the farm."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

import taskfarmer

from ..compat import coinstall
from ..compat.argv import translate
from ..errors import ExitCode, TaskfarmerError, as_error
from .command import cli
from .streams import guard_standard_streams

__all__ = ["cli", "main", "pytaskfarmer_main"]


def main(argv: Sequence[str] | None = None, prog: str = "farmer",
         pytaskfarmer: bool = False) -> None:
    """Console-script entry point: run the CLI, turn library errors into one-line messages.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
        prog: the command's name in messages.
        pytaskfarmer: parse as ``pytaskfarmer.py`` (``-v`` always takes a value).
    """
    guard_standard_streams()  # a closed stdout or stderr must not stop the farm (see streams)
    try:
        coinstall.check(Path(taskfarmer.__file__).parent, sys.path)
        known = [name for param in cli.params for name in (*param.opts, *param.secondary_opts)
                 if name.startswith("--")]
        args = translate(sys.argv[1:] if argv is None else argv, known, pytaskfarmer)
        cli.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        click.echo(f"{prog}: error: {error.format_message()}", err=True)
        sys.exit(ExitCode.ERROR)
    except click.Abort:
        click.echo(f"{prog}: aborted", err=True)
        sys.exit(ExitCode.ERROR)
    except (TaskfarmerError, OSError) as error:
        failure = as_error(error, Path.cwd())
        click.echo(f"{prog}: error: {failure}", err=True)
        sys.exit(failure.exit_code)


def pytaskfarmer_main() -> None:
    """The ``pytaskfarmer.py`` command: the same CLI, reading PyTaskFarmer's arguments."""
    main(prog="pytaskfarmer.py", pytaskfarmer=True)

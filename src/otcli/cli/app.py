"""The ``otdist`` Typer app: routing ``otdist A B`` to ``pair``, the version, usage errors.

Commands register themselves on :data:`app` (:mod:`otcli.cli.pair`, :mod:`otcli.cli.many`);
:func:`run` turns click's usage errors into the same one-line ``Error:`` form as every other.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from otcli import __version__

PAIR_COMMAND = "pair"


class _DefaultToPair(TyperGroup):
    """Route ``otdist A B ...`` to the ``pair`` command unless a subcommand is named."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if a == "-" or not a.startswith("-")), None)
        wants_group = any(a in ("--help", "-h", "--version") for a in args) and first is None
        if first is not None and first not in self.commands and not wants_group:
            args = [PAIR_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToPair,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Optimal-transport (Sinkhorn / Wasserstein) distances between point clouds in files.\n\n"
        "otdist A B [OPTIONS]    cost between two clouds (see: otdist pair --help)"
    ),
)


# The --cost choices, one per registered cost class (otcli.costs imports no torch).
def _version(value: bool) -> None:
    if value:
        typer.echo(f"otdist (otcli) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Optimal-transport (Sinkhorn / Wasserstein) distances between point clouds in files."""


def run(argv: list[str] | None = None) -> int:
    """Run ``otdist`` on ``argv``; return the exit code instead of exiting.

    Usage errors (unknown option, bad value) get the same one-line ``Error: <option>: ...``
    form as every other error, instead of a framed box.
    """
    from typer.main import get_command

    # The click that typer runs on: its own vendored copy from typer 0.20 on, else the click
    # package. Never the click package beside a vendoring typer (dask, for one, installs it):
    # its exceptions are other classes, and usage errors would escape as tracebacks.
    try:
        from typer._click import exceptions as ce
    except ImportError:
        from click import exceptions as ce  # type: ignore[no-redef]
    ClickException = ce.ClickException
    NoArgsIsHelpError = getattr(ce, "NoArgsIsHelpError", ())
    cmd = get_command(app)
    try:
        code = cmd.main(args=argv, prog_name="otdist", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.format_message().strip(), err=True)
        return 2
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed: not an error
            return 2
        from otcli import render

        render.error(_usage_message(exc))
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    return code if isinstance(code, int) else 0


def _usage_message(exc: Any) -> str:
    """``<option>: <what>`` from a click usage error, with a pointer to --help."""
    message = exc.format_message().replace("Value error, ", "")
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None) or []
    where = next((o for o in opts if o.startswith("--")), opts[0] if opts else None)
    if where and message.startswith("Invalid value for"):
        message = message.split(": ", 1)[-1]
        return f"{where}: {message}"
    return f"{message} (see otdist --help)"


def main() -> None:
    """Console-script entry point: run the command, then leave without tearing Python down.

    pyarrow's CSV and Parquet readers finish on Arrow's worker threads, which drop their last
    reference to the Python bytes they read a little after the read returns. A worker that
    does so while the interpreter finalises (an ``Error:`` right after a read, then exit)
    cannot take the GIL, and the C++ runtime aborts the process: "terminate called without
    an active exception", exit 134, after a correct result or error. Once the command is
    done nothing is left to tear down: the atexit handlers run, the standard streams are
    flushed, and the process ends at once (:func:`os._exit`), before any finalisation.
    """
    _exit(run())


def _exit(code: int) -> NoReturn:
    """Run the atexit handlers, flush stdout and stderr, and end the process with ``code``."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a full disk or a closed pipe: nothing more to say
            code = code or 1
    os._exit(code)

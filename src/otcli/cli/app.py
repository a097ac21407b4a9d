"""The ``otdist`` Typer app: routing ``otdist A B`` to ``pair``, the version, usage errors.

Commands register themselves on :data:`app` (:mod:`otcli.cli.pair`, :mod:`otcli.cli.many`);
:func:`run` turns click's usage errors into the same one-line ``Error:`` form as every other.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from otcli import __version__
from otcli.cli.signals import exit_code, termination_as_interrupt
from otcli.errors import OptionError

PAIR_COMMAND = "pair"
#: ``otdist -V`` / ``--version``, understood after a subcommand too (``otdist pair -V``).
VERSION_FLAGS = ("-V", "--version")
#: Typer's completion options: the group's own, never routed to ``pair``.
COMPLETION_FLAGS = ("--install-completion", "--show-completion")

F = TypeVar("F", bound=Callable[..., Any])


def _hide_flag_types(params: Sequence[Any]) -> None:
    """No ``<bool>`` type column for flags in --help: a flag takes no value to describe."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Command(TyperCommand):
    """A command whose --help shows no ``<bool>`` on flags."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


class _DefaultToPair(TyperGroup):
    """Route ``otdist A B ...`` to the ``pair`` command unless a subcommand is named;
    answer ``-V``/``--version`` wherever it stands, as ``--help`` is."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        options = args[: args.index("--")] if "--" in args else args
        if any(a in VERSION_FLAGS for a in options):
            args = ["--version"]
        if any(a.split("=", 1)[0] in COMPLETION_FLAGS for a in options):
            return super().parse_args(ctx, args)
        first = next((a for a in args if a == "-" or not a.startswith("-")), None)
        wants_group = any(a in ("--help", "-h", *VERSION_FLAGS) for a in args) and first is None
        if first is not None and first not in self.commands and not wants_group:
            args = [PAIR_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


def examples(*lines: str) -> str:
    """The end of a command's --help, as ``gh`` and ``rg`` have it: ``# what`` comment lines
    and ``$ otdist ...`` commands that run as written from the repository root."""
    body = "\n".join(f"  {line}" for line in lines)
    # Typer dedents all but the first line by their common indent: the heading on the second
    # line, flush left, keeps the examples' indent.
    return f"\n[b]Examples[/b]\n{body}"


def command(name: str, *, epilog: str | None = None) -> Callable[[F], F]:
    """Register a command on :data:`app`: help from its docstring (paragraphs joined into
    lines, which rich then wraps to the terminal) and ``epilog`` (:func:`examples`) last."""

    def register(fn: F) -> F:
        paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
        text = "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)
        return app.command(name, cls=_Command, help=text, epilog=epilog)(fn)  # type: ignore[return-value]

    return register


ROOT_EXAMPLES = examples(
    "# The cost between two clouds in files (otdist pair --help for more)",
    "$ otdist sample_data/moons_a.csv sample_data/moons_b.csv",
    "# Every pair of a manifest into one table (otdist batch --help)",
    "$ otdist batch sample_data/pairs.tsv -o scores.csv",
    "# Every two of several clouds into a matrix (otdist pairwise --help)",
    "$ otdist pairwise sample_data/*.csv -o costs.csv",
)

app = typer.Typer(
    cls=_DefaultToPair,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Optimal-transport (Sinkhorn / Wasserstein) distances between point clouds in files.\n\n"
        "otdist A B [OPTIONS]    cost between two clouds (see: otdist pair --help)"
    ),
    epilog=ROOT_EXAMPLES,
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
        typer.Option(
            *VERSION_FLAGS, callback=_version, is_eager=True, help="Print the version and exit."
        ),
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
        argv = spread_lists(sys.argv[1:] if argv is None else list(argv))
    except OptionError as exc:
        from otcli import render

        render.error(str(exc))
        return 2
    try:
        with termination_as_interrupt():  # SIGTERM and SIGHUP clean up as Ctrl-C does
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
    except typer.Abort as exc:  # click's word for an interrupt outside a command's guard
        return exit_code(exc.__cause__ or exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP
        return exit_code(exc)
    except SystemExit as exc:  # shell completion and its install/show options end this way
        return exc.code if isinstance(exc.code, int) else 0
    return code if isinstance(code, int) else 0


#: Options that take every word after them up to the next option, by command: click gives an
#: option one value, so ``--against b1 b2`` is passed on as ``--against b1 --against b2``.
LIST_OPTIONS = {"pairwise": ("--against",)}


def spread_lists(argv: list[str]) -> list[str]:
    """``argv`` with each list option (:data:`LIST_OPTIONS`) repeated before each of the
    words that follow it, up to the next option or ``--``. Raises :class:`OptionError` for
    a list option with no word after it."""
    command = next((a for a in argv if not a.startswith("-")), None)
    names = LIST_OPTIONS.get(command or "", ())
    if not names:
        return argv
    out: list[str] = []
    k = 0
    while k < len(argv):
        word = argv[k]
        if word == "--":
            return out + argv[k:]
        out.append(word)
        k += 1
        if word in names:
            if k == len(argv) or (argv[k].startswith("-") and argv[k] != "-"):
                raise OptionError(word, "give at least one file after it (or a LIST with "
                                  f"{word}-from)")  # fmt: skip
            first = True
            while k < len(argv) and (first or not argv[k].startswith("-") or argv[k] == "-"):
                if not first:
                    out.append(word)
                out.append(argv[k])
                first = False
                k += 1
    return out


#: What a required option's absence is told, by (command, option): the option and the fix.
MISSING_HINTS = {
    ("batch", "output"): ("-o", "give the results file: -o scores.parquet, .csv or .jsonl"),
    ("pairwise", "output"): ("-o", "give the output file: -o matrix.npy, .csv or .parquet"),
    ("barycenter", "output"): ("-o", "give the output file: -o bary.csv, .tsv, .parquet or .npy"),
    ("barycenter", "points"): (
        "--points",
        "give the number of support points K, e.g. --points 100",
    ),
}


def _usage_message(exc: Any) -> str:
    """``<option>: <what>`` from a click usage error, with a pointer to --help."""
    message = exc.format_message().replace("Value error, ", "")
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None) or []
    where = next((o for o in opts if o.startswith("--")), opts[0] if opts else None)
    missing_option = getattr(param, "param_type_name", None) == "option" and opts
    if type(exc).__name__ == "MissingParameter" and missing_option and exc.ctx is not None:
        command = exc.ctx.info_name
        hint = MISSING_HINTS.get((command, param.name))
        if hint is not None:
            return f"{hint[0]}: {hint[1]}"
        return f"{where}: required (see otdist {command} --help)"
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
    Standard streams the shell closed are repaired first (:mod:`otcli.cli.streams`).
    """
    from otcli.cli.streams import repair_standard_streams

    repair_standard_streams()
    _exit(run())


def _exit(code: int) -> NoReturn:
    """Run the atexit handlers, flush stdout and stderr, and end the process with ``code``."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: closed when the process started
                stream.flush()
        except (OSError, ValueError):  # a full disk or a closed pipe: nothing more to say
            code = code or 1
    os._exit(code)

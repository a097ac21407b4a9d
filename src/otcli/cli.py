"""The ``otdist`` command: parse, call the library, render. No math, no file parsing here.

``otdist A B [options]`` is the default command; subcommands (``batch``, ``pairwise``) can
sit beside it. Heavy imports (torch, numpy, pyarrow, rich) happen inside the command, so
``otdist --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from otcli import __version__
from otcli.costs import COST_NAMES
from otcli.errors import OptionError, OtcliError

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
CostName = Enum("CostName", {name: name for name in COST_NAMES}, type=str)  # type: ignore[misc]


class Geometry(str, Enum):
    auto = "auto"
    dense = "dense"
    online = "online"


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


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


SOLVER = "Solver"
INPUT = "Input"
OUTPUT = "Output"
BATCH = "Batch"


# Options shared by the commands, declared once.
POpt = Annotated[
    float | None,
    typer.Option(
        "--p", help="Exponent for --cost pnorm: C = Σ_k |x_k − y_k|^p.", rich_help_panel=SOLVER
    ),
]
MaxIterOpt = Annotated[
    int,
    typer.Option(help="Iteration limit per pair (ε-annealing included).", rich_help_panel=SOLVER),
]
ScalingOpt = Annotated[
    float,
    typer.Option(
        help="ε-annealing factor in (0, 1): ε goes from the cost's scale down to --eps.",
        rich_help_panel=SOLVER,
    ),
]
CostOpt = Annotated[CostName, typer.Option(help="Ground cost C(x, y).", rich_help_panel=SOLVER)]
NoScalingOpt = Annotated[
    bool,
    typer.Option("--no-scaling", help="Plain Sinkhorn at ε, no annealing.", rich_help_panel=SOLVER),
]
DeviceOpt = Annotated[
    str, typer.Option(help="auto, cpu, cuda, cuda:K or mps.", rich_help_panel=SOLVER)
]
DTypeOpt = Annotated[
    DType,
    typer.Option(
        help="Precision of the n×m matrices (vectors stay float64).", rich_help_panel=SOLVER
    ),
]
TolOpt = Annotated[
    float | None,
    typer.Option(
        help="Target marginal L1 error ‖P1−a‖₁+‖Pᵀ1−b‖₁ \\[default: 1e-5 float32, 1e-7 float64].",
        rich_help_panel=SOLVER,
        show_default=False,
    ),
]
MaxBatchOpt = Annotated[
    int, typer.Option(help="At most this many pairs per batched solve.", rich_help_panel=BATCH)
]
ManyProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bar and summary on stderr \\[default: on a terminal].",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str | None, typer.Option(help="Column of per-point masses, every file.", rich_help_panel=INPUT)
]
EpsOpt = Annotated[
    float | None,
    typer.Option(
        help="Entropic regularisation ε, absolute, in cost units \\[default: 0.1].",
        rich_help_panel=SOLVER,
        show_default=False,
    ),
]
EpsRelOpt = Annotated[
    float | None,
    typer.Option(
        "--eps-rel",
        help="ε as a fraction of each pair's mean cost (e.g. 0.05), instead of --eps: "
        "the same answer whatever the data's units.",
        rich_help_panel=SOLVER,
        show_default=False,
    ),
]
GeometryOpt = Annotated[
    Geometry,
    typer.Option(
        help="dense: C in memory; online: C rebuilt block by block, O(n+m) memory; "
        "auto: dense while C and Cᵀ fit --memory.",
        rich_help_panel=SOLVER,
    ),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        help="Memory budget for n×m matrices (one batched solve), e.g. 512M or 8G "
        "\\[default: half the free memory].",
        rich_help_panel=SOLVER,
        show_default=False,
    ),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        help="Coordinate columns, comma-separated names or 0-based indices (every file).",
        rich_help_panel=INPUT,
    ),
]
WorkersOpt = Annotated[
    int, typer.Option(help="Threads reading clouds ahead of the solver.", rich_help_panel=BATCH)
]


@app.command(PAIR_COMMAND)
def pair(
    a: Annotated[
        str,
        typer.Argument(
            metavar="A",
            help="First cloud: .csv .tsv .txt .parquet .npy .npz, or - for CSV on stdin.",
        ),
    ],
    b: Annotated[str, typer.Argument(metavar="B", help="Second cloud, same formats.")],
    eps: EpsOpt = None,
    eps_rel: EpsRelOpt = None,
    cost: CostOpt = CostName.sqeuclidean,
    p: POpt = None,
    max_iter: MaxIterOpt = 1000,
    tol: TolOpt = None,
    scaling: ScalingOpt = 0.5,
    no_scaling: NoScalingOpt = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = DType.float32,
    divergence: Annotated[
        bool,
        typer.Option(
            "--divergence",
            help="Also compute the debiased Sinkhorn divergence.",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    geometry: GeometryOpt = Geometry.auto,
    memory: MemoryOpt = None,
    columns: ColumnsOpt = None,
    weights: WeightsOpt = None,
    coupling: Annotated[
        Path | None,
        typer.Option(
            help="Write the coupling P: .npy dense n×m; .csv/.tsv/.parquet long i,j,value.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    cost_matrix: Annotated[
        Path | None,
        typer.Option(help="Write the cost matrix C, same formats.", rich_help_panel=OUTPUT),
    ] = None,
    coupling_threshold: Annotated[
        float | None,
        typer.Option(
            help="Long formats keep P entries above this \\[default: 1e-9 × max P].",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    coupling_topk: Annotated[
        int | None,
        typer.Option(
            help="Long formats keep only the K largest P entries of each row.",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Solve the unregularised problem exactly (network simplex; optional extra "
            "otcli[exact]), up to 25 million cost entries.",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object.", rich_help_panel=OUTPUT)
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print only the cost (or the divergence).", rich_help_panel=OUTPUT
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress on stderr \\[default: on a terminal, after 1 s].",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Optimal-transport cost between the point clouds in files A and B.

    Prints ⟨P, C⟩, the transport cost of the entropic plan P (with the default squared
    Euclidean cost it estimates W₂² when ε is small against the costs), the regularised
    objective, iterations and the marginal error reached.
    """
    from otcli import render

    bar = render.SolveProgress(force=progress)

    def call() -> Any:
        from otcli.pair import PairOutputs, run_pair

        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=device, dtype=dtype, geometry=geometry, memory=memory,
        )  # fmt: skip
        outputs = PairOutputs(coupling, cost_matrix, coupling_threshold, coupling_topk)
        if exact and (eps is not None or eps_rel is not None or divergence):
            given = "--eps" if eps is not None else "--eps-rel" if eps_rel else "--divergence"
            raise OptionError("--exact", f"solves without ε; drop {given}")
        return run_pair(
            a, b, config, read=_read_options(columns, weights), outputs=outputs,
            divergence=divergence, exact=exact, progress=bar, warn=render.warning,
        )  # fmt: skip

    report = _guarded(call, bar.close, "interrupted; no output was written")
    if not report.converged:
        from otcli.pair import not_converged_message

        render.warning(not_converged_message(report, max_iter))
    if quiet:
        typer.echo(repr(report.divergence if divergence else report.cost))
    elif json_out:
        typer.echo(render.to_json(report.fields()))
    else:
        typer.echo(render.summary(report.fields()))


def _guarded(call: Any, close: Any, interrupted: str) -> Any:
    """Run ``call``; errors become one line on stderr and an exit code (2 bad input or
    options, 1 a solver failure, 130 Ctrl-C), never a traceback."""
    from otcli import render
    from otcli.errors import SolverError

    try:
        return call()
    except OtcliError as exc:
        close()
        render.error(str(exc))
        raise typer.Exit(2) from None
    except SolverError as exc:
        close()
        render.error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        close()
        render.error(interrupted)
        raise typer.Exit(130) from None
    finally:
        close()


def _config(
    *,
    eps: float | None,
    eps_rel: float | None,
    cost: Any,
    p: float | None,
    max_iter: int,
    tol: float | None,
    scaling: float,
    no_scaling: bool,
    device: str,
    dtype: Any,
    geometry: Any,
    memory: str | None,
    max_batch: int = 64,
) -> Any:
    """The shared solver options as one checked :class:`otcli.config.SolveConfig`."""
    from otcli.config import make_config

    return make_config(
        eps=eps, eps_rel=eps_rel, cost=cost.value, p=p, max_iter=max_iter, tol=tol,
        scaling=None if no_scaling else scaling, device=device, dtype=dtype.value,
        geometry=geometry.value, memory=_parse_size(memory, "--memory"), max_batch=max_batch,
    )  # fmt: skip


def _read_options(columns: str | None, weights: str | None) -> Any:
    from otcli.config import make_read_options

    return make_read_options(_split_list(columns, "--columns"), weights)


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse_size(value: str | None, option: str) -> int | None:
    """``512M``, ``8G``, ``1.5G``, ``2000000`` (bytes) → bytes."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    try:
        size = float(text[: len(text) - len(unit)]) * _SIZE_UNITS[unit]
    except ValueError:
        size = -1.0
    if not size > 0 or size != size:
        raise OptionError(option, f"bad size {value!r}; use bytes or a number with K, M, G or T")
    return int(size)


def _split_list(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise OptionError(option, f"empty name in {value!r}; give names or indices like x,y,z")
    return items


# --- many pairs: otdist batch, otdist pairwise ------------------------------------------------


class CouplingFormat(str, Enum):
    npy = "npy"
    parquet = "parquet"


def _run_many(call: Any, progress: bool | None, interrupted: str) -> None:
    """Run a batch/pairwise library call with a progress bar; errors → one line + exit code.

    Exit 2 for bad manifest/options, 1 if any pair failed (the run still completes) or
    ``--fail-fast`` stopped it, 130 on Ctrl-C. The summary table goes to stderr with the bar.
    """
    from otcli import render

    bar = render.BatchProgress(force=progress)
    summary = _guarded(lambda: call(bar.start), bar.close, interrupted)
    if bar.enabled:
        render.run_summary(summary)
    if summary.failed:
        render.warning(
            f"{summary.failed} of {summary.total} pairs failed (first: {summary.first_error}); "
            f"see the status and error columns of {summary.out}"
        )
        raise typer.Exit(1)
    if summary.not_converged:
        render.warning(
            f"{summary.not_converged} of {summary.total} pairs did not converge to --tol; "
            "see the converged and marginal_error columns"
        )


@app.command("batch")
def batch(
    manifest: Annotated[
        str,
        typer.Argument(
            help="Table of pairs (.csv .tsv .parquet): columns a, b (paths, relative to the "
            "manifest's folder), optional id (default: 0-based row number) and eps."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Results: .parquet, .csv or .jsonl, one row per pair.",
            rich_help_panel=OUTPUT,
        ),
    ],
    eps: Annotated[
        float | None,
        typer.Option(
            help="ε for rows without an eps value \\[default: 0.1].",
            rich_help_panel=SOLVER,
            show_default=False,
        ),
    ] = None,
    eps_rel: EpsRelOpt = None,
    geometry: GeometryOpt = Geometry.auto,
    cost: CostOpt = CostName.sqeuclidean,
    p: POpt = None,
    max_iter: MaxIterOpt = 1000,
    tol: TolOpt = None,
    scaling: ScalingOpt = 0.5,
    no_scaling: NoScalingOpt = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = DType.float32,
    divergence: Annotated[
        bool,
        typer.Option(
            "--divergence",
            help="Add the debiased Sinkhorn divergence (self terms solved once per file).",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            help="Coordinate columns for every file (names or 0-based indices).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    weights: WeightsOpt = None,
    memory: MemoryOpt = None,
    max_batch: MaxBatchOpt = 64,
    workers: WorkersOpt = 4,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed or extended run: skip ids already scored (failed ones are tried again).",
            rich_help_panel=BATCH,
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an existing OUT (and its journal).", rich_help_panel=BATCH
        ),
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast",
            help="Stop at the first failed pair (exit 1); finished rows stay in the journal for --resume.",
            rich_help_panel=BATCH,
        ),
    ] = False,
    coupling_dir: Annotated[
        Path | None,
        typer.Option(
            help="Write each pair's coupling to DIR/<id>.npy (or .parquet).", rich_help_panel=OUTPUT
        ),
    ] = None,
    coupling_format: Annotated[
        CouplingFormat,
        typer.Option(help="npy: dense n×m; parquet: long i, j, value.", rich_help_panel=OUTPUT),
    ] = CouplingFormat.npy,
    progress: ManyProgressOpt = None,
) -> None:
    """Score every pair of a manifest into one table; a killed run continues with --resume.

    One row per pair: id, a, b, n, m, eps, cost, objective, iterations, converged,
    marginal_error, status (ok or error), error (the message a single-pair run would print),
    seconds; plus divergence with --divergence. A bad pair never stops the run: its row says
    why, and the exit code is 1 at the end.
    """

    def call(start: Any) -> Any:
        from otcli.batch import run_batch

        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=device, dtype=dtype, geometry=geometry, memory=memory,
            max_batch=max_batch,
        )  # fmt: skip
        return run_batch(
            manifest, output, config, read=_read_options(columns, weights),
            divergence=divergence, workers=workers, resume=resume, overwrite=overwrite,
            fail_fast=fail_fast, coupling_dir=coupling_dir,
            coupling_format=coupling_format.value, progress=start,
        )  # fmt: skip

    _run_many(call, progress, "interrupted; rerun the same command with --resume to continue")


@app.command("pairwise")
def pairwise(
    files: Annotated[
        list[str] | None,
        typer.Argument(help="Clouds (.csv .tsv .txt .parquet .npy .npz), at least two in all."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Result: .npy N×N matrix, .csv matrix with file labels, .parquet long table (i ≤ j).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    files_from: Annotated[
        Path | None,
        typer.Option(
            help="Read more file paths from LIST, one per line (relative to LIST's folder).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    eps: EpsOpt = None,
    eps_rel: EpsRelOpt = None,
    geometry: GeometryOpt = Geometry.auto,
    cost: CostOpt = CostName.sqeuclidean,
    p: POpt = None,
    max_iter: MaxIterOpt = 1000,
    tol: TolOpt = None,
    scaling: ScalingOpt = 0.5,
    no_scaling: NoScalingOpt = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = DType.float32,
    divergence: Annotated[
        bool,
        typer.Option(
            "--divergence",
            help="The matrix holds the debiased Sinkhorn divergence (0 on the diagonal).",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    columns: Annotated[
        str | None, typer.Option(help="Coordinate columns for every file.", rich_help_panel=INPUT)
    ] = None,
    weights: WeightsOpt = None,
    memory: MemoryOpt = None,
    max_batch: MaxBatchOpt = 64,
    workers: WorkersOpt = 4,
    progress: ManyProgressOpt = None,
) -> None:
    """The cost (or --divergence) between every two of the given clouds, each pair solved once.

    The diagonal holds each cloud against itself: its entropic self-cost ⟨P, C⟩ (not 0), or 0
    with --divergence. Entries of pairs that failed are NaN (empty in CSV); exit code 1.
    """

    def call(start: Any) -> Any:
        from otcli.batch.pairwise import read_file_list, run_pairwise

        if output is None:
            raise OptionError("-o", "give the output file: -o matrix.npy, .csv or .parquet")
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=device, dtype=dtype, geometry=geometry, memory=memory,
            max_batch=max_batch,
        )  # fmt: skip
        paths = list(files or [])
        if files_from is not None:
            paths += read_file_list(files_from)
        return run_pairwise(
            paths, output, config, read=_read_options(columns, weights), divergence=divergence,
            workers=workers, progress=start,
        )  # fmt: skip

    _run_many(call, progress, "interrupted; no output was written")


def run(argv: list[str] | None = None) -> int:
    """Run ``otdist`` on ``argv``; return the exit code instead of exiting.

    Usage errors (unknown option, bad value) get the same one-line ``Error: <option>: ...``
    form as every other error, instead of a framed box.
    """
    from typer.main import get_command

    try:  # typer ≤ 0.19 uses click; later versions vendor it
        from click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:
        from typer._click import ClickException  # type: ignore[no-redef]

        NoArgsIsHelpError = ()  # type: ignore[assignment, misc]
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
    """Console-script entry point."""
    sys.exit(run())

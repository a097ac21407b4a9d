"""Options shared by the commands, declared once, and the one place they become a config.

Each ``*Opt`` is an ``Annotated`` type a command's signature uses as is, so help texts and
defaults cannot drift between ``pair``, ``batch`` and ``pairwise``; the choices come from
the library's own lists (costs, geometries, dtypes). ``_config`` turns the solver options
into a checked :class:`~otcli.config.SolveConfig`, and ``_guarded`` turns library errors
into one ``Error:`` line and an exit code.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.config import DTYPES, GEOMETRIES
from otcli.costs import COST_NAMES
from otcli.errors import OptionError, OtcliError

CostName = Enum("CostName", {name: name for name in COST_NAMES}, type=str)  # type: ignore[misc]
Geometry = Enum("Geometry", {name: name for name in GEOMETRIES}, type=str)  # type: ignore[misc]
DType = Enum("DType", {name: name for name in DTYPES}, type=str)  # type: ignore[misc]


SOLVER = "Solver"
UNBALANCED = "Unbalanced (relaxed marginals)"
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
        help="ε-annealing factor in (0, 1): ε goes from min(largest cost, 64 ε) down to --eps.",
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
        "multiscale: online, annealed on clusters of the points first (one large pair); "
        "auto: dense while C and Cᵀ fit --memory, else online (multiscale for one pair of "
        "16,384+ points each).",
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
        help="Coordinate columns, every file: comma-separated names, 0-based indices or "
        "inclusive ranges, e.g. x,y or 0-3 or 2- or x,y,3-5 \\[default: every numeric column].",
        rich_help_panel=INPUT,
        show_default=False,
    ),
]
ExcludeOpt = Annotated[
    str | None,
    typer.Option(
        help="Columns to leave out, every file (same forms as --columns), e.g. target.",
        rich_help_panel=INPUT,
        show_default=False,
    ),
]
IdOpt = Annotated[
    str | None,
    typer.Option(
        "--id",
        metavar="COL",
        help="Column of point ids, every file: read as text, never a coordinate; long-format "
        "couplings get i_id and j_id columns with them.",
        rich_help_panel=INPUT,
        show_default=False,
    ),
]
#: ``--id`` where no coupling is written (``pairwise``): the column is only kept out of the
#: coordinates.
IdNoCouplingOpt = Annotated[
    str | None,
    typer.Option(
        "--id",
        metavar="COL",
        help="Column of point ids, every file: read as text, never a coordinate.",
        rich_help_panel=INPUT,
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    str | None,
    typer.Option(
        "--threads",
        help="CPU threads for the solver: a number, or auto (the cores other work leaves "
        "free); a batch of small pairs solves that many buckets side by side "
        "\\[default: $OTCLI_THREADS, else auto].",
        rich_help_panel=SOLVER,
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int, typer.Option(help="Threads reading clouds ahead of the solver.", rich_help_panel=BATCH)
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace output files that already exist (an input file is never replaced).",
        rich_help_panel=OUTPUT,
    ),
]


ReachOpt = Annotated[
    float | None,
    typer.Option(
        "--reach",
        help="Unbalanced OT on both sides: mass is created or destroyed rather than moved "
        "much further than R (a distance in the points' units; penalty ρ = R^p for a p-th "
        "power cost: R² for sqeuclidean, R for euclidean and cityblock).",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]
ReachAOpt = Annotated[
    float | None,
    typer.Option(
        "--reach-a",
        help="Relax A's marginal only (semi-relaxed), with reach R.",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]
ReachBOpt = Annotated[
    float | None,
    typer.Option(
        "--reach-b",
        help="Relax B's marginal only (semi-relaxed), with reach R.",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]
RhoOpt = Annotated[
    float | None,
    typer.Option(
        "--rho",
        help="Unbalanced OT on both sides with marginal penalty ρ (cost units), instead of --reach.",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]
RhoAOpt = Annotated[
    float | None,
    typer.Option(
        "--rho-a",
        help="Relax A's marginal only, with penalty ρ.",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]
RhoBOpt = Annotated[
    float | None,
    typer.Option(
        "--rho-b",
        help="Relax B's marginal only, with penalty ρ.",
        rich_help_panel=UNBALANCED,
        show_default=False,
    ),
]

# Outputs of a single solve (``otdist matrix``; ``otdist A B`` declares the same inline).
CouplingOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write the coupling P: .npy dense n×m; .csv/.tsv/.parquet long i,j,value.",
        rich_help_panel=OUTPUT,
    ),
]
CouplingThresholdOpt = Annotated[
    float | None,
    typer.Option(
        help="Long formats keep P entries above this \\[default: 1e-9 × max P].",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
CouplingTopkOpt = Annotated[
    int | None,
    typer.Option(
        help="Long formats keep only the K largest P entries of each row.",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object.", rich_help_panel=OUTPUT)
]
ExactOpt = Annotated[
    bool,
    typer.Option(
        "--exact",
        help="Each pair's unregularised optimum (network simplex or assignment; optional "
        "extra otcli\\[exact]), one pair at a time, up to 25 million cost entries each; "
        "rows report eps 0.",
        rich_help_panel=SOLVER,
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the cost.", rich_help_panel=OUTPUT)
]
SolveProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress on stderr \\[default: on a terminal, after 1 s].",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        help="Solve on a Dask cluster: a scheduler's address (tcp://host:8786), or local:N for N "
        "worker processes here. Files must be reachable from the workers (or fsspec URLs); "
        "--device is resolved on each worker. Needs pip install 'otcli\\[dask]'.",
        rich_help_panel=BATCH,
        show_default=False,
    ),
]


def _guarded(call: Any, close: Any, interrupted: str) -> Any:
    """Run ``call``; errors become one line on stderr and an exit code (2 bad input or
    options, 1 a solver failure, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), never a traceback."""
    from otcli import render
    from otcli.cli.signals import exit_code
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
    except KeyboardInterrupt as exc:
        close()
        render.error(interrupted)
        raise typer.Exit(exit_code(exc)) from None
    finally:
        close()


def _exact(exact: bool, eps: float | None, eps_rel: float | None, divergence: bool = False) -> bool:
    """--exact, refused beside what needs an ε (every command's words alike)."""
    if exact and (eps is not None or eps_rel is not None or divergence):
        given = "--eps" if eps is not None else "--eps-rel" if eps_rel else "--divergence"
        raise OptionError("--exact", f"solves without ε; drop {given}")
    return exact


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
    reach: float | None = None,
    reach_a: float | None = None,
    reach_b: float | None = None,
    rho: float | None = None,
    rho_a: float | None = None,
    rho_b: float | None = None,
    threads: str | None = None,
) -> Any:
    """The shared solver options as one checked :class:`otcli.config.SolveConfig`.

    Threads: ``--threads``, else ``$OTCLI_THREADS``, else ``auto`` (each solve takes the
    cores other work leaves free at its start, as a library call does).
    """
    from otcli.config import make_config

    return make_config(
        eps=eps, eps_rel=eps_rel, cost=cost.value, p=p, max_iter=max_iter, tol=tol,
        scaling=None if no_scaling else scaling, device=device, dtype=dtype.value,
        geometry=geometry.value, memory=_parse_size(memory, "--memory"), max_batch=max_batch,
        reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho, rho_a=rho_a, rho_b=rho_b,
        threads=threads,  # None: $OTCLI_THREADS, else auto (errors name the one that was wrong)
    )  # fmt: skip


def _read_options(
    columns: str | None,
    weights: str | None,
    exclude: str | None = None,
    id_column: str | None = None,
) -> Any:
    from otcli.config import make_read_options

    return make_read_options(
        _split_list(columns, "--columns"), weights, _split_list(exclude, "--exclude"), id_column
    )


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
    if not (size > 0 and math.isfinite(size)):
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


# --- pictures: --plot on pair, batch, pairwise and show (optional extra otcli[plot]) -----------
PlotSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--plot-size",
        help="Picture size in inches, WIDTHxHEIGHT, each 1 to 100, e.g. 12x4 "
        "\\[default: fits the picture].",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


PlotDpiOpt = Annotated[
    int,
    typer.Option(
        "--plot-dpi",
        help="Dots per inch of a PNG picture (and of raster parts of SVG/PDF), 1 to 1200.",
        rich_help_panel=OUTPUT,
    ),
]


#: Sides of a picture, in inches: at 100 dpi, 100 to 10,000 pixels. Below an inch a
#: picture holds no readable panel, and 0.001 inch was zero pixels (PIL: "cannot write
#: empty image").
PLOT_INCHES = (1.0, 100.0)


def _plot_size(value: str | None) -> tuple[float, float] | None:
    """``12x4`` (inches) → (12.0, 4.0), each side within :data:`PLOT_INCHES`."""
    if value is None:
        return None
    parts = value.lower().replace("×", "x").split("x")
    try:
        width, height = (float(p) for p in parts)
    except ValueError:
        raise OptionError(
            "--plot-size", f"bad size {value!r}; give inches as WIDTHxHEIGHT, e.g. 12x4"
        ) from None
    lo, hi = PLOT_INCHES
    if not (lo <= width <= hi and lo <= height <= hi):
        raise OptionError(
            "--plot-size",
            f"size {value!r} is out of range; each side is {lo:g} to {hi:g} inches, e.g. 12x4",
        )
    return width, height


def _plot_dpi(value: int) -> int:
    """``--plot-dpi``, checked before any work (see :func:`otcli.plot.check_plot_options`)."""
    from otcli.plot.common import check_dpi

    return check_dpi(value)

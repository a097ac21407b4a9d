"""``otdist batch`` and ``otdist pairwise``: many pairs in one run, with a progress bar."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.cli.app import command, examples
from otcli.cli.options import (
    BATCH,
    INPUT,
    OUTPUT,
    SOLVER,
    ColumnsOpt,
    CostName,
    CostOpt,
    DeviceOpt,
    DType,
    DTypeOpt,
    EpsOpt,
    EpsRelOpt,
    ExactOpt,
    ExcludeOpt,
    Geometry,
    GeometryOpt,
    IdNoCouplingOpt,
    IdOpt,
    ManyProgressOpt,
    MaxBatchOpt,
    MaxIterOpt,
    MemoryOpt,
    NoScalingOpt,
    OverwriteOpt,
    PlotDpiOpt,
    PlotSizeOpt,
    POpt,
    ReachAOpt,
    ReachBOpt,
    ReachOpt,
    RhoAOpt,
    RhoBOpt,
    RhoOpt,
    ScalingOpt,
    SchedulerOpt,
    ThreadsOpt,
    TolOpt,
    WeightsOpt,
    WorkersOpt,
    _config,
    _exact,
    _guarded,
    _plot_dpi,
    _plot_size,
    _read_options,
)
from otcli.config import DEFAULT_MAX_ITER
from otcli.errors import OptionError

BATCH_EXAMPLES = examples(
    "# Score every pair of a manifest (columns id, a, b) into one table",
    "$ otdist batch sample_data/pairs.tsv -o scores.csv",
    "# With the divergence, into Parquet; rerun with --resume after a kill",
    "$ otdist batch sample_data/pairs.tsv -o scores.parquet --divergence",
    "$ otdist batch sample_data/pairs.tsv -o scores.parquet --divergence --resume",
)
PAIRWISE_EXAMPLES = examples(
    "# The cost between every two of four 2-D clouds: a CSV matrix with labels",
    "$ otdist pairwise sample_data/*.csv -o costs.csv",
    "# Debiased divergences (0 on the diagonal) as an N×N NumPy matrix",
    "$ otdist pairwise sample_data/*.csv --divergence -o divergences.npy",
    "# Clouds against every cloud of another list (rows: the first list's; resumable)",
    "$ otdist pairwise sample_data/*a.csv --against sample_data/*b.csv -o ab.csv",
)


def _backend(scheduler: str | None, device: str) -> Any:
    """The Dask backend for ``--scheduler`` (a context manager), else a no-op context."""
    import contextlib

    if scheduler is None:
        return contextlib.nullcontext()
    from otcli import render
    from otcli.batch.cluster import DaskBackend

    return DaskBackend(
        scheduler, device=device, announce=lambda line: typer.echo(line, err=True),
        warn=render.warning,
    )  # fmt: skip


def _client_device(device: str, scheduler: str | None) -> str:
    """The device the config names: ``--device`` here, but with ``--scheduler`` the workers
    resolve ``--device`` themselves and this machine (which solves nothing) need not have it."""
    return device if scheduler is None else "cpu"


class CouplingFormat(str, Enum):
    npy = "npy"
    parquet = "parquet"


def _run_many(call: Any, progress: bool | None, interrupted: str) -> None:
    """Run a batch/pairwise library call with a progress bar; errors → one line + exit code.

    Exit 2 for bad manifest/options, 1 if any pair failed (the run still completes) or
    ``--fail-fast`` stopped it, 130 on Ctrl-C. The summary table goes to stderr with the bar;
    a warning for the failed pairs and one for the unconverged, each whenever there are any.
    """
    from otcli import render

    bar = render.BatchProgress(force=progress)
    summary = _guarded(lambda: call(bar.start), bar.close, interrupted)
    if bar.enabled:
        render.run_summary(summary)
    if summary.failed:
        where = (
            f"see the status and error columns of {summary.out}"
            if summary.row_columns
            else f"their entries in {summary.out} are NaN; a .parquet output has a row per pair "
            "with its error"
        )
        render.warning(
            f"{summary.failed} of {summary.total} pairs failed (first: {summary.first_error}); "
            + where
        )
    if summary.not_converged:
        where = (
            f"see the converged and marginal_error columns of {summary.out}"
            if summary.row_columns
            else "a .parquet output has a row per pair with its converged and marginal_error"
        )
        render.warning(
            f"{summary.not_converged} of {summary.total} pairs did not converge to --tol; " + where
        )
    if summary.failed:
        raise typer.Exit(1)


@command("batch", epilog=BATCH_EXAMPLES)
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
    max_iter: MaxIterOpt = DEFAULT_MAX_ITER,
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
    reach: ReachOpt = None,
    reach_a: ReachAOpt = None,
    reach_b: ReachBOpt = None,
    rho: RhoOpt = None,
    rho_a: RhoAOpt = None,
    rho_b: RhoBOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    id_column: IdOpt = None,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = None,
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
    overwrite: OverwriteOpt = False,
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
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw histograms of cost and iterations (.png .svg .pdf), unconverged pairs "
            "marked (optional extra otcli\\[plot]).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot_size: PlotSizeOpt = None,
    plot_dpi: PlotDpiOpt = 100,
    scheduler: SchedulerOpt = None,
    exact: ExactOpt = False,
) -> None:
    """Score every pair of a manifest into one table; a killed run continues with --resume.

    One row per pair: id, a, b, n, m, eps, cost, objective, iterations, converged,
    marginal_error, status (ok or error), error (the message a single-pair run would print),
    seconds; plus divergence with --divergence. A bad pair never stops the run: its row says
    why, and the exit code is 1 at the end.
    """

    def call(start: Any) -> Any:
        from otcli.batch import run_batch

        # A resumed run draws its picture again over the one it drew before.
        size = _check_plot(
            plot,
            plot_size,
            plot_dpi,
            overwrite=overwrite or resume,
            inputs=[manifest],
            output=output,
        )
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=_client_device(device, scheduler), dtype=dtype,
            geometry=geometry, memory=memory,
            max_batch=max_batch, reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho,
            rho_a=rho_a, rho_b=rho_b,
            threads=threads,
        )  # fmt: skip
        if id_column is not None and coupling_dir is not None and coupling_format.value == "npy":
            raise OptionError(
                "--id", "point ids go in long-format couplings: add --coupling-format parquet"
            )
        with _backend(scheduler, device) as backend:
            summary = run_batch(
                manifest, output, config,
                read=_read_options(columns, weights, exclude, id_column),
                divergence=divergence, workers=workers, resume=resume, overwrite=overwrite,
                fail_fast=fail_fast, coupling_dir=coupling_dir,
                coupling_format=coupling_format.value, progress=start, backend=backend,
                exact=_exact(exact, eps, eps_rel),
            )  # fmt: skip
        if plot is not None:
            from otcli.plot import batch_file_figure, save_figure

            save_figure(batch_file_figure(output, size=size), plot, plot_dpi)
        return summary

    _run_many(call, progress, "interrupted; rerun the same command with --resume to continue")


@command("pairwise", epilog=PAIRWISE_EXAMPLES)
def pairwise(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="Clouds (.csv .tsv .txt .parquet .npy .npz), at least two in all (one with "
            "--against)."
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Result: .npy N×N matrix, .csv matrix with file labels, .parquet long table (i ≤ j).",
            rich_help_panel=OUTPUT,
        ),
    ] = ...,  # required; a missing -o is told as MISSING_HINTS in otcli.cli.app says
    files_from: Annotated[
        Path | None,
        typer.Option(
            help="Read more file paths from LIST, one per line (relative paths from the current "
            "directory, as ls or find wrote them).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            metavar="FILES...",
            show_default=False,
            help="Compare every FILE with each of these clouds instead of with each other: an "
            "|A|×|B| matrix (rows: FILEs, columns: these). Takes every word after it up to "
            "the next option.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    against_from: Annotated[
        Path | None,
        typer.Option(
            help="Read more --against paths from LIST, one per line.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    eps: EpsOpt = None,
    eps_rel: EpsRelOpt = None,
    geometry: GeometryOpt = Geometry.auto,
    cost: CostOpt = CostName.sqeuclidean,
    p: POpt = None,
    max_iter: MaxIterOpt = DEFAULT_MAX_ITER,
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
    reach: ReachOpt = None,
    reach_a: ReachAOpt = None,
    reach_b: ReachBOpt = None,
    rho: RhoOpt = None,
    rho_a: RhoAOpt = None,
    rho_b: RhoBOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    id_column: IdNoCouplingOpt = None,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = None,
    max_batch: MaxBatchOpt = 64,
    workers: WorkersOpt = 4,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --against: continue a killed run, or extend a finished .parquet one "
            "whose lists grew (pairs already scored are kept).",
            rich_help_panel=BATCH,
        ),
    ] = False,
    overwrite: OverwriteOpt = False,
    progress: ManyProgressOpt = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw the matrix as a heat map beside a 2-D classical MDS map of the files "
            "(.png .svg .pdf; optional extra otcli\\[plot]).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot_size: PlotSizeOpt = None,
    plot_dpi: PlotDpiOpt = 100,
    scheduler: SchedulerOpt = None,
    exact: ExactOpt = False,
) -> None:
    """The cost (or --divergence) between every two of the given clouds, each pair solved once.

    The diagonal holds each cloud against itself: its entropic self-cost ⟨P, C⟩ (not 0), or 0
    with --divergence. With --against, every FILE against every one of those clouds instead
    (rows: FILEs; resumable). Entries of pairs that failed are NaN (empty in CSV); exit code 1.
    """

    def call(start: Any) -> Any:
        from otcli.batch.pairwise import read_file_list, run_pairwise

        size = _plot_size(plot_size)
        _plot_dpi(plot_dpi)
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=_client_device(device, scheduler), dtype=dtype,
            geometry=geometry, memory=memory,
            max_batch=max_batch, reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho,
            rho_a=rho_a, rho_b=rho_b,
            threads=threads,
        )  # fmt: skip
        paths = list(files or [])
        listed = [] if files_from is None else [files_from]
        for file_list in listed:
            paths += read_file_list(file_list)
        others = list(against or [])
        if against_from is not None:
            others += read_file_list(against_from)
        if against is not None or against_from is not None:
            return _cross(paths, others, config, start)
        if resume:
            raise OptionError(
                "--resume", "only a run with --against is resumable; a square matrix is "
                "written whole at the end"
            )  # fmt: skip
        _check_plot(
            plot, plot_size, plot_dpi, overwrite=overwrite, inputs=paths + listed, output=output
        )
        with _backend(scheduler, device) as backend:
            summary = run_pairwise(
                paths, output, config,
                read=_read_options(columns, weights, exclude, id_column),
                divergence=divergence, workers=workers, overwrite=overwrite, progress=start,
                backend=backend, exact=_exact(exact, eps, eps_rel), also_read=listed,
            )  # fmt: skip
        if plot is not None:
            from otcli.plot import pairwise_file_figure, save_figure

            what = "divergence" if divergence else "cost"
            fig = pairwise_file_figure(output, paths, what=what, size=size)
            save_figure(fig, plot, plot_dpi)
        return summary

    def _cross(paths: list[str], others: list[str], config: Any, start: Any) -> Any:
        from otcli.batch.cross import run_cross

        if plot is not None:  # its MDS map needs every file against every other
            raise OptionError("--plot", "draws a square matrix; not with --against")
        lists = [f for f in (files_from, against_from) if f is not None]
        with _backend(scheduler, device) as backend:
            return run_cross(
                paths, others, output, config,
                read=_read_options(columns, weights, exclude, id_column),
                divergence=divergence, workers=workers, resume=resume, overwrite=overwrite,
                progress=start, backend=backend, exact=_exact(exact, eps, eps_rel), lists=lists,
            )  # fmt: skip

    interrupted = (
        "interrupted; rerun the same command with --resume to continue"
        if against is not None or against_from is not None
        else "interrupted; no output was written"
    )
    _run_many(call, progress, interrupted)


def _check_plot(
    plot: Path | None,
    plot_size: str | None,
    plot_dpi: int,
    *,
    overwrite: bool,
    inputs: list[Any],
    output: Path,
) -> tuple[float, float] | None:
    """Before the run: --plot's path and matplotlib, the overwrite policy (an input never,
    nor the run's -o), and the --plot-size and --plot-dpi it asks for."""
    size = _plot_size(plot_size)
    _plot_dpi(plot_dpi)
    if plot is not None:
        from otcli.io.writers import check_distinct_outputs, check_new_output
        from otcli.plot import check_plot_path

        check_plot_path(plot)
        check_new_output(plot, "--plot", overwrite=overwrite, inputs=inputs)
        check_distinct_outputs([("-o", output), ("--plot", plot)])
    return size

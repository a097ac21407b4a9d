"""``otdist barycenter FILES... -o OUT --points K``: the clouds' free-support barycenter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.cli.app import command, examples
from otcli.cli.options import (
    INPUT,
    OUTPUT,
    SOLVER,
    ColumnsOpt,
    CostName,
    DeviceOpt,
    DType,
    DTypeOpt,
    EpsOpt,
    ExcludeOpt,
    Geometry,
    GeometryOpt,
    IdNoCouplingOpt,
    JsonOpt,
    MaxIterOpt,
    MemoryOpt,
    NoScalingOpt,
    OverwriteOpt,
    ScalingOpt,
    ThreadsOpt,
    TolOpt,
    WeightsOpt,
    _config,
    _guarded,
    _read_options,
)
from otcli.config import DEFAULT_MAX_ITER, DEFAULT_OUTER_ITER, DEFAULT_OUTER_TOL
from otcli.errors import OptionError

BARYCENTER_EXAMPLES = examples(
    "# 15 points half-way between the two moons, a CSV with their columns",
    "$ otdist barycenter sample_data/moons_a.csv sample_data/moons_b.csv \\",
    "      -o bary.csv --points 15 --eps 0.01",
    "# A quarter of the way, debiased (no entropic shrinkage), as JSON",
    "$ otdist barycenter sample_data/moons_a.csv sample_data/moons_b.csv \\",
    "      -o quarter.npy --points 15 --eps 0.01 \\",
    "      --weights-of-files 3,1 --divergence --json",
)


@command("barycenter", epilog=BARYCENTER_EXAMPLES)
def barycenter(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="Clouds (.csv .tsv .txt .parquet .npy .npz) of one dimension, at least one in all."
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="The barycenter's points: .csv .tsv .parquet (the files' column names where "
            "they agree) or .npy.",
            rich_help_panel=OUTPUT,
        ),
    ] = ...,  # required; a missing -o is told as MISSING_HINTS in otcli.cli.app says
    points: Annotated[
        int,
        typer.Option(
            "--points",
            "-k",
            show_default=False,
            help="K, the number of support points (uniform masses 1/K).",
            rich_help_panel=SOLVER,
        ),
    ] = ...,
    weights_of_files: Annotated[
        str | None,
        typer.Option(
            "--weights-of-files",
            help="The files' weights w_k, comma-separated, one per file (≥ 0, not all zero; "
            "normalised) \\[default: equal].",
            rich_help_panel=SOLVER,
            show_default=False,
        ),
    ] = None,
    divergence: Annotated[
        bool,
        typer.Option(
            "--divergence",
            help="Minimise Σ_k w_k S_ε (the debiased Sinkhorn divergence) instead of "
            "Σ_k w_k OT_ε: no entropic shrinkage.",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the k-means++ draw of the initial support from the files' points.",
            rich_help_panel=SOLVER,
        ),
    ] = 0,
    outer_iter: Annotated[
        int,
        typer.Option(
            "--outer-iter",
            help="Most outer iterations (each one a batched solve of every cloud against the "
            "support, then a move of the support).",
            rich_help_panel=SOLVER,
        ),
    ] = DEFAULT_OUTER_ITER,
    outer_tol: Annotated[
        float,
        typer.Option(
            "--outer-tol",
            help="Stop once an iteration moves the support by less than this (root mean "
            "square, over the clouds' root mean square radius).",
            rich_help_panel=SOLVER,
        ),
    ] = DEFAULT_OUTER_TOL,
    files_from: Annotated[
        Path | None,
        typer.Option(
            help="Read more file paths from LIST, one per line (relative paths from the current "
            "directory, as ls or find wrote them).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    eps: EpsOpt = None,
    eps_rel: Annotated[
        float | None,
        typer.Option(
            "--eps-rel",
            help="ε as a fraction of the mean cost between the initial support and the files "
            "(w-weighted), fixed for the whole run, instead of --eps.",
            rich_help_panel=SOLVER,
            show_default=False,
        ),
    ] = None,
    max_iter: MaxIterOpt = DEFAULT_MAX_ITER,
    tol: TolOpt = None,
    scaling: ScalingOpt = 0.5,
    no_scaling: NoScalingOpt = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = DType.float32,
    geometry: GeometryOpt = Geometry.auto,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    id_column: IdNoCouplingOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="One line per outer iteration on stderr: the objective and the movement "
            "\\[default: on].",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = True,
) -> None:
    """The free-support Sinkhorn barycenter of the clouds in FILES: K points, written to OUT.

    Minimises Σ_k w_k OT_ε(bary, X_k) over the K support points (with --divergence the
    debiased Σ_k w_k S_ε), starting from K points of the files drawn by k-means++ (--seed).
    Each outer iteration solves every file against the support in one batched solve, then
    moves each point to the w-weighted mean of where the plans send it (the squared
    Euclidean cost's fixed point; balanced OT). --max-iter and --tol are each Sinkhorn solve's, as in other commands.
    """
    from otcli import render

    def call() -> Any:
        from otcli.barycenter_run import run_barycenter
        from otcli.batch.pairwise import read_file_list

        render.require_stdout()  # the result's one way out, before any work
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=CostName.sqeuclidean, p=None, max_iter=max_iter, tol=tol,
            scaling=scaling, no_scaling=no_scaling, device=device, dtype=dtype,
            geometry=geometry, memory=memory, threads=threads,
        )  # fmt: skip
        paths = list(files or [])
        listed = [] if files_from is None else [files_from]
        for file_list in listed:
            paths += read_file_list(file_list)

        def hear(index: int, objective: float, movement: float) -> None:
            render.iteration(index, objective, movement, divergence)

        return run_barycenter(
            paths, output, config, points=points,
            read=_read_options(columns, weights, exclude, id_column),
            weights=_weight_list(weights_of_files), divergence=divergence, seed=seed,
            outer_iter=outer_iter, outer_tol=outer_tol, overwrite=overwrite, also_read=listed,
            progress=hear if progress else None,
        )  # fmt: skip

    report = _guarded(call, lambda: None, "interrupted; no output was written")
    if report.iterations == 0:
        render.warning(f"--outer-iter 0: {output} holds the k-means++ start, not moved")
    elif not report.converged:
        render.warning(
            f"not converged: the support still moved {report.movement:.2e} of the clouds' "
            f"scale after --outer-iter {outer_iter} iterations (--outer-tol {outer_tol:g}); "
            "raise --outer-iter or --outer-tol"
        )
    if not report.solves_converged:
        render.warning(
            f"the final Sinkhorn solves did not all converge: marginal error up to "
            f"{report.marginal_error:.2e}, above --tol {report.tol:.0e}; raise --max-iter or --eps"
        )
    fields = report.fields()
    text = render.to_json(fields) if json_out else render.barycenter_summary(fields)
    _guarded(lambda: render.result(text), lambda: None, "interrupted")


def _weight_list(value: str | None) -> list[float] | None:
    """``--weights-of-files 1,2,1`` → [1.0, 2.0, 1.0] (checked further by the library)."""
    if value is None:
        return None
    out = []
    for item in value.split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise OptionError(
                "--weights-of-files",
                f"{item.strip()!r} in {value!r} is not a number; give one number per file, "
                "e.g. 1,1,2",
            ) from None
    return out

"""``otdist matrix C``: optimal transport for a cost matrix computed elsewhere."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from otcli.cli.app import command
from otcli.cli.options import (
    INPUT,
    CostName,
    CouplingOpt,
    CouplingThresholdOpt,
    CouplingTopkOpt,
    DeviceOpt,
    DType,
    DTypeOpt,
    EpsOpt,
    EpsRelOpt,
    Geometry,
    JsonOpt,
    MaxIterOpt,
    MemoryOpt,
    NoScalingOpt,
    OverwriteOpt,
    QuietOpt,
    RhoAOpt,
    RhoBOpt,
    RhoOpt,
    ScalingOpt,
    SolveProgressOpt,
    TolOpt,
    _config,
    _guarded,
)
from otcli.config import DEFAULT_MAX_ITER


@command("matrix")
def matrix(
    cost_matrix: Annotated[
        str,
        typer.Argument(
            metavar="C",
            help="Cost matrix: .npy dense n×m, or .parquet/.csv/.tsv long format with columns "
            "i, j (0-based) and value, every entry listed once.",
        ),
    ],
    a: Annotated[
        str | None,
        typer.Option(
            "--a",
            help="Masses of the n rows: one numeric column (.npy .csv .tsv .txt .parquet) "
            "\\[default: uniform].",
            rich_help_panel=INPUT,
            show_default=False,
        ),
    ] = None,
    b: Annotated[
        str | None,
        typer.Option(
            "--b",
            help="Masses of the m columns, same formats \\[default: uniform].",
            rich_help_panel=INPUT,
            show_default=False,
        ),
    ] = None,
    eps: EpsOpt = None,
    eps_rel: EpsRelOpt = None,
    max_iter: MaxIterOpt = DEFAULT_MAX_ITER,
    tol: TolOpt = None,
    scaling: ScalingOpt = 0.5,
    no_scaling: NoScalingOpt = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = DType.float32,
    memory: MemoryOpt = None,
    rho: RhoOpt = None,
    rho_a: RhoAOpt = None,
    rho_b: RhoBOpt = None,
    coupling: CouplingOpt = None,
    coupling_threshold: CouplingThresholdOpt = None,
    coupling_topk: CouplingTopkOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: SolveProgressOpt = None,
) -> None:
    """Optimal-transport cost for the cost matrix in file C (rows: A's points, columns: B's).

    For costs that are no formula of coordinates: geodesic distances, a learned metric, a
    matrix computed elsewhere. Prints the same figures as otdist A B; a matrix has no
    points, so there is no --reach (give the penalty with --rho) and no --divergence.
    """
    from otcli import render

    bar = render.SolveProgress(force=progress)

    def call() -> Any:
        from otcli.matrix import run_matrix
        from otcli.pair import PairOutputs

        render.require_stdout()  # the result's one way out, before any work
        # No --cost: run_matrix replaces the placeholder with the matrix itself.
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=CostName.sqeuclidean, p=None, max_iter=max_iter,
            tol=tol, scaling=scaling, no_scaling=no_scaling, device=device, dtype=dtype,
            geometry=Geometry.dense, memory=memory, rho=rho, rho_a=rho_a, rho_b=rho_b,
        )  # fmt: skip
        outputs = PairOutputs(
            coupling, None, coupling_threshold, coupling_topk, overwrite=overwrite
        )
        return run_matrix(
            cost_matrix, config, a=a, b=b, outputs=outputs, progress=bar, warn=render.warning
        )

    report = _guarded(call, bar.close, "interrupted; no output was written")
    if not report.converged:
        from otcli.pair import not_converged_message

        render.warning(not_converged_message(report, max_iter))
    if quiet:
        text = repr(report.cost)
    elif json_out:
        text = render.to_json(report.fields())
    else:
        text = render.summary(report.fields())
    _guarded(lambda: render.result(text), lambda: None, "interrupted")

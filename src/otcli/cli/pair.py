"""``otdist A B``: the cost between two clouds in files (the ``pair`` command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.cli.app import PAIR_COMMAND, command, examples
from otcli.cli.options import (
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
    ExcludeOpt,
    Geometry,
    GeometryOpt,
    IdOpt,
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
    ThreadsOpt,
    TolOpt,
    WeightsOpt,
    _config,
    _exact,
    _guarded,
    _plot_dpi,
    _plot_size,
    _read_options,
)
from otcli.config import DEFAULT_MAX_ITER
from otcli.errors import OptionError

PAIR_EXAMPLES = examples(
    "# The cost ⟨P, C⟩ between two clouds at the default ε = 0.1",
    "$ otdist sample_data/moons_a.csv sample_data/moons_b.csv",
    "# The debiased Sinkhorn divergence too, as one JSON object",
    "$ otdist sample_data/sphere.npy sample_data/torus.npz --divergence --json",
    "# Coordinates from named columns; the coupling P as long i,j,value CSV",
    "$ otdist sample_data/cells_a.tsv sample_data/cells_b.tsv \\",
    "      --columns pc1,pc2,pc3,pc4,pc5 --coupling plan.csv",
)


@command(PAIR_COMMAND, epilog=PAIR_EXAMPLES)
def pair(
    a: Annotated[
        str,
        typer.Argument(
            metavar="A",
            help="First cloud: .csv .tsv .txt .parquet .npy .npz, or - for stdin (CSV or TSV "
            "text, gzipped or not, Parquet, NPY or NPZ, told apart by content).",
        ),
    ],
    b: Annotated[str, typer.Argument(metavar="B", help="Second cloud, same formats.")],
    eps: EpsOpt = None,
    eps_rel: EpsRelOpt = None,
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
            help="Also compute the debiased Sinkhorn divergence.",
            rich_help_panel=SOLVER,
        ),
    ] = False,
    reach: ReachOpt = None,
    reach_a: ReachAOpt = None,
    reach_b: ReachBOpt = None,
    rho: RhoOpt = None,
    rho_a: RhoAOpt = None,
    rho_b: RhoBOpt = None,
    geometry: GeometryOpt = Geometry.auto,
    memory: MemoryOpt = None,
    threads: ThreadsOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    id_column: IdOpt = None,
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
    overwrite: OverwriteOpt = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Solve the unregularised problem exactly (network simplex; optional extra "
            "otcli\\[exact]), up to 25 million cost entries.",
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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="A pair that does not converge to --tol fails: exit 1, nothing on stdout and "
            "no output file (without it: a warning on stderr, exit 0).",
            rich_help_panel=OUTPUT,
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
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw the pair (.png .svg .pdf): the clouds with the transport drawn by mass "
            "(links or barycentric arrows), P and C as heat maps (optional extra otcli\\[plot]).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot_max_links: Annotated[
        int,
        typer.Option(
            help="--plot draws at most this many links, sampled by mass (or, for large pairs, "
            "at most 250 barycentric arrows).",
            rich_help_panel=OUTPUT,
        ),
    ] = 1000,
    plot_size: PlotSizeOpt = None,
    plot_dpi: PlotDpiOpt = 100,
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

        render.require_stdout()  # the result's one way out, before any work
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=device, dtype=dtype, geometry=geometry, memory=memory,
            reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho, rho_a=rho_a, rho_b=rho_b,
            threads=threads,
        )  # fmt: skip
        if json_out and quiet:
            raise OptionError("--quiet", "prints the bare number, --json one object; give one")
        outputs = PairOutputs(
            coupling, cost_matrix, coupling_threshold, coupling_topk, plot, plot_max_links,
            _plot_size(plot_size), overwrite=overwrite, plot_dpi=_plot_dpi(plot_dpi),
        )  # fmt: skip
        _exact(exact, eps, eps_rel, divergence)
        return run_pair(
            a, b, config, read=_read_options(columns, weights, exclude, id_column),
            outputs=outputs, divergence=divergence, exact=exact, progress=bar,
            warn=render.warning, note=render.note, strict=strict,
        )  # fmt: skip

    report = _guarded(call, bar.close, "interrupted; no output was written")
    if not report.converged:
        from otcli.pair import not_converged_message

        render.warning(not_converged_message(report, max_iter))
    if quiet:
        text = repr(report.divergence if divergence else report.cost)
    elif json_out:
        text = render.to_json(report.fields())
    else:
        text = render.summary(report.fields())
    _guarded(lambda: render.result(text), lambda: None, "interrupted")

"""``otdist map A B --apply X -o OUT``: move the points of a file with the entropic map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.cli.app import command, examples
from otcli.cli.options import (
    INPUT,
    OUTPUT,
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
    JsonOpt,
    MaxIterOpt,
    MemoryOpt,
    NoScalingOpt,
    OverwriteOpt,
    POpt,
    ReachAOpt,
    ReachBOpt,
    ReachOpt,
    RhoAOpt,
    RhoBOpt,
    RhoOpt,
    ScalingOpt,
    SolveProgressOpt,
    ThreadsOpt,
    TolOpt,
    WeightsOpt,
    _config,
    _guarded,
    _read_options,
)
from otcli.config import DEFAULT_MAX_ITER
from otcli.errors import OptionError

MAP_EXAMPLES = examples(
    "# Move A's own points onto B (the barycentric projection), ids carried along",
    "$ otdist map sample_data/cells_a.tsv sample_data/cells_b.tsv \\",
    "      --id id --columns pc1,pc2,pc3,pc4,pc5 \\",
    "      --apply sample_data/cells_a.tsv -o moved.tsv",
    "# Solve once, keep the map, move another file later without solving",
    "$ otdist map sample_data/moons_a.csv sample_data/moons_b.csv \\",
    "      --apply sample_data/moons_a.csv -o moved.csv \\",
    "      --save-potentials moons.npz",
    "$ otdist map --potentials moons.npz --inverse \\",
    "      --apply sample_data/moons_b.csv -o back.csv",
)

IdMapOpt = Annotated[
    str | None,
    typer.Option(
        "--id",
        metavar="COL",
        help="Column of point ids, every file: read as text, never a coordinate; carried "
        "into OUT unchanged.",
        rich_help_panel=INPUT,
        show_default=False,
    ),
]


@command("map", epilog=MAP_EXAMPLES)
def map_points(
    a: Annotated[
        str | None,
        typer.Argument(
            metavar="A",
            help="Source cloud (.csv .tsv .txt .parquet .npy .npz); not with --potentials.",
            show_default=False,
        ),
    ] = None,
    b: Annotated[
        str | None,
        typer.Argument(metavar="B", help="Target cloud, same formats.", show_default=False),
    ] = None,
    apply: Annotated[
        str,
        typer.Option(
            "--apply",
            metavar="X",
            help="File of points to move (.csv .tsv .txt, also .gz, .parquet .npy): A itself, "
            "or any points of A's space (B's with --inverse), millions streamed in chunks.",
            rich_help_panel=INPUT,
            show_default=False,
        ),
    ] = ...,  # type: ignore[assignment]
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Moved points, in the format of OUT's extension (.csv .tsv .txt .parquet "
            ".npy): X's columns in X's order, the coordinates replaced, every other column "
            "(ids, labels, weights) unchanged.",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = ...,  # type: ignore[assignment]
    inverse: Annotated[
        bool,
        typer.Option(
            "--inverse", help="Move points of B's space onto A instead.", rich_help_panel=OUTPUT
        ),
    ] = False,
    save_potentials: Annotated[
        Path | None,
        typer.Option(
            "--save-potentials",
            metavar="FILE",
            help="Also write the solved map (.npz: potentials, ε, cost, both clouds) for "
            "--potentials.",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    potentials: Annotated[
        Path | None,
        typer.Option(
            "--potentials",
            metavar="FILE",
            help="Use a map saved by --save-potentials instead of solving (no A and B, no "
            "solver options).",
            rich_help_panel=INPUT,
            show_default=False,
        ),
    ] = None,
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
    id_column: IdMapOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="A solve that does not converge to --tol fails: exit 1, nothing written.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    progress: SolveProgressOpt = None,
) -> None:
    """Move points with the entropic transport map of A → B and write them to OUT.

    Solves A → B as otdist A B does (every solver option), then sends each point x of X to
    T(x) = Σ_j b_j e^{(g_j − C(x, y_j))/ε} y_j / Σ_j b_j e^{(g_j − C(x, y_j))/ε}: at A's own
    points the barycentric projection (P y)_i / a_i, and defined for any point of A's space.
    """
    from otcli import render

    bar = render.SolveProgress(force=progress)

    def call() -> Any:
        from otcli.mapping import run_map

        render.require_stdout()
        if potentials is not None:
            given = [name for name, value in (
                ("--eps", eps), ("--eps-rel", eps_rel), ("--p", p), ("--reach", reach),
                ("--reach-a", reach_a), ("--reach-b", reach_b), ("--rho", rho),
                ("--rho-a", rho_a), ("--rho-b", rho_b), ("--tol", tol),
            ) if value is not None]  # fmt: skip
            if cost != CostName.sqeuclidean:
                given.append("--cost")
            if given:
                raise OptionError(
                    "--potentials", f"the saved map fixes the solve; drop {', '.join(given)}"
                )
        config = _config(
            eps=eps, eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            no_scaling=no_scaling, device=device, dtype=dtype, geometry=geometry, memory=memory,
            reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho, rho_a=rho_a, rho_b=rho_b,
            threads=threads,
        )  # fmt: skip
        return run_map(
            a, b, apply, output, config, read=_read_options(columns, weights, exclude, id_column),
            inverse=inverse, potentials=potentials, save_potentials=save_potentials,
            overwrite=overwrite, strict=strict, progress=bar, warn=render.warning,
            note=render.note,
        )  # fmt: skip

    report = _guarded(call, bar.close, "interrupted; no output was written")
    fields = report.fields()
    text = render.to_json(fields) if json_out else render.map_summary(fields)
    _guarded(lambda: render.result(text), lambda: None, "interrupted")

"""``otdist show FILE``: summarise (and with --plot, draw) a file an earlier run wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from otcli.cli.app import command
from otcli.cli.options import (
    OUTPUT,
    OverwriteOpt,
    PlotDpiOpt,
    PlotSizeOpt,
    _guarded,
    _plot_dpi,
    _plot_size,
)


@command("show")
def show(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="A coupling or cost matrix (.npy; .parquet/.csv/.tsv with columns i, j, "
            "value), or a batch or pairwise output.",
        ),
    ],
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw it (.png .svg .pdf): a matrix as a heat map, a pairwise output with its "
            "MDS map, a batch output as histograms (optional extra otcli\\[plot]).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot_size: PlotSizeOpt = None,
    plot_dpi: PlotDpiOpt = 100,
    overwrite: OverwriteOpt = False,
    top: Annotated[
        int,
        typer.Option(help="Largest entries (strongest links) listed.", rich_help_panel=OUTPUT),
    ] = 10,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object.", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """Summarise a coupling, cost matrix, batch or pairwise output written earlier.

    A matrix: shape, total mass, sparsity, value range, row and column masses, strongest
    links. A batch or pairwise output: counts of ok, failed and unconverged pairs, ranges of
    cost and iterations, the failed rows. --plot draws it.
    """
    from otcli import render

    def call() -> Any:
        from otcli.errors import OptionError
        from otcli.io.stored import read_stored
        from otcli.summary import summarise

        if top < 0:
            raise OptionError("--top", f"must be ≥ 0, got {top}")
        if plot is None:  # the summary is the result; with --plot the picture is
            render.require_stdout()
        size = _plot_size(plot_size)
        _plot_dpi(plot_dpi)
        if plot is not None:
            from otcli.io.writers import check_new_output
            from otcli.plot import check_plot_path

            check_plot_path(plot)
            check_new_output(plot, "--plot", overwrite=overwrite, inputs=(file,))
        stored = read_stored(file)
        summary = summarise(stored, top)
        if plot is not None:
            from otcli.plot import save_figure, stored_figure

            save_figure(stored_figure(stored, size=size), plot, plot_dpi)
        return summary

    summary = _guarded(call, lambda: None, "interrupted")
    if json_out:
        typer.echo(render.to_json(summary.fields()))
    else:
        render.stored_summary(summary)

"""The whole barycenter run as one library call: read the files → barycenter → write → report.

``otdist barycenter`` is :func:`run_barycenter` plus rendering. Everything that can be
refused is refused before the first solve (the options, every file's existence, the output
path and the overwrite rule), and the clouds are all read and checked before the loop, so a
run either writes OUT whole or leaves it as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from otcli.config import DEFAULT_OUTER_ITER, DEFAULT_OUTER_TOL, ReadOptions, SolveConfig
from otcli.errors import InputError, OptionError


@dataclass(frozen=True)
class BarycenterReport:
    """What a barycenter run found, as the text and JSON outputs show it.

    ``objective``: Σ_k w_k OT_ε(bary, X_k), or Σ_k w_k S_ε(bary, X_k) with ``divergence``;
    ``cloud_objectives``: each cloud's OT_ε (or S_ε) to the barycenter. ``movement``: the
    last iteration's movement over ``scale`` (the clouds' root mean square radius);
    ``converged``: it fell below ``outer_tol``. ``weights``: the files' w_k, normalised.
    ``marginal_error``: the largest of the final solves' (the barycenter against each
    file, and against itself with ``divergence``); ``solves_converged``: each met ``tol``,
    the Sinkhorn solves' marginal tolerance.
    """

    files: list[str]
    output: str
    points: int
    dim: int
    weights: list[float]
    objective: float
    cloud_objectives: list[float]
    divergence: bool
    eps: float
    iterations: int
    converged: bool
    movement: float
    outer_tol: float
    scale: float
    marginal_error: float
    tol: float
    solves_converged: bool
    seed: int
    columns: list[str]
    device: str
    dtype: str
    seconds: float

    def fields(self) -> dict[str, Any]:
        """The report as the JSON object's fields."""
        return asdict(self)


def run_barycenter(
    files: Sequence[str],
    out: str | os.PathLike[str],
    config: SolveConfig,
    *,
    points: int,
    read: ReadOptions | None = None,
    weights: Sequence[float] | None = None,
    divergence: bool = False,
    seed: int = 0,
    outer_iter: int | None = None,
    outer_tol: float | None = None,
    overwrite: bool = False,
    also_read: Sequence[str | os.PathLike[str]] = (),
    progress: Callable[[int, float, float], None] | None = None,
) -> BarycenterReport:
    """The barycenter of the clouds in ``files``, its ``points`` written to ``out``.

    ``out``'s extension picks the format (:data:`~otcli.io.points.POINT_SUFFIXES`); its
    columns are the files' coordinate columns where every file has the same ones, else
    ``0``, ``1``, … An existing ``out`` is refused unless ``overwrite``, an input file
    (or an ``also_read`` file list) always. ``weights`` are the files' w_k (default equal).
    The rest is :func:`otcli.barycenters.barycenter`'s. Raises
    :class:`~otcli.errors.OtcliError` for bad input or options, before any solve.
    """
    from otcli.barycenters import barycenter, cloud_weights
    from otcli.io import check_output_path, read_cloud
    from otcli.io.points import POINT_SUFFIXES, write_points
    from otcli.io.writers import check_new_output

    read = ReadOptions() if read is None else read
    out_path = check_output_path(out, "-o", POINT_SUFFIXES)
    if not files:
        raise OptionError("FILE", "give at least one cloud file (or --files-from LIST)")
    w = cloud_weights(weights, len(files))
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise InputError(missing[0], f"no such file; check the path{more}")
    check_new_output(out_path, "-o", overwrite=overwrite, inputs=[*files, *also_read])
    options = {
        "columns": read.columns, "weights": read.weights, "exclude": read.exclude,
        "id_column": read.id_column,
    }  # fmt: skip
    clouds = [read_cloud(f, **options) for f in files]
    result = barycenter(
        clouds, w, points=points, divergence=divergence, seed=seed, config=config,
        outer_iter=DEFAULT_OUTER_ITER if outer_iter is None else outer_iter,
        outer_tol=DEFAULT_OUTER_TOL if outer_tol is None else outer_tol, progress=progress,
    )  # fmt: skip
    write_points(out_path, result.points, result.columns)
    values = [r.divergence if divergence else r.objective for r in result.results]
    # The final solves: each file against the barycenter, and its own term with divergence.
    solves = [r.xy for r in result.results] if divergence else list(result.results)
    if divergence:
        solves.append(result.results[0].xx)  # type: ignore[union-attr]
    first = solves[0]
    return BarycenterReport(
        files=[os.fspath(f) for f in files], output=os.fspath(out), points=len(result.points),
        dim=int(result.points.shape[1]), weights=[float(x) for x in result.cloud_weights],
        objective=result.objective, cloud_objectives=[float(v) for v in values],
        divergence=divergence, eps=result.eps, iterations=result.iterations,
        converged=result.converged, movement=result.movement, outer_tol=result.tol,
        scale=result.scale, marginal_error=max(s.marginal_error for s in solves),  # type: ignore[union-attr]
        tol=first.tol, solves_converged=all(s.converged for s in solves), seed=seed,  # type: ignore[union-attr]
        columns=list(result.columns), device=first.device, dtype=first.dtype,  # type: ignore[union-attr]
        seconds=result.seconds,
    )  # fmt: skip


__all__ = ["BarycenterReport", "run_barycenter"]

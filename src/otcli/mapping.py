"""``otdist map`` as one library call: solve A → B (or load saved potentials), then move the
points of a file X with the entropic map and write them, X's other columns carried along.

Everything that can be refused is refused before the solve: the output paths, the inputs,
and X itself (read whole first: a NaN or a wrong dimension in X costs no solve). X is then
moved and written a chunk of rows at a time (:func:`otcli.io.moved.write_moved`), so memory
is X's columns plus one chunk, whatever its length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from otcli.config import ReadOptions, SolveConfig
from otcli.errors import InputError, OptionError, SolverError
from otcli.solver import ProgressFn, report_stage


@dataclass(frozen=True)
class MapReport:
    """What ``otdist map`` did: the solve (or the saved potentials it used) and the move.

    ``points`` rows of ``apply`` were moved ``direction`` (``A → B``, or ``B → A`` with
    ``--inverse``) into ``out``; ``solve_seconds`` is 0 with saved potentials (``potentials``
    names their file), ``map_seconds`` the move and write."""

    apply: str
    out: str
    points: int
    direction: str
    n: int
    m: int
    dim: int
    cost: float
    eps: float
    cost_fn: str
    iterations: int
    converged: bool
    marginal_error: float
    tol: float
    device: str
    dtype: str
    solve_seconds: float
    map_seconds: float
    potentials: str | None = None
    saved: str | None = None
    mass: float | None = None

    def fields(self) -> dict[str, Any]:
        """The report as JSON fields (``potentials``, ``saved`` and ``mass`` only when set)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def run_map(
    a: str | None,
    b: str | None,
    apply: str,
    out: str | os.PathLike[str],
    config: SolveConfig,
    *,
    read: ReadOptions | None = None,
    inverse: bool = False,
    potentials: str | os.PathLike[str] | None = None,
    save_potentials: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    strict: bool = False,
    progress: ProgressFn | None = None,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> MapReport:
    """Move the points of file ``apply`` with the entropic map of A → B and write them to
    ``out`` (its format by extension: .csv .tsv .txt .parquet .npy; X's columns kept, the
    coordinates replaced). ``inverse`` moves B's side onto A. ``potentials``: a file from
    ``save_potentials`` instead of A and B (then ``a`` and ``b`` must be None and no solve
    runs). ``read`` picks the coordinate, weight and id columns of every file. Raises
    :class:`~otcli.errors.OtcliError` for bad input or options (before any solving where it
    can be known), :class:`~otcli.errors.SolverError` when the numbers fail (or, with
    ``strict``, when the solve does not converge: then nothing is written).
    """
    from otcli import api
    from otcli.device import release_freed_memory
    from otcli.io import check_output_path, read_cloud
    from otcli.io.moved import MOVED_SUFFIXES, check_moved_output, read_point_table, write_moved
    from otcli.io.writers import check_distinct_outputs, check_new_output
    from otcli.pair import eps_message, not_converged_message
    from otcli.potentials import load_potentials
    from otcli.potentials import save_potentials as save
    from otcli.transport import result_map

    read = ReadOptions() if read is None else read
    if potentials is not None and (a is not None or b is not None):
        raise OptionError(
            "--potentials", "holds the solved pair already; give --apply X -o OUT without A and B"
        )
    if potentials is None and (a is None or b is None):
        raise OptionError("A", "give the two clouds A and B to solve, or --potentials FILE")
    if apply == "-" or a == "-" or b == "-":
        raise OptionError("--apply", "otdist map reads files, not standard input; save it first")
    inputs = [p for p in (a, b, apply, potentials) if p is not None]
    check_output_path(out, "-o", MOVED_SUFFIXES)
    check_new_output(out, "-o", overwrite=overwrite, inputs=inputs)
    if save_potentials is not None:
        check_output_path(save_potentials, "--save-potentials", (".npz",))
        check_new_output(save_potentials, "--save-potentials", overwrite=overwrite, inputs=inputs)
    check_distinct_outputs([("-o", out), ("--save-potentials", save_potentials)])

    if potentials is not None:
        report_stage(progress, f"reading {potentials}")
        res = load_potentials(potentials)
        x, y = res.x, res.y
    else:
        options = {"columns": read.columns, "weights": read.weights, "exclude": read.exclude,
                   "id_column": read.id_column}  # fmt: skip
        report_stage(progress, f"reading {a}")
        x = read_cloud(a, **options)  # type: ignore[arg-type]
        report_stage(progress, f"reading {b}")
        y = read_cloud(b, **options)  # type: ignore[arg-type]
        api.check_pair(x, y, config.cost, config.dtype)
    report_stage(progress, f"reading {apply}")
    table = read_point_table(
        apply, columns=read.columns, weights=read.weights, exclude=read.exclude,
        id_column=read.id_column,
    )  # fmt: skip
    for cloud in (x, y, table.cloud) if potentials is None else (table.cloud,):
        for message in cloud.notes if note is not None else ():
            note(f"{cloud.source}: {message}")
    side, label = (y, "B") if inverse else (x, "A")
    if table.cloud.dim != side.dim:
        raise InputError(
            apply,
            f"{_columns(table.cloud)} but {label} ({side.source}) has {_columns(side)}: the map "
            f"moves points of {label}'s space; pick the same coordinates with --columns",
        )
    check_moved_output(table, out, "-o")

    solve_seconds = 0.0
    if potentials is None:
        eps, scale = api.pair_eps(x, y, config)
        message = eps_message(eps, scale, config.max_iter)
        if warn is not None and message is not None:
            warn(message)
        res = api.solve(x, y, eps=eps, config=config, progress=progress)  # type: ignore[assignment]
        solve_seconds = res.seconds
        if strict and not res.converged:
            raise SolverError(
                f"{a} vs {b}: not converged (marginal error {res.marginal_error:.2e} above "
                f"--tol {res.tol:.0e}); with --strict nothing is written"
            )
        if not res.converged and warn is not None:
            warn(not_converged_message(_pair_view(res, scale), config.max_iter))
    release_freed_memory()  # the solve's and the readers' freed blocks: not needed to move X
    start = time.perf_counter()
    if save_potentials is not None:
        report_stage(progress, f"writing {os.fspath(save_potentials)}")
        save(res, save_potentials)

    def tell(done: int, total: int) -> None:
        report_stage(progress, f"moving points {done:,}/{total:,}")

    def move(points: Any) -> Any:
        return result_map(res, points, inverse=inverse, name=apply, threads=config.threads)

    write_moved(out, table, move, progress=tell)
    return MapReport(
        apply=apply, out=os.fspath(out), points=table.n,
        direction="B → A" if inverse else "A → B", n=res.n, m=res.m, dim=res.dim,
        cost=res.cost, eps=res.eps, cost_fn=res.cost_fn.describe(), iterations=res.iterations,
        converged=res.converged, marginal_error=res.marginal_error, tol=res.tol,
        device=res.device, dtype=res.dtype, solve_seconds=solve_seconds,
        map_seconds=time.perf_counter() - start,
        potentials=None if potentials is None else os.fspath(potentials),
        saved=None if save_potentials is None else os.fspath(save_potentials),
        mass=res.mass if res.unbalanced else None,
    )  # fmt: skip


def _columns(cloud: Any) -> str:
    shown = ", ".join(cloud.columns[:8]) + (", …" if cloud.dim > 8 else "")
    plural = "s" if cloud.dim != 1 else ""
    return f"{cloud.dim} coordinate column{plural} ({shown})"


def _pair_view(res: Any, scale: float) -> Any:
    """The fields :func:`otcli.pair.not_converged_message` reads, from a result."""
    from types import SimpleNamespace

    return SimpleNamespace(
        marginal_error=res.marginal_error, tol=res.tol, iterations=res.iterations,
        eps=res.eps, eps_rel=res.eps / scale if scale > 0 else float("inf"),
        cost_scale=scale, dtype=res.dtype,
    )  # fmt: skip


__all__ = ["MapReport", "run_map"]

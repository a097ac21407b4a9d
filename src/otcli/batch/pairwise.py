"""Every unordered pair of N clouds, each solved once, as a symmetric matrix or a long table.

The N(N−1)/2 cross problems and the N self problems (the diagonal, and the correction terms
of the divergence) go through the batch engine together
(:meth:`otcli.batch.engine.Engine.solve_in_buckets`).
Output by extension: ``.npy`` an N×N float64 matrix, ``.csv`` the same with the files as row
and column labels, ``.parquet`` a long table with one row per pair i ≤ j (status and error
included). Failed entries are NaN (empty in CSV) and make the run exit 1. Every file must
exist before any work starts, and OUT follows the overwrite policy of every output
(:func:`~otcli.io.writers.check_new_output`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import (
    CloudLoader,
    Engine,
    ProgressHook,
    RunSummary,
    check_exact,
    check_workers,
    divergence_value,
)
from otcli.batch.solving import solve_pairs
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import InputError, OptionError
from otcli.io import check_output_path
from otcli.io.tables import LONG_FIELDS
from otcli.io.tables import read_file_list as read_file_list  # re-exported for the CLI
from otcli.io.tables import write_pairwise as _write
from otcli.io.writers import check_new_output

if TYPE_CHECKING:
    from otcli.batch.cluster import DaskBackend
    from otcli.cloud import Cloud
    from otcli.result import SinkhornResult

PAIRWISE_SUFFIXES = (".npy", ".csv", ".parquet")


def run_pairwise(
    files: Sequence[str],
    out: str | os.PathLike[str],
    config: SolveConfig,
    *,
    read: ReadOptions | None = None,
    divergence: bool = False,
    workers: int = 4,
    overwrite: bool = False,
    progress: Callable[[int, int], ProgressHook] | None = None,
    backend: DaskBackend | None = None,
    exact: bool = False,
    also_read: Sequence[str | os.PathLike[str]] = (),
) -> RunSummary:
    """Solve every pair i ≤ j of ``files`` once and write the matrix or long table to ``out``.

    The diagonal holds each cloud against itself: the entropic self-cost ⟨P, C⟩ (not zero),
    or exactly 0 with ``divergence``. Raises :class:`~otcli.errors.OtcliError` for bad
    options, a file that does not exist, or an existing ``out`` (unless ``overwrite``; an
    input file never, nor ``also_read``: a ``--files-from`` list); unreadable files and
    failed solves become NaN entries and error rows. With a
    ``backend`` (a :class:`~otcli.batch.cluster.DaskBackend`) the pairs are solved on its
    cluster, each worker reading the files it needs once.
    """
    start = time.perf_counter()
    read = ReadOptions() if read is None else read
    check_workers(workers)
    out_path = check_output_path(out, "-o", PAIRWISE_SUFFIXES)
    if len(files) < 2:
        raise OptionError("FILE", f"got {len(files)} file(s); pairwise needs at least two")
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise InputError(missing[0], f"no such file; check the path{more}")
    check_new_output(out_path, "-o", overwrite=overwrite, inputs=[*files, *also_read])
    relative = divergence and config.eps_rel is not None  # self terms at each pair's ε
    if relative and backend is not None:
        raise OptionError(
            "--eps-rel",
            "pairwise --divergence --eps-rel solves each pair's self terms at its own ε, "
            "in this process only; drop --scheduler or give --eps",
        )
    if config.rho_a != config.rho_b:  # OT(a, b) ≠ OT(b, a): no symmetric matrix
        raise OptionError(
            "--reach-a/--rho-a" if config.rho_a is not None else "--reach-b/--rho-b",
            "pairwise solves each pair once for a symmetric matrix; relax both sides alike "
            "(--reach or --rho)",
        )
    check_exact(exact, divergence=divergence, backend=backend)
    engine = Engine.create(config, exact)
    n_files = len(files)
    total = n_files * (n_files + 1) // 2
    if backend is not None:
        backend.connect(config, files)
    hook = progress(total, 0) if progress is not None else None
    if backend is not None:
        clouds, outcomes, shares = backend.run_pairwise(files, config, read, workers, hook)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="otdist-io") as pool:
            loader = CloudLoader(pool, read)
            loader.prefetch(files)
            clouds = [loader.get(f) for f in files]
        outcomes, shares = solve_pairs(clouds, engine, config.eps, hook, self_terms=relative)
    rows = [
        _row(i, j, files, clouds, outcomes, shares, config.eps, divergence)
        for i in range(n_files)
        for j in range(i, n_files)
    ]
    _write(out_path, rows, files, divergence)
    summary = RunSummary(
        total=total, seconds=time.perf_counter() - start, out=str(out_path),
        row_columns=out_path.suffix.lower() == ".parquet",
    )  # fmt: skip
    for r in rows:
        if r["status"] == "ok":
            summary.ok += 1
            summary.not_converged += not r["converged"]
        else:
            summary.failed += 1
            summary.first_error = summary.first_error or r["error"]
    return summary


def _row(
    i: int,
    j: int,
    files: Sequence[str],
    clouds: Sequence[Cloud | str],
    outcomes: dict[tuple[int, ...], SinkhornResult | str],
    shares: dict[tuple[int, int], float],
    eps: float,
    divergence: bool,
) -> dict[str, Any]:
    """The long-table row of pair (i, j); with divergence, it needs (i, i) and (j, j) too."""
    ci, cj = clouds[i], clouds[j]
    row: dict[str, Any] = dict.fromkeys(LONG_FIELDS)
    row.update(
        i=i, j=j, a=files[i], b=files[j], eps=eps,
        n=None if isinstance(ci, str) else ci.n, m=None if isinstance(cj, str) else cj.n,
    )  # fmt: skip
    res = outcomes[(i, j)]
    needed = [res]
    if divergence and (i, j, 0) in outcomes:  # self terms at this pair's own ε
        needed += [outcomes[(i, j, 0)], outcomes[(i, j, 1)]]
    elif divergence:
        needed += [outcomes[(i, i)], outcomes[(j, j)]]
    reason = next((o for o in needed if isinstance(o, str)), None)
    if reason is not None:
        row.update(status="error", error=reason)
        return row
    xy = res
    xx, yy = (needed[1], needed[2]) if divergence else (res, res)
    row.update(
        cost=xy.cost, objective=xy.objective, iterations=xy.iterations,
        converged=all(o.converged for o in needed), marginal_error=xy.marginal_error,
        eps=xy.eps,
        status="ok", seconds=shares[(i, j)],
    )  # fmt: skip
    if divergence:
        row["divergence"] = 0.0 if i == j else divergence_value(xy, xx, yy)
    return row

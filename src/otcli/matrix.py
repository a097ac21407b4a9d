"""Optimal transport for a cost matrix given as it is: ``otdist matrix C.npy [--a A --b B]``.

Costs that are no formula of coordinates (geodesic distances on a mesh, a learned metric, a
matrix computed elsewhere) come as an n×m matrix. Such a problem has no points, so it is
posed between index clouds, x_i = i and y_j = j (one coordinate each), with a cost that
looks C up at those indices (:class:`MatrixCost`). Everything that takes a cost then works
unchanged: both dense geometries (which take the matrix itself, see
:meth:`~otcli.costs.CostFn.whole`, so a solve holds C plus one n×m matrix, Cᵀ or the
kernel, as for clouds), the final statistics, ``plan()``, and the files written.

The memory rule of clouds applies (:func:`~otcli.config.dense_bytes`): a matrix whose solve
would not fit the budget is refused with the size it needs, before it is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from otcli.config import SolveConfig, dense_bytes, make_config
from otcli.costs import CostFn
from otcli.errors import InputError, OptionError
from otcli.keywords import _keyword_errors

if TYPE_CHECKING:
    import torch

    from otcli.cloud import Cloud
    from otcli.pair import MatrixReport, PairOutputs
    from otcli.result import SinkhornResult
    from otcli.solver import ProgressFn


@dataclass(frozen=True, eq=False)
class MatrixCost(CostFn):
    """C_ij looked up in a precomputed (n, m) matrix, for index points x_i = i, y_j = j.

    ``matrix`` is held in the working dtype on the solving device; nothing is assumed of
    it (not symmetric, no box bound, no power of a distance: ``--rho``, not ``--reach``).
    """

    name: ClassVar[str] = "matrix"
    translation_invariant: ClassVar[bool] = False  # the points are indices: never centred
    symmetric: ClassVar[bool] = False
    coordinate_formula: ClassVar[bool] = False
    matrix: torch.Tensor
    source: str = "<array>"

    __eq__ = object.__eq__  # by identity: no elementwise comparison of matrices
    __hash__ = object.__hash__

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows, cols = x[..., 0].long(), y[..., 0].long()  # (B, n), (B, m)
        mat = self.matrix if self.matrix.device == x.device else self.matrix.to(x.device)
        return mat[rows[:, :, None], cols[:, None, :]].to(x.dtype)  # (B, n, m), a new tensor

    def whole(self, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        import torch

        n, m = self.matrix.shape
        if x.shape != (1, n, 1) or y.shape != (1, m, 1) or dtype != self.matrix.dtype:
            return None
        idx = torch.arange(max(n, m), dtype=x.dtype, device=x.device)
        if not (torch.equal(x[0, :, 0], idx[:n]) and torch.equal(y[0, :, 0], idx[:m])):
            return None
        return self.matrix.to(x.device)[None]  # (1, n, m), no copy on its own device

    def describe(self) -> str:
        return f"matrix({self.source})"


def matrix_problem(
    cost: Any,
    a: object | None,
    b: object | None,
    config: SolveConfig,
    *,
    source: str = "<array>",
    sources: tuple[str, str] | None = None,
) -> tuple[Cloud, Cloud, SolveConfig]:
    """Index clouds (with masses ``a``/``b``, default uniform) and a config whose cost is
    the (n, m) matrix ``cost``, held in the config's dtype on its device.

    ``sources`` name where ``a`` and ``b`` came from, for their errors (default: the matrix).
    """
    import torch

    from otcli.checks import check_matrix_range
    from otcli.cloud import make_cloud, real_values

    values = real_values(cost, source, "costs")
    if values.ndim != 2 or 0 in values.shape:
        raise InputError(source, f"a cost matrix is 2-D n×m, got shape {values.shape}")
    if not np.isfinite(values).all():
        i, j = np.argwhere(~np.isfinite(values))[0]
        raise InputError(source, f"non-finite cost {values[i, j]} at i={i}, j={j} (0-based)")
    check_matrix_range(values, config.dtype, source)
    matrix = torch.as_tensor(values, dtype=config.torch_dtype, device=config.torch_device)
    n, m = matrix.shape
    src_a, src_b = sources if sources is not None else (source, source)
    for w, count, src, what in ((a, n, src_a, "rows"), (b, m, src_b, "columns")):
        if w is not None and np.size(w) != count:  # type: ignore[arg-type]
            raise InputError(src, f"{np.size(w)} weights for the {count} {what} of {source}")  # type: ignore[arg-type]
    x = make_cloud(np.arange(n, dtype=np.float64)[:, None], a, src_a)
    y = make_cloud(np.arange(m, dtype=np.float64)[:, None], b, src_b)
    # The matrix is in memory already: the dense geometries take it as it is.
    return x, y, config.with_(cost=MatrixCost(matrix, source), geometry="dense")


@_keyword_errors
def solve_matrix(
    cost: Any,
    a: object | None = None,
    b: object | None = None,
    *,
    eps: float | None = None,
    config: SolveConfig | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> SinkhornResult:
    """Entropic OT (balanced or unbalanced) for an (n, m) cost matrix and masses a, b.

    Takes the solver keywords of :func:`otcli.solve` (``eps_rel``, ``rho``, ``tol``...),
    or a ``config``; a cost matrix has no points, so no ``cost``, ``p`` or ``reach``.
    """
    from otcli import api

    for name in ("cost", "p", "reach", "reach_a", "reach_b"):
        if name in options:
            raise OptionError(name, "does not apply to a cost matrix (use rho for unbalanced OT)")
    config = make_config(**options) if config is None else config
    x, y, config = matrix_problem(cost, a, b, config)
    return api.solve(x, y, eps=eps, config=config, progress=progress)  # type: ignore[return-value]


def read_weights(path: str, count: int, what: str, matrix: str) -> np.ndarray:
    """One mass per row (or column) of the matrix from a file with one numeric column."""
    from otcli.io import read_cloud

    cloud = read_cloud(path)
    if cloud.dim != 1:
        raise InputError(path, f"holds {cloud.dim} columns; masses are one column (or 1-D .npy)")
    if cloud.n != count:
        raise InputError(path, f"{cloud.n} weights for the {count} {what} of {matrix}")
    return cloud.points[:, 0]


def run_matrix(
    path: str,
    config: SolveConfig,
    *,
    a: str | None = None,
    b: str | None = None,
    outputs: PairOutputs | None = None,
    progress: ProgressFn | None = None,
    warn: Any = None,
) -> MatrixReport:
    """``otdist matrix``: read the matrix in ``path`` (and masses), solve, write, report.

    Outputs and the memory rule are checked before the matrix is loaded (the one output
    policy: an existing file is refused unless ``outputs.overwrite``, the matrix or a mass
    file always); the report is a :class:`~otcli.pair.MatrixReport`, which shows no points'
    fields (files A and B, dimension, columns).
    """
    from otcli import export
    from otcli.device import format_bytes
    from otcli.io import check_output_path
    from otcli.io.matrices import read_cost_matrix
    from otcli.io.writers import check_distinct_outputs, check_new_output
    from otcli.pair import MatrixReport, PairOutputs, solve_pair

    outputs = PairOutputs() if outputs is None else outputs
    inputs = [f for f in (path, a, b) if f is not None]
    for option, out in (("--coupling", outputs.coupling), ("--cost-matrix", outputs.cost_matrix)):
        if out is not None:
            check_output_path(out, option)
            check_new_output(out, option, overwrite=outputs.overwrite, inputs=inputs)
    check_distinct_outputs(
        [("--coupling", outputs.coupling), ("--cost-matrix", outputs.cost_matrix)]
    )

    def check_size(n: int, m: int) -> None:
        need, budget = dense_bytes(1, n, m, config.itemsize), config.memory_budget()
        if need > budget:
            raise OptionError(
                "--memory",
                f"{path}: solving a {n}×{m} cost matrix needs {format_bytes(need)} (C and its "
                f"kernel in {config.dtype}), over the memory budget of {format_bytes(budget)}",
            )
        export.check_writable(
            n, m, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,
            topk=outputs.coupling_topk, memory=config.memory,
        )  # fmt: skip

    cost = read_cost_matrix(path, check_size)
    n, m = cost.shape
    wa = None if a is None else read_weights(a, n, "rows", path)
    wb = None if b is None else read_weights(b, m, "columns", path)
    x, y, config = matrix_problem(
        cost, wa, wb, config, source=os.fspath(path), sources=(a or path, b or path)
    )
    del cost
    return solve_pair(
        a or "uniform", b or "uniform", x, y, config, outputs=outputs, progress=progress,
        warn=warn, report_type=MatrixReport,
    )  # fmt: skip


__all__ = ["MatrixCost", "matrix_problem", "read_weights", "run_matrix", "solve_matrix"]

"""Exact (unregularised) optimal transport: ``otdist A B --exact``.

Sinkhorn's ⟨P, C⟩ carries an entropic bias that only vanishes as ε → 0, where Sinkhorn cannot
go (see ``--eps-rel``). For clouds of moderate size the exact optimum is cheaper: two equal,
uniformly weighted clouds of up to :data:`ASSIGNMENT_MAX_N` points are an assignment problem
(SciPy's ``linear_sum_assignment``, an optimal plan being a permutation), anything else a
network simplex (POT's ``ot.emd``), which stays fast where many costs tie. Both
come with the optional extra ``otcli[exact]`` (POT, which brings SciPy); without it the
option says what to install. C is built in float64 by the same cost code as the solver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from otcli.cloud import Cloud
from otcli.config import SolveConfig
from otcli.costs import CostFn
from otcli.errors import OptionError, SolverError
from otcli.result import PlanMatrices

#: Largest n·m solved exactly: C in float64 is 200 MB there, and a network simplex on
#: 5,000 × 5,000 points takes minutes on two cores.
MAX_EXACT_ENTRIES = 25_000_000
#: Network-simplex pivots before POT gives up (its default, 100,000, stops early on a few
#: thousand points).
MAX_SIMPLEX_ITERATIONS = 10_000_000

INSTALL_HINT = "pip install 'otcli[exact]'"
#: Largest equal uniform clouds solved as an assignment (SciPy, 0.4 s to import) rather than
#: by POT's network simplex (2.2 s to import): on generic data the two solve 4,000 points in
#: the same 2.8 s, but on tie-heavy integer colours the assignment took 3.5 s for 2,000 points
#: (simplex 0.8 s) and 34.8 s for 4,000 (3.7 s); below this size both take well under a second.
ASSIGNMENT_MAX_N = 1000
#: An exact plan meets its masses to float rounding: above this marginal error it did not.
EXACT_TOL = 1e-9


@dataclass(frozen=True)
class ExactResult(PlanMatrices):
    """The exact optimal plan between ``x`` and ``y``, stored sparse (at most n + m − 1
    entries), with ⟨P, C⟩ and the marginal error of that plan (float rounding only)."""

    x: Cloud
    y: Cloud
    cost_fn: CostFn
    cost: float
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    marginal_error: float
    method: str
    seconds: float

    # What a batch row reads of any result: no ε, no iterations, the cost as the objective,
    # converged when the plan meets its masses to rounding.
    eps = 0.0
    iterations = 0
    mass = 1.0

    @property
    def objective(self) -> float:
        return self.cost

    @property
    def converged(self) -> bool:
        return self.marginal_error <= EXACT_TOL

    def __repr__(self) -> str:
        """One line of figures, never the arrays."""
        return (
            f"ExactResult(n={self.n}, m={self.m}, dim={self.dim}, cost={self.cost:.6g}, "
            f"method={self.method!r}, support={self.values.size}, "
            f"marginal_error={self.marginal_error:.2g})"
        )

    def cost_blocks(self, block_rows: int = 4096) -> Iterator[tuple[int, int, np.ndarray]]:
        """The float64 cost matrix as ``(i0, 0, rows)`` blocks."""
        y = self.y.points[None]
        for i0 in range(0, self.n, max(1, block_rows)):
            yield i0, 0, _cost(self.cost_fn, self.x.points[i0 : i0 + block_rows][None], y)

    def plan_blocks(self, block_rows: int = 4096) -> Iterator[tuple[int, int, np.ndarray]]:
        """The plan as dense ``(i0, 0, rows)`` blocks (zero off its support)."""
        for i0 in range(0, self.n, max(1, block_rows)):
            i1 = min(self.n, i0 + block_rows)
            block = np.zeros((i1 - i0, self.m))
            keep = (self.rows >= i0) & (self.rows < i1)
            block[self.rows[keep] - i0, self.cols[keep]] = self.values[keep]
            yield i0, 0, block


def _cost(cost_fn: CostFn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    return cost_fn(xt, yt)[0].numpy()


def have_pot() -> bool:
    """Whether POT (the ``exact`` extra) is installed, found without importing it."""
    import importlib.util
    import sys

    if "ot" in sys.modules:
        return sys.modules["ot"] is not None
    try:
        return importlib.util.find_spec("ot") is not None
    except (ImportError, ValueError):
        return False


def solve_exact(x: Cloud, y: Cloud, config: SolveConfig) -> ExactResult:
    """The unregularised OT plan and cost; refuses pairs above :data:`MAX_EXACT_ENTRIES`."""
    if x.n * y.n > MAX_EXACT_ENTRIES:
        raise OptionError(
            "--exact",
            f"{x.n} × {y.n} points is over the exact solver's limit of "
            f"{MAX_EXACT_ENTRIES:,} cost entries (C in memory, minutes of network simplex); "
            "use Sinkhorn with a small --eps-rel instead",
        )
    a, b = x.weights, y.weights
    uniform = x.n == y.n <= ASSIGNMENT_MAX_N and np.all(a == a[0]) and np.all(b == b[0])
    # Only the solver that runs is imported: ``import ot`` alone takes 2.2 s here, 6× the
    # assignment of 2,000 points (0.35 s), and made --exact slower than POT's own emd2.
    try:
        if not have_pot():  # the extra, whichever solver runs
            raise ImportError("ot")
        if uniform:
            from scipy.optimize import linear_sum_assignment
        else:
            import ot
    except ImportError:
        raise OptionError(
            "--exact", f"needs POT's network simplex, an optional extra: {INSTALL_HINT}"
        ) from None
    start = time.perf_counter()
    centre = x.points.mean(axis=0) if config.cost.translation_invariant else 0 * x.points[0]
    M = _cost(config.cost, (x.points - centre)[None], (y.points - centre)[None])
    if uniform:
        rows, cols = linear_sum_assignment(M)
        values = np.full(x.n, 1.0 / x.n)
        method = "assignment"
    else:
        plan, log = ot.emd(a, b, M, numItermax=MAX_SIMPLEX_ITERATIONS, log=True)
        if log.get("warning"):
            raise SolverError(f"{x.source} vs {y.source}: exact solver: {log['warning']}")
        rows, cols = np.nonzero(plan)
        values = plan[rows, cols]
        method = "network-simplex"
    cost = float(np.dot(values, M[rows, cols]))
    row_mass = np.bincount(rows, weights=values, minlength=x.n)
    col_mass = np.bincount(cols, weights=values, minlength=y.n)
    marginal = float(np.abs(row_mass - a).sum() + np.abs(col_mass - b).sum())
    shifted = Cloud(x.points - centre, x.weights, x.source)
    shifted_y = Cloud(y.points - centre, y.weights, y.source)
    return ExactResult(
        x=shifted, y=shifted_y, cost_fn=config.cost, cost=cost, rows=rows, cols=cols,
        values=values, marginal_error=marginal, method=method,
        seconds=time.perf_counter() - start,
    )  # fmt: skip

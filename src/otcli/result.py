"""Results as data: potentials and figures of one solved problem; the plan on demand.

The plan is never stored: ``plan()`` rebuilds it from the potentials, so a result for two
100,000-point clouds stays a few MB and the dense matrix exists only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.cloud import Cloud
from otcli.costs import CostFn

if TYPE_CHECKING:
    import torch


class PlanMatrices:
    """Sizes and dense matrices of a solved pair, from its ``plan_blocks``/``cost_blocks``:
    shared by every result that can stream its plan (Sinkhorn, exact)."""

    x: Cloud
    y: Cloud

    @property
    def n(self) -> int:
        return self.x.n

    @property
    def m(self) -> int:
        return self.y.n

    @property
    def dim(self) -> int:
        return self.x.dim

    def plan(self) -> np.ndarray:
        """The dense n×m coupling P (float64); its rows sum to a and columns to b."""
        return next(self.plan_blocks(self.n))[2]  # type: ignore[attr-defined]

    def cost_matrix(self) -> np.ndarray:
        """The dense n×m ground-cost matrix (float64)."""
        return next(self.cost_blocks(self.n))[2]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SinkhornResult(PlanMatrices):
    """One entropic OT problem between ``x`` and ``y``, solved.

    - ``cost``: ⟨P, C⟩, the transport cost of the entropic plan (the seed's "Sinkhorn
      distance"; with squared-Euclidean cost it estimates W₂² when ε is small against C).
    - ``objective``: the regularised value OT_ε = ⟨P, C⟩ + ε KL(P‖a⊗b) of the returned plan
      (generalised KL; never below ``cost``, right at any ε, where the dual ⟨a, f⟩ + ⟨b, g⟩
      carries the marginal error times the potentials). Unbalanced (``rho_a``/``rho_b``
      set): the value of ⟨P, C⟩ + ε KL(P‖a⊗b) + ρ_a KL(P1‖a) + ρ_b KL(Pᵀ1‖b) in dual form,
      −ρ_a⟨a, e^{−f/ρ_a} − 1⟩ − ρ_b⟨b, e^{−g/ρ_b} − 1⟩ − ε(Σ P − 1): right at any ρ and never
      above the balanced value (the plan's own KL terms multiply its marginal error by ρ).
      With the mass terms − Σr + Σw, which POT's ``sinkhorn_unbalanced2(returnCost="total")``
      leaves out: ours = POT's + (ε + ρ_a + ρ_b)(1 − Σ P) for unit masses.
    - ``marginal_error``: ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ of the returned plan. A relaxed side is
      measured against the marginal the unbalanced optimum has for the returned potentials,
      a·exp(−f/ρ_a) (b·exp(−g/ρ_b)), not against a: zero exactly at the optimum, it is the
      fixed-point residual in units of mass (how far P1 is from a is ``mass`` and the KL).
    - ``converged``: ``marginal_error`` ≤ ``tol``. A problem can stop before the iteration
      limit without converging when its error stalls (no 1% progress in 500 iterations
      nor in half of those at the target ε, even after one restart from zero potentials),
      or when an error far above ``tol`` falls too slowly to reach it within the limit:
      ``iterations`` is then below the limit.
    - ``f``, ``g``: dual potentials, with P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε).
    - ``centre``: where the points were centred for the solve; with ``dtype`` (or
      ``cost_dtype``) it lets ``plan()`` rebuild bit for bit the cost matrix the solver used.
    - ``cost_dtype``: the precision of that matrix where it is not ``dtype`` ("": the same):
      ``float64`` for float32 solves of the squared Euclidean cost on the online geometry
      on a CPU, whose fused reductions compute C exactly; its plan is built on that C.
    - ``geometry``: ``dense`` (C held in memory) or ``online`` (C rebuilt block by block).
    - ``cost_scale``: the pair's mean cost, the scale ε is measured against (``eps_rel`` is
      ``eps / cost_scale``; Sinkhorn slows sharply below about 1e-3 of it).
    - ``engine``: which engine ran: ``dense`` (log-domain on C), ``kernel`` (stabilised
      kernel products), ``online`` or ``block-sparse`` (pruned online reductions).
    - ``mass``: Σ P, the transported mass. Both clouds have mass 1 (weights are
      normalised), and P1 and Pᵀ1 both total Σ P, so one number says it for both sides: 1
      for balanced OT (to the marginal error), less where the relaxed marginals let mass go.
    - ``rho_a``, ``rho_b``: the marginal penalties (None: that side balanced).
    """

    x: Cloud
    y: Cloud
    cost_fn: CostFn
    eps: float
    f: np.ndarray
    g: np.ndarray
    cost: float
    objective: float
    iterations: int
    marginal_error: float
    converged: bool
    tol: float
    device: str
    dtype: str
    centre: np.ndarray
    geometry: str
    seconds: float
    engine: str = ""
    cost_scale: float = float("nan")
    mass: float = 1.0
    rho_a: float | None = None
    rho_b: float | None = None
    cost_dtype: str = ""

    @property
    def unbalanced(self) -> bool:
        """Whether either marginal was relaxed."""
        return self.rho_a is not None or self.rho_b is not None

    def __repr__(self) -> str:
        """One line of figures, never the arrays: ``repr`` of a 100,000-point result is short."""
        return (
            f"SinkhornResult(n={self.n}, m={self.m}, dim={self.dim}, cost={self.cost:.6g}, "
            f"eps={self.eps:.3g}, iterations={self.iterations}, converged={self.converged}, "
            f"marginal_error={self.marginal_error:.2g}, engine={self.engine or self.geometry!r}, "
            f"device={self.device!r}, dtype={self.dtype!r})"
        )

    @property
    def eps_rel(self) -> float:
        """ε as a fraction of the pair's mean cost."""
        return self.eps / self.cost_scale if self.cost_scale > 0 else float("inf")

    def transport(self, x_new: Any, *, inverse: bool = False) -> Any:
        """Move points with the entropic map of this solve (Pooladian & Niles-Weed):
        T(x) = Σ_j b_j e^{(g_j − C(x, y_j))/ε} y_j / Σ_j b_j e^{(g_j − C(x, y_j))/ε}.

        ``x_new`` (k, d) are points in A's space (any points, not only A's: at A's own
        points T gives the barycentric projection (P y)_i / a_i); ``inverse=True`` moves
        points of B's space onto A instead (f, a and A's points). Arrays give a float64
        array, tensors a tensor of their dtype and device. The cost is evaluated as the
        solve did (centred on ``centre``, in ``dtype``), block by block: O(block · m)
        memory. Unbalanced results use their own potentials (T(x_i) = (P y)_i / (P 1)_i).
        Raises :class:`~otcli.errors.OtcliError` for points of another dimension or with
        NaN/inf, and for results of ``solve_matrix``, which have no coordinates.
        """
        from otcli.transport import result_map

        return result_map(self, x_new, inverse=inverse, name="x_new")

    def cost_blocks(self, block_rows: int = 4096) -> Iterator[tuple[int, int, np.ndarray]]:
        """The cost matrix as ``(i0, 0, rows)`` blocks of ``block_rows`` rows."""
        for i0, c in self._blocks(block_rows):
            yield i0, 0, c.numpy()

    def plan_blocks(self, block_rows: int = 4096) -> Iterator[tuple[int, int, np.ndarray]]:
        """The coupling as ``(i0, 0, rows)`` blocks: a big plan can be written without existing."""
        import torch

        log_a = np.log(self.x.weights, where=self.x.weights > 0, out=np.full(self.x.n, -np.inf))
        log_b = np.log(self.y.weights, where=self.y.weights > 0, out=np.full(self.y.n, -np.inf))
        hb = torch.from_numpy(log_b + self.g / self.eps)[None, :]  # (1, m)
        for i0, c in self._blocks(block_rows):
            rows = slice(i0, i0 + c.shape[0])
            ha = torch.from_numpy(log_a[rows] + self.f[rows] / self.eps)[:, None]  # (b, 1)
            yield i0, 0, torch.exp(ha + hb - c / self.eps).numpy()

    def _blocks(self, block_rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        import torch

        from otcli.costs import working_cost

        dtype = getattr(torch, self.cost_dtype or self.dtype)
        # C is rebuilt on the device that solved, where it can be: the same kernels give the
        # same rounding, so the plan is the one the reported figures were measured on.
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            dev = torch.device("cpu")
        hi = torch.float32 if dev.type == "mps" else torch.float64
        y = torch.as_tensor(self.y.points - self.centre, dtype=hi, device=dev)[None]
        for i0 in range(0, self.x.n, max(1, block_rows)):
            rows = self.x.points[i0 : i0 + block_rows] - self.centre
            x = torch.as_tensor(rows, dtype=hi, device=dev)[None]
            yield i0, working_cost(self.cost_fn, x, y, dtype)[0].to(torch.float64).cpu()


@dataclass(frozen=True)
class DivergenceResult:
    """The debiased Sinkhorn divergence S = OT_ε(a,b) − ½ OT_ε(a,a) − ½ OT_ε(b,b).

    S ≥ 0, S = 0 when the clouds are equal, and unlike ⟨P, C⟩ it has no entropic bias
    toward spread-out plans. Unbalanced, the OT terms are the unbalanced objectives and
    Séjourné et al.'s (2019) extra term ε/2 (m(a) − m(b))² is 0 (both masses are 1).
    ``xy`` is the cross problem (its ``cost`` and plan are the usual ones); ``xx`` and
    ``yy`` are the two symmetric correction terms.
    """

    xy: SinkhornResult
    xx: SinkhornResult
    yy: SinkhornResult

    def __repr__(self) -> str:
        xy = self.xy
        iterations = (xy.iterations, self.xx.iterations, self.yy.iterations)
        return (
            f"DivergenceResult(n={xy.n}, m={xy.m}, dim={xy.dim}, "
            f"divergence={self.divergence:.6g}, cost={xy.cost:.6g}, eps={xy.eps:.3g}, "
            f"iterations={iterations}, converged={self.converged}, "
            f"engine={xy.engine or xy.geometry!r})"
        )

    @property
    def divergence(self) -> float:
        return self.xy.objective - 0.5 * (self.xx.objective + self.yy.objective)

    @property
    def converged(self) -> bool:
        return self.xy.converged and self.xx.converged and self.yy.converged

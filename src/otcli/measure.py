"""The figures of a solved plan, measured on exactly the plan ``SinkhornResult.plan`` returns.

After the loop, the potentials define P = a⊗b exp((f ⊕ g − C)/ε); this module measures it
block by block in float64 (no n×m buffer): ⟨P, C⟩, the marginal error against the marginals
the optimum has (relaxed ones for unbalanced sides), the transported mass and the primal value
with its KL terms.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from otcli.costs import CostFn, working_cost
from otcli.geometry.blocksparse import kd_leaves
from otcli.loopstate import relaxed_marginal

#: One pair from this size (n·m) on, on a CPU with a coordinate cost, is measured over the
#: leaf pairs whose entries can reach :data:`PRUNED_MASS` of the plan's mass only: at 100,000
#: points and ε = 1e−3 a full float64 pass over 10¹⁰ entries took longer than the solve's
#: last 20 iterations.
PRUNE_MIN_ENTRIES = 1 << 22

#: The plan mass the pruned measurement may leave out, in all: far below the float64
#: rounding of sums of 10¹⁰ entries, so the figures are the full pass's to rounding.
PRUNED_MASS = 1e-15

# Leaf sizes of the k-d splits the pruned measurement uses (rows, columns): small leaves give
# tight bounds (a 256-point leaf of a line is too long a box at ε = 1e−3 of its cost); the
# column leaves grow where the (row leaves × column leaves) bounds would pass _MAX_PAIRS.
_ROW_LEAF, _COL_LEAF, _MAX_PAIRS = 64, 32, 1 << 22
# The first pass takes each row leaf's column leaves bounded within this of its best one.
_GUESS_MARGIN = 8.0
# Past this kept fraction of leaf pairs the plain pass is cheaper (no gathers).
_DENSE_FRACTION = 0.7


class PlanStats(NamedTuple):
    """Figures of the plan P = a⊗b exp((f ⊕ g − C)/ε) that potentials define, (B,) each.

    - ``cost``: ⟨P, C⟩;
    - ``marginal_error``: ‖P1 − ã‖₁ + ‖Pᵀ1 − b̃‖₁ against the marginals the optimum has
      (a and b where balanced, see :func:`relaxed_marginal`);
    - ``mass``: Σ P, the transported mass (1 for balanced OT between unit masses);
    - ``primal``: ⟨P, C⟩ + ε KL(P‖a⊗b) + ρ_a KL(P1‖a) + ρ_b KL(Pᵀ1‖b), with generalised
      KL(r‖w) = Σ r log(r/w) − r + w and no term for a balanced side: the value of P in
      the entropic problem, balanced or not: what results report as their objective (the
      dual ⟨a, f⟩ + ⟨b, g⟩ carries the marginal error times the potentials, which at
      ε = 1e6 put it below ⟨P, C⟩ and at ε = 1e10 at −2756).
    """

    cost: torch.Tensor
    marginal_error: torch.Tensor
    mass: torch.Tensor
    primal: torch.Tensor
    dual: torch.Tensor
    independent: torch.Tensor  # ⟨a⊗b, C⟩, the value of the independent coupling


def plan_statistics(
    x: torch.Tensor,
    y: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: torch.Tensor,
    cost_fn: CostFn,
    dtype: torch.dtype,
    block_rows: int,
    cost: torch.Tensor | None = None,
    rho_a: float | None = None,
    rho_b: float | None = None,
) -> PlanStats:
    """The figures (:class:`PlanStats`) of the plan the potentials define, per problem.

    Evaluated in the dtype of ``x`` (float64 where the device has it) on the solver's cost
    (rounded to ``dtype``): ``cost`` (B, n, m) where the dense geometry kept it, else rebuilt
    block by block from the points. The figures describe exactly the plan that
    :meth:`SinkhornResult.plan` returns, with no n×m buffer. One large pair on a CPU skips
    the blocks whose entries provably total less than :data:`PRUNED_MASS`
    (:func:`_pruned_statistics`).
    """
    B, n = log_a.shape
    m = log_b.shape[1]
    if (
        cost is None
        and B == 1
        and n * m >= PRUNE_MIN_ENTRIES
        and x.device.type == "cpu"
        and cost_fn.has_box_lower
    ):
        pruned = _pruned_statistics(x, y, log_a, log_b, f, g, eps, cost_fn, dtype, rho_a, rho_b)
        if pruned is not None:
            return pruned
    dt = x.dtype
    la, lb, f, g, eps = (t.to(dt) for t in (log_a, log_b, f, g, eps))
    hb = (lb + g / eps[:, None])[:, None, :]  # (B, 1, m)
    ha = la + f / eps[:, None]  # (B, n)
    neg_inv_eps = (-1.0 / eps)[:, None, None]
    B, n = la.shape
    target_a = relaxed_marginal(la, f, rho_a)  # (B, n)
    col = torch.zeros_like(lb)
    total = torch.zeros_like(eps)
    row_err = torch.zeros_like(eps)
    f_dot_row = torch.zeros_like(eps)  # ⟨f, P1⟩
    kl_a = torch.zeros_like(eps)  # KL(P1‖a)
    independent = torch.zeros_like(eps)  # ⟨a⊗b, C⟩ = Σ_i a_i (C b)_i
    b_col = lb.exp()[:, :, None]  # (B, m, 1)
    m = lb.shape[1]
    rows = min(block_rows, n)
    # (B, b, m) buffers, reused: C in the measuring dtype, and P. Every operation below is
    # in one dtype (mixed-dtype passes are not vectorised on CPUs), and the two dot
    # products over whole blocks are batched products, which need no temporary.
    c_buf, p_buf = x.new_empty((B, rows, m)), x.new_empty((B, rows, m))
    for i0 in range(0, n, block_rows):
        sl = slice(i0, i0 + block_rows)
        c = working_cost(cost_fn, x[:, sl], y, dtype) if cost is None else cost[:, sl]
        r = c.shape[1]
        c = c_buf[:, :r].copy_(c)
        independent += torch.bmm(la[:, None, sl].exp(), torch.bmm(c, b_col))[:, 0, 0]
        p = torch.add(ha[:, sl, None], hb, out=p_buf[:, :r]).addcmul_(c, neg_inv_eps).exp_()
        col += p.sum(dim=1)
        row = p.sum(dim=2)  # (B, b)
        row_err += (row - target_a[:, sl]).abs().sum(dim=1)
        f_dot_row += (f[:, sl] * row).sum(dim=1)
        kl_a += _kl_terms(row, la[:, sl])
        total += torch.bmm(p.view(B, 1, r * m), c.view(B, r * m, 1))[:, 0, 0]  # ⟨P, C⟩
    return _figures(la, lb, f, g, eps, col, total, row_err, f_dot_row, kl_a, independent,
                    rho_a, rho_b)  # fmt: skip


def _figures(
    la: torch.Tensor,
    lb: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: torch.Tensor,
    col: torch.Tensor,
    total: torch.Tensor,
    row_err: torch.Tensor,
    f_dot_row: torch.Tensor,
    kl_a: torch.Tensor,
    independent: torch.Tensor,
    rho_a: float | None,
    rho_b: float | None,
) -> PlanStats:
    """The figures from the sums a pass over the plan gathered (column sums ``col``, ⟨P, C⟩,
    the row side's error, ⟨f, P1⟩ and KL(P1‖a), ⟨a⊗b, C⟩)."""
    col_err = (col - relaxed_marginal(lb, g, rho_b)).abs().sum(dim=1)
    mass = col.sum(dim=1)
    # ε KL(P‖a⊗b) = Σ P (f ⊕ g − C) − ε Σ P + ε Σa Σb, since log(P/ab) = (f ⊕ g − C)/ε:
    # the primal's ⟨P, C⟩ cancels against it.
    primal = f_dot_row + (g * col).sum(dim=1) - eps * (mass - la.exp().sum(1) * lb.exp().sum(1))
    if rho_a is not None:
        primal = primal + rho_a * kl_a
    if rho_b is not None:
        primal = primal + rho_b * _kl_terms(col, lb)
    # The dual at (f, g): ⟨a, f⟩ (balanced side) or −ρ⟨a, e^{−f/ρ} − 1⟩ (relaxed side), and the
    # same for b, minus ε(Σ P − Σa Σb). A lower bound of the optimum for any potentials, well
    # conditioned at any ρ, where the primal's ρ KL(P1‖a) multiplies the plan's tiny marginal
    # error by ρ (a reach of 1e5 put it above the balanced value, which it cannot exceed).
    mass_ab = la.exp().sum(1) * lb.exp().sum(1)
    dual = _dual_side(la, f, rho_a) + _dual_side(lb, g, rho_b) - eps * (mass - mass_ab)
    return PlanStats(total, row_err + col_err, mass, primal, dual, independent)


def _pruned_statistics(
    x: torch.Tensor,
    y: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: torch.Tensor,
    cost_fn: CostFn,
    dtype: torch.dtype,
    rho_a: float | None,
    rho_b: float | None,
) -> PlanStats | None:
    """:func:`plan_statistics` of one pair over the leaf pairs (I, J) that can matter.

    Row i of P is e^{h_i} Σ_j e^{k_j − C_ij/ε} (h = log a + f/ε, k = log b + g/ε). With box
    bounds C_ij ≥ Cmin(I, J), every term of leaf pair (I, J) is at most
    U_IJ = max_J k − Cmin(I, J)/ε, so the pairs with U_IJ below the row's log-sum S_i plus
    log(:data:`PRUNED_MASS`/m) hold less than that share of each row together. S_i is bounded
    below by what has been summed so far: first each row leaf's likeliest column leaf, then
    the pairs that bound asks for, then any the grown sums still ask for (the check, as in
    :mod:`otcli.geometry.blocksparse`). ⟨a⊗b, C⟩ needs every entry: it is reported as +∞
    (no bound), which only the clamp of a balanced objective at huge ε uses, where nothing
    is pruned. None where most leaf pairs would be kept (large ε): the plain pass is then
    cheaper.
    """
    dt = x.dtype
    la, lb, fv, gv = (t.to(dt)[0] for t in (log_a, log_b, f, g))
    e = float(eps[0])
    m = lb.shape[0]
    n = la.shape[0]
    col_leaf = _COL_LEAF
    while (n // _ROW_LEAF + 1) * (m // col_leaf + 1) > _MAX_PAIRS:
        col_leaf *= 2
    rl, cl = kd_leaves(x[0], _ROW_LEAF), kd_leaves(y[0], col_leaf)
    cmin = cost_fn.box_lower(rl.lo, rl.hi, cl.lo, cl.hi)  # (Lr, Lc)
    if cmin is None:
        return None
    ha, hb = (la + fv / e)[rl.perm], (lb + gv / e)[cl.perm]  # sorted orders
    top = hb.new_full((len(cl.starts) - 1,), -math.inf)
    top.scatter_reduce_(0, cl.leaf_of, hb, "amax")
    upper = top[None, :] - cmin.to(dt) / e  # (Lr, Lc): bounds of k_j − C_ij/ε
    cut = math.log(PRUNED_MASS) - math.log(m)  # a skipped term's bound below its row's sum
    pass_ = _PlanPass(x[0][rl.perm], y[0][cl.perm], ha, hb, rl, cl, cost_fn, dtype, e)
    # Lower bounds of the row sums first from the leaf pairs that bound highest, then ever
    # further down to the cut: each level's sums tighten the next level's bound.
    done = upper >= upper.amax(dim=1, keepdim=True) - _GUESS_MARGIN
    pass_.add(done)
    for level in (cut / 4, cut / 2, cut, cut):  # the last: the check after the full cut
        keep = upper >= (pass_.leaf_min_lse() + level)[:, None]
        if level == cut and int((keep | done).sum()) >= _DENSE_FRACTION * keep.numel():
            return None
        pass_.add(keep & ~done)
        done |= keep
    row = torch.empty_like(pass_.row)
    row[rl.perm] = pass_.row
    col = torch.empty_like(pass_.col)
    col[cl.perm] = pass_.col
    target_a = relaxed_marginal(la, fv, rho_a)
    one = eps.to(dt)
    return _figures(
        la[None], lb[None], fv[None], gv[None], one, col[None], one.new_full((1,), pass_.total),
        (row - target_a).abs().sum()[None], (fv * row).sum()[None], _kl_terms(row, la)[None],
        one.new_full((1,), math.inf), rho_a, rho_b,
    )  # fmt: skip


class _PlanPass:
    """Row and column sums of P and ⟨P, C⟩ over the leaf pairs added so far (sorted orders)."""

    def __init__(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        ha: torch.Tensor,
        hb: torch.Tensor,
        rl: object,
        cl: object,
        cost_fn: CostFn,
        dtype: torch.dtype,
        eps: float,
    ) -> None:
        self.xs, self.ys, self.ha, self.hb = xs, ys, ha, hb
        self.rl, self.cl = rl, cl
        self.cost_fn, self.dtype, self.eps = cost_fn, dtype, eps
        self.row = ha.new_zeros(ha.shape[0])
        self.col = hb.new_zeros(hb.shape[0])
        self.total = 0.0

    def add(self, pairs: torch.Tensor) -> None:
        """Add the leaf pairs flagged in ``pairs`` (Lr, Lc), row leaf by row leaf."""
        starts = self.rl.starts  # type: ignore[attr-defined]
        for leaf in pairs.any(dim=1).nonzero()[:, 0].tolist():
            r0, r1 = starts[leaf], starts[leaf + 1]
            cols = pairs[leaf][self.cl.leaf_of].nonzero()[:, 0]  # type: ignore[attr-defined]
            c = working_cost(self.cost_fn, self.xs[None, r0:r1], self.ys[cols][None], self.dtype)
            c = c[0].to(self.ha.dtype)
            p = torch.exp(self.ha[r0:r1, None] + self.hb[cols][None, :] - c / self.eps)  # P_ij
            self.col.index_add_(0, cols, p.sum(dim=0))
            self.row[r0:r1] += p.sum(dim=1)
            self.total += float(p.mul_(c).sum())

    def leaf_min_lse(self) -> torch.Tensor:
        """(Lr,): per row leaf, the least log Σ_j e^{k_j − C_ij/ε} summed so far (−∞: none)."""
        lse = self.row.log() - self.ha
        leaves = len(self.rl.starts) - 1  # type: ignore[attr-defined]
        out = lse.new_full((leaves,), math.inf)
        return out.scatter_reduce_(0, self.rl.leaf_of, lse, "amin")  # type: ignore[attr-defined]


def _dual_side(log_w: torch.Tensor, pot: torch.Tensor, rho: float | None) -> torch.Tensor:
    """⟨w, pot⟩ for a balanced side, −ρ⟨w, expm1(−pot/ρ)⟩ for one relaxed by ρ, (B,)."""
    w = log_w.exp()
    if rho is None:
        return (w * pot).sum(dim=-1)
    return (w * torch.expm1(-pot / rho)).sum(dim=-1) * -rho


def _kl_terms(r: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """Σ_k r_k log(r_k/w_k) − r_k + w_k along the last dim: generalised KL(r‖w), 0 log 0 = 0.

    Each term is w·h(u) with u = log(r/w) and h(u) = u eᵘ − eᵘ + 1 = (u − 1)(eᵘ − 1) + u ≥ 0,
    taken through expm1: r log(r/w) − r + w loses every digit to cancellation where r ≈ w,
    which a large ρ then multiplies.
    """
    w = log_w.exp()
    u = torch.where(r > 0, r.log() - log_w, 0.0)
    terms = torch.where(r > 0, w * ((u - 1) * torch.expm1(u) + u), w)
    return torch.where(w > 0, terms, r).sum(dim=-1)

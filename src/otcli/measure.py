"""The figures of a solved plan, measured on exactly the plan ``SinkhornResult.plan`` returns.

After the loop, the potentials define P = a⊗b exp((f ⊕ g − C)/ε); this module measures it
block by block in float64 (no n×m buffer): ⟨P, C⟩, the marginal error against the marginals
the optimum has (relaxed ones for unbalanced sides), the transported mass and the primal value
with its KL terms.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from otcli.costs import CostFn, working_cost
from otcli.loopstate import relaxed_marginal


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
    :meth:`SinkhornResult.plan` returns, with no n×m buffer.
    """
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
    buf = x.new_empty((B, min(block_rows, n), lb.shape[1]))  # (B, b, m), reused
    for i0 in range(0, n, block_rows):
        sl = slice(i0, i0 + block_rows)
        c = working_cost(cost_fn, x[:, sl], y, dtype) if cost is None else cost[:, sl]
        independent += (torch.bmm(c.to(dt), b_col)[..., 0] * la[:, sl].exp()).sum(dim=1)
        p = buf[:, : c.shape[1]]
        torch.addcmul(hb, c, neg_inv_eps, out=p).add_(ha[:, sl, None]).exp_()  # P_ij
        col += p.sum(dim=1)
        row = p.sum(dim=2)  # (B, b)
        row_err += (row - target_a[:, sl]).abs().sum(dim=1)
        f_dot_row += (f[:, sl] * row).sum(dim=1)
        kl_a += _kl_terms(row, la[:, sl])
        total += p.mul_(c).sum(dim=(1, 2))
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

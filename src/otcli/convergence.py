"""When a Sinkhorn problem is done, stalled or hopeless, and how hard to over-relax it.

The loop (:func:`otcli.solver.sinkhorn_loop`) measures each problem's marginal error at its
checks; these rules turn those measurements into decisions, per problem, on (B,) tensors:

- over-relaxation: ω from the error's observed contraction (:func:`relaxation`);
- a stall: no 1% fall of the best error in ``patience`` iterations, nor in half of those
  spent at the target ε (:func:`stalled`): a precision floor, not a slow problem;
- hopelessness: an error far above the tolerance whose fall projects past the iteration
  limit (:func:`project`): the same verdict, without the wait;
- the state returned: the best measured, where the error rose after it (:func:`best_of`).
"""

from __future__ import annotations

import math

import torch

#: Below this multiple of ``tol`` a slow problem is never judged hopeless: it runs on.
HOPELESS_ABOVE_TOL = 1000.0
#: A problem is hopeless when the fall of its error projects that it needs more than this
#: many times the iterations it has left to reach ``tol``.
HOPELESS_FACTOR = 4.0
#: Iterations at the target ε before a problem's first reference error for the projection.
FIRST_REFERENCE = 50


def relaxation(
    omega: torch.Tensor,
    err: torch.Tensor,
    err_ref: torch.Tensor,
    settling: torch.Tensor,
    window: int,
    max_omega: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New over-relaxation factors from the error's contraction over the last window.

    For Sinkhorn's linearisation an observed rate ρ at factor ω gives plain Sinkhorn's rate
    Θ through (ρ + ω − 1)² = ρω²Θ, and the best factor is ω* = 2 / (1 + √(1 − Θ))
    (Thibault et al. 2017; Lehmann et al. 2022). A change of ω disturbs the error for a
    while, so the window right after a change is not measured (``settling``). An error that
    grew over a window halves ω − 1 instead of dropping ω to 1: a reset would throw away a
    good estimate on a mere transient. Returns (ω, error at the start of the next window,
    settling).
    """
    rho = (err / err_ref).pow(1.0 / window)  # observed rate per iteration, (B,)
    theta = (rho + omega - 1).square() / (rho * omega.square())  # plain Sinkhorn's rate
    estimate = (2.0 / (1.0 + torch.sqrt(1.0 - theta.clamp(0.0, 1.0)))).clamp(1.0, max_omega)
    measured = torch.isfinite(err_ref) & (rho > 0) & ~settling
    falling = measured & (rho < 1)
    new = torch.where(falling, estimate, omega)
    new = torch.where(measured & ~falling, 1.0 + 0.5 * (omega - 1.0), new)
    changed = (new - omega).abs() > 0.02
    new = torch.where(changed, new, omega)
    return new, err.clone(), changed


def stalled(
    iterations: torch.Tensor,
    improved_at: torch.Tensor,
    reached_at: torch.Tensor,
    patience: int,
) -> torch.Tensor:
    """(B,) bool: problems whose best error at the target ε has not fallen 1% in
    ``patience`` iterations, nor in half the iterations they have spent there.

    Over-relaxation can hold a slow but steady problem's error above its best for a few
    hundred iterations (bootstrap resamples of wine at ε = 1: about 200); the window that
    grows with the time spent never takes such a transient for a precision floor.
    """
    since = iterations - improved_at
    settled = iterations - reached_at
    return since >= torch.clamp(settled // 2, min=patience)


def project(
    best: torch.Tensor,
    best_ref: torch.Tensor,
    settled: torch.Tensor,
    ref_settled: torch.Tensor,
    tol: float,
    window: int,
    left: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which problems far above ``tol`` cannot reach it in time: (hopeless, best_ref, ref_settled).

    A problem's first reference is its best error after :data:`FIRST_REFERENCE` iterations
    at the target ε (``settled``); ``window`` iterations later the fall from ``best_ref`` to
    ``best`` gives its geometric rate, and at that rate reaching half of ``tol`` takes
    span · log(best / tol½) / log(best_ref / best) more iterations. A problem that would
    need over :data:`HOPELESS_FACTOR` times the ``left`` iterations while still
    :data:`HOPELESS_ABOVE_TOL` times above ``tol`` ends unconverged either way: stopping it
    now gives the same verdict without the wait (a warned, hopeless solve at a tiny ε took a
    minute to end at marginal error 0.3). Judged problems take a new reference.
    """
    best_ref = torch.where(settled > 0, best_ref, math.inf)  # annealing again: no reference
    first = (settled >= FIRST_REFERENCE) & ~torch.isfinite(best_ref)
    span = settled - ref_settled
    due = torch.isfinite(best_ref) & (span >= window)
    fall = (best_ref / best).log()  # > 0 where the error fell
    need = span * (best / (0.5 * tol)).log() / fall.clamp(min=1e-300)
    far = best > HOPELESS_ABOVE_TOL * tol
    hopeless = due & far & (need > HOPELESS_FACTOR * max(left, 1))
    take = first | due
    return hopeless, torch.where(take, best, best_ref), torch.where(take, settled, ref_settled)


def best_of(
    f: torch.Tensor,
    g: torch.Tensor,
    err: torch.Tensor,
    best_f: torch.Tensor,
    best_g: torch.Tensor,
    best_err: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The potentials each problem ends with: its best measured state where the error rose
    after it (relaxation, a restart, rounding), else the last."""
    worse = (best_err < err)[:, None]
    return torch.where(worse, best_f, f), torch.where(worse, best_g, g)

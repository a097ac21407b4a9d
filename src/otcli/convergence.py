"""When a Sinkhorn problem is done, stalled or hopeless, and how hard to over-relax it.

The loop (:func:`otcli.solver.sinkhorn_loop`) measures each problem's marginal error at its
checks; these rules turn those measurements into decisions, per problem, on (B,) tensors:

- over-relaxation: ω from the error's observed contraction (:func:`relaxation`), and the
  estimate of plain Sinkhorn's rate carried from one ε stage to the next (:func:`carry`),
  so that the target ε does not start over from ω = 1;
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


def optimal_omega(theta: torch.Tensor, max_omega: float) -> torch.Tensor:
    """ω* = 2 / (1 + √(1 − Θ)) for plain Sinkhorn's rate Θ (Young's SOR factor), in [1, max]."""
    return (2.0 / (1.0 + torch.sqrt(1.0 - theta.clamp(0.0, 1.0)))).clamp(1.0, max_omega)


def plain_rate(rho: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Plain Sinkhorn's rate Θ from a rate ρ observed at factor ω: (ρ + ω − 1)² = ρω²Θ.

    No rate at ω falls below ω − 1 (the rate at ω ≥ ω*); a faster fall is a transient, and
    is read as ω − 1, whose Θ makes ω itself the best factor: it then tells nothing new."""
    rho = torch.maximum(rho, omega - 1)
    return ((rho + omega - 1).square() / (rho * omega.square())).clamp(0.0, 1.0)


#: The first estimate of Θ at an ε takes this share of its 1 − Θ (see :func:`relaxation`).
#: Its window starts one iteration after the ε change, so the change's fast transient is in
#: it: the problem is slower than it shows. Measured on the 1,000 ragged unit-cube pairs at
#: ε = 0.01 and 0.001 and the 45 digit pairs (iteration counts): 0.15 took the fewest of
#: 0.5, 0.35, 0.25 and 0.15 (a factor above ω* costs far less than one as far below it).
FIRST_SHARE = 0.15


def relaxation(
    omega: torch.Tensor,
    theta: torch.Tensor,
    err: torch.Tensor,
    err_ref: torch.Tensor,
    iterations: torch.Tensor,
    ref_at: torch.Tensor,
    settled_at: torch.Tensor,
    window: int,
    max_omega: float,
) -> tuple[torch.Tensor, ...]:
    """New over-relaxation factors from the error's contraction since its reference.

    For Sinkhorn's linearisation an observed rate ρ at factor ω gives plain Sinkhorn's rate
    Θ through (ρ + ω − 1)² = ρω²Θ, and the best factor is ω* = 2 / (1 + √(1 − Θ))
    (Thibault et al. 2017; Lehmann et al. 2022). ``err_ref`` is the error at iteration
    ``ref_at`` (B,; inf: none yet, this error becomes it); a reference younger than half a
    ``window`` stays for the next one, so the first window of a stage may be short. A
    change of ω disturbs the error for a while, so windows that start before
    ``settled_at`` (a window after the change) are not measured. The first estimate at an
    ε (Θ = 0: none yet) takes :data:`FIRST_SHARE` of its 1 − Θ.

    An error that grew over a window halves ω − 1 instead of dropping ω to 1: a reset would
    throw away a good estimate on a mere transient; Θ is then taken as what that smaller ω
    is best for. Returns (ω, Θ, the reference error for the next window, where it was
    renewed, ``settled_at``).
    """
    span = iterations - ref_at
    rho = (err / err_ref).pow(1.0 / span.clamp(min=1))  # observed rate per iteration, (B,)
    estimate = plain_rate(rho, omega)
    estimate = torch.where(theta > 0, estimate, 1.0 - FIRST_SHARE * (1.0 - estimate))
    due = span * 2 >= window
    measured = torch.isfinite(err_ref) & (rho > 0) & (ref_at >= settled_at) & due
    falling = measured & (rho < 1)
    rising = measured & ~falling
    back = 1.0 + 0.5 * (omega - 1.0)
    new = torch.where(falling, optimal_omega(estimate, max_omega), omega)
    new = torch.where(rising, back, new)
    theta = torch.where(falling, estimate, theta)
    # the Θ whose ω* is the backed-off factor: 1 − Θ = ((2 − ω)/ω)²
    theta = torch.where(rising, 1.0 - ((2.0 - back) / back).square(), theta)
    changed = (new - omega).abs() > 0.02
    new = torch.where(changed, new, omega)
    renewed = due | ~torch.isfinite(err_ref)
    settled_at = torch.where(changed, iterations + window, settled_at)
    return new, theta, torch.where(renewed, err, err_ref), renewed, settled_at


#: At a stage change, plain Sinkhorn's 1 − Θ is taken to shrink in proportion to ε (its
#: rate at the halved ε is slower), and the target stage starts at the ω* of that Θ with
#: this share of its excess ω* − 1, a safety margin for an extrapolated rate (see
#: :func:`carry`).
CARRY_MARGIN = 0.9


def carry(
    theta: torch.Tensor, ratio: torch.Tensor, max_omega: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Θ and ω for a problem's next ε stage, ``ratio`` times the last: (Θ, ω).

    Plain Sinkhorn slows as ε falls: 1 − Θ is taken to shrink in proportion,
    1 − Θ' = ratio · (1 − Θ), and the stage starts at CARRY_MARGIN of ω*(Θ')'s excess over
    1. A problem with no estimate yet (Θ = 0) starts plain. The windows at the new ε then
    measure and correct it, and an error that grows backs ω off (:func:`relaxation`).
    """
    known = theta > 0
    theta = torch.where(known, 1.0 - ratio * (1.0 - theta), 0.0)
    omega = 1.0 + CARRY_MARGIN * (optimal_omega(theta, max_omega) - 1.0)
    return theta, torch.where(known, omega, 1.0)


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

"""A cloud against itself: the averaged symmetric Sinkhorn iteration.

The Sinkhorn divergence needs OT_ε(a, a) and OT_ε(b, b). Against itself (same points, same
weights, a symmetric cost) a cloud's problem is symmetric: the optimal potentials are equal,
f = g, and f is the fixed point of T(f) = −τ ε log Σ_j a_j exp((f_j − C_ij)/ε). Sinkhorn's
alternating half-steps treat f and g apart and converge slowly there: a 142-point cloud at
ε = 0.01 × its mean cost, float64, took POT's ``sinkhorn_log`` 10,000 iterations to a
marginal error of 4.2e-7 (and 200,000 to 2.3e-8), and the annealed, over-relaxed loop
10,000 to 2.7e-6 (not converged at float64's 1e-7). The averaged iteration
f ← (f + T(f)) / 2 (GeomLoss's update for its self terms) reached float64's rounding in 30.

:func:`symmetric_loop` anneals ε like :func:`otcli.solver.sinkhorn_loop` (same schedule,
next stage once every problem's error is below ``stage_tol``) and stops once every
problem's error is within half the tolerance at the target ε, or its largest error has not
fallen 1% in :data:`STALL` iterations (a precision floor). The plan it returns has g = f;
it is measured as any other (:func:`otcli.measure.plan_statistics`).
"""

from __future__ import annotations

import math

import torch

from otcli.annealing import MAX_ANNEALING_STAGES, eps_schedule
from otcli.geometry import Geometry
from otcli.loopstate import Batch, LoopOutput, SolverOptions, side_error
from otcli.solver import ProgressFn

#: Iterations without a 1% fall of the batch's largest error at the target ε that end the
#: loop: the averaged iteration converges geometrically, so this is a precision floor.
STALL = 100


def symmetric_loop(
    geom: Geometry,
    log_a: torch.Tensor,
    eps: torch.Tensor,
    opts: SolverOptions,
    progress: ProgressFn | None = None,
) -> LoopOutput:
    """Potentials f = g of each problem OT_ε(a, a) (``geom`` holds C(x, x), symmetric).

    ``log_a`` (B, n) log-masses with −∞ on padding, ``eps`` (B,) the target ε. One iteration
    is one half-step T(f) and an average; iterations count those. The error is read every
    ``opts.check_every`` iterations, as in the main loop.
    """
    B = log_a.shape[0]
    rho = opts.rho_a
    stages = min(opts.max_iter + 1, MAX_ANNEALING_STAGES)
    schedule = torch.cat([eps_schedule(geom.max_cost(), eps, opts.scaling, stages), eps[None]])
    rows = torch.arange(B, device=eps.device)
    mass = None if rho is not None else log_a.exp()
    b = Batch(geom, log_a, log_a, mass, mass, eps, schedule, rows, rows, rho, rho)
    f = log_a.new_zeros(log_a.shape)
    it, last, at_target = 0, schedule.shape[0] - 1, 0
    for k in range(schedule.shape[0]):
        c = b.constants(schedule[k])
        bound = 0.5 * opts.tol if k == last else opts.stage_tol
        limit = opts.max_iter if k == last else min(opts.max_iter, it + opts.stage_max_iter)
        best, best_at, start = math.inf, it, it
        while True:
            f_hat = b.f_step(f, c)  # T(f): the rows' half-step against columns at f
            # measured every check_every iterations (one host sync each), at a stage's start
            # and at its limit
            if (it - start) % opts.check_every == 0 or it >= limit:
                # rows and columns of the plan of (f, f) miss the masses alike
                err = 2 * side_error(log_a, mass, f, f_hat, c.inv_scale_a, rho)
                worst = float(err.max())
                if progress is not None:
                    progress(it, float(c.largest), worst)
                if worst <= bound or it >= limit or not math.isfinite(worst):
                    break
                if worst < 0.99 * best:
                    best, best_at = worst, it
                elif k == last and it - best_at >= STALL:
                    break
            f = torch.lerp(f, f_hat, 0.5)
            it += 1
            at_target += k == last
    iterations = torch.full((B,), it, dtype=torch.int64, device=eps.device)
    unknown = torch.zeros(B, dtype=f.dtype, device=eps.device)  # no rate estimate here
    if at_target == 0 and worst > 0.5 * opts.tol:
        # Stopped by max_iter while annealing: potentials of a larger ε would put the plan
        # at the target out of range; one pair of half-steps there gives a finite plan
        # whose marginal error tells how far from done it is (as the main loop does).
        return LoopOutput(f=f_hat, g=b.g_step(f_hat, c), iterations=iterations, theta=unknown)
    return LoopOutput(f=f, g=f, iterations=iterations, theta=unknown)


__all__ = ["STALL", "symmetric_loop"]

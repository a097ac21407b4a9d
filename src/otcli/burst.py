"""Bursts: the Sinkhorn loop's iterations between two checks, in the kernel's scaling form.

A log-domain iteration over a kernel geometry costs dozens of small tensor operations (exps,
logs, reach and finiteness checks, conversions) around its two kernel products; on batches
of small clouds those operations, not the products, set the time. Between two checks no
decision is taken, so those iterations can run in the scaling form instead
(:meth:`otcli.geometry.kernel.KernelGeometry.scaling_steps`): two products and a few
vector operations each. The check that follows sees the potentials the log-domain
iterations would have left, to rounding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from otcli.loopstate import Batch, SolverOptions, State, every, flag

if TYPE_CHECKING:
    from otcli.annealing import StepConstants

#: Iterations from one check to the next while those between run in the kernel's scaling
#: form (:func:`burst`).
BURST_PERIOD = 10

#: At the target ε a burst reads each problem's error off its products (to freeze it the
#: iteration it gets within the tolerance, and end with the last) once the batch's largest
#: error at the last check is within this factor of half the tolerance: at the rates
#: over-relaxation reaches (the error falls 10–20× per 10 iterations) a batch further off
#: does not finish within the burst, and the reading would only cost.
NEAR_FINISH = 30.0


def to_next_check(it: int, opts: SolverOptions) -> int:
    """Iterations from ``it`` to the next check of a burst (or to max_iter)."""
    period = every(opts.check_every, BURST_PERIOD)
    return min(-(-it // period) * period, opts.max_iter) - it


def burst(b: Batch, st: State, c: StepConstants, it: int, opts: SolverOptions) -> int | None:
    """Run iterations ``it``, ``it + 1``, … short of the next check in the kernel's scaling
    form, where the geometry has one and the problems are balanced: two kernel products and
    a few vector operations each, instead of the log domain's dozens of operations. How
    many ran (and ``st.f_hat`` is then F(g) of the state left, so the loop's next f
    half-step is done): 0 where none was due (too few before the check, or every problem already
    ready for it); None where the kernel could not serve them (the loop then stays in the
    log domain up to the next check, which also rebuilds a kernel out of reach). The check
    that follows measures the error as ever: the burst leaves f, g and ĝ = G(f) as the
    log-domain iterations would, to rounding.

    While annealing, a stage is often done within a few iterations: the burst then ends as
    soon as every problem is ready for the check to move it on (its error within the
    stage's tolerance, or the target's), so a stage takes no more iterations than with a
    check after each one. At the target ε a problem whose error reaches half the tolerance
    is frozen there and then (the check confirms it), and the burst ends with the last one:
    a batch runs as many iterations as its slowest problem needs, not up to the next
    multiple of the check period."""
    steps = to_next_check(it, opts)
    run = getattr(b.geom, "scaling_steps", None)
    if steps < 2 or run is None or b.rho_a is not None or b.rho_b is not None:
        return 0
    omega = st.omega if st.all_active else torch.where(st.active, st.omega, 0.0)
    half_tol = 0.5 * opts.tol
    if st.all_last:
        # Reading the error off the products costs a dozen vector operations per iteration:
        # only worth it where the batch may finish within this burst.
        near = float(torch.where(st.active, st.err, 0.0).max()) <= NEAR_FINISH * half_tol
        final = st.active if near else None
        stop = torch.where(st.active, half_tol, math.inf) if near else None
    else:
        final = st.active & (st.stage == b.last)
        stop = torch.where(st.active, torch.where(final, half_tol, opts.stage_tol), math.inf)
        left = opts.stage_max_iter - int(st.stage_iters.max())
        steps = min(steps, max(left, 0))
        if steps < 2:
            return 0
    out = run(b.log_a, b.log_b, st.f, st.g, c.eps, omega, steps, stop, final)
    if out is None:
        return None
    f, g, g_hat, each, st.f_hat = out  # f̂ = F(g): the loop's next half-step, made here
    ran = int(each.max())
    if ran == 0:
        return 0
    if st.all_active:
        st.f, st.g, st.g_hat = f, g, g_hat
        st.iterations += each
    else:  # frozen problems keep their potentials to the bit
        active = flag(st.active)
        st.f = torch.where(active, f, st.f)
        st.g = torch.where(active, g, st.g)
        st.g_hat = torch.where(active, g_hat, st.g_hat)
        st.iterations += each * st.active
    if not st.all_last:
        st.stage_iters += each
    return ran

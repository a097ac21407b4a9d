"""The Sinkhorn engine: batched, log-domain, ε-scaling, padding masks, per-problem convergence.

Notation (GeomLoss / Peyré–Cuturi): clouds x_i with masses a_i, y_j with masses b_j, cost C_ij,
dual potentials f_i, g_j. The entropic plan is

    P_ij = a_i b_j exp((f_i + g_j − C_ij) / ε)

and one Sinkhorn iteration is two softmin half-steps

    f_i ← −ε log Σ_j b_j exp((g_j − C_ij) / ε)        (rows of P sum to a)
    g_j ← −ε log Σ_i a_i exp((f_i − C_ij) / ε)        (columns of P sum to b)

Unbalanced OT relaxes the marginals into penalties ρ_a KL(P1‖a) + ρ_b KL(Pᵀ1‖b) (Séjourné et
al. 2019; GeomLoss's ``dampening``): each half-step is the same softmin damped by
τ = ρ/(ρ + ε) (τ = 1, the balanced step, where ρ = ∞),

    f_i ← −τ_a ε log Σ_j b_j exp((g_j − C_ij) / ε)

and at its fixed point the rows of P sum to a_i exp(−f_i/ρ_a) instead of a_i.

Everything is batched over a leading dimension B; padded points carry log-mass −∞ and so
drop out of every sum. The loop only talks to a :class:`~otcli.geometry.Geometry` (one
log-sum-exp along rows, one along columns), so it runs unchanged on the dense and the online
(block-wise, O(n + m) memory) geometries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from otcli import convergence
from otcli.annealing import (
    ANNEALING_START,
    MAX_ANNEALING_STAGES,
    StepConstants,
    damping,
    eps_schedule,
)
from otcli.burst import burst, to_next_check
from otcli.geometry import Geometry
from otcli.loopstate import (
    Batch,
    LoopOutput,
    SolverOptions,
    State,
    compact,
    every,
    finish,
    flag,
    relaxed_marginal,
)

__all__ = [
    "ANNEALING_START",
    "MAX_ANNEALING_STAGES",
    "LoopOutput",
    "ProgressFn",
    "SolverOptions",
    "WarmStart",
    "damping",
    "eps_schedule",
    "relaxed_marginal",
    "report_stage",
    "sinkhorn_loop",
]

#: Batches from this size on drop their finished problems once three quarters are done.
COMPACT_MIN_BATCH = 4


ProgressFn = Callable[[int, float, float], None]
"""Called at each convergence check with (iteration, ε, largest marginal error in the batch).

A progress object may also have a ``stage(description)`` method, told what a run does
between solver callbacks (building C, measuring the plan): see :func:`report_stage`."""


def report_stage(progress: object, description: str) -> None:
    """Tell a progress display what the run is doing now, if it listens."""
    hook = getattr(progress, "stage", None)
    if hook is not None:
        hook(description)


@dataclass(frozen=True)
class _Decision:
    """What a check decided: problems that move to their next ε stage, problems that
    restart from zero (None: none), and how many are still active."""

    advance: torch.Tensor | None
    restart: torch.Tensor | None
    n_active: int


@dataclass(frozen=True)
class WarmStart:
    """Potentials ``g`` (B, m) annealed to ``eps`` (B,) and plain Sinkhorn's rate ``theta`` there
    (None: unknown): the loop starts from them, not the cost's scale and ω = 1 (multiscale)."""

    g: torch.Tensor
    eps: torch.Tensor
    theta: torch.Tensor | None = None


def _start(
    geom: Geometry,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    eps: torch.Tensor,
    opts: SolverOptions,
    warm: WarmStart | None = None,
) -> tuple[Batch, State, StepConstants]:
    """The batch, its schedule and the first half-steps from g = 0, or from a warm start (a
    kernel geometry builds its kernel in the first f half-step, and the g half-step that
    follows uses it)."""
    B = log_a.shape[0]
    # Stages advance at most once per iteration: max_iter + 1 keeps a run that ends while
    # annealing short of the target (it then takes one plain step there, see _finish).
    stages = min(opts.max_iter + 1, MAX_ANNEALING_STAGES)
    first = None if warm is None else torch.maximum(warm.eps, eps)
    schedule = eps_schedule(geom.max_cost(), eps, opts.scaling, stages, first)
    schedule = torch.cat([schedule, eps[None]])  # (K+1, B)
    rows = torch.arange(B, device=eps.device)
    b = Batch(
        geom, log_a, log_b,
        None if opts.rho_a is not None else log_a.exp(),
        None if opts.rho_b is not None else log_b.exp(),
        eps, schedule, rows, rows, opts.rho_a, opts.rho_b,
    )  # fmt: skip
    stage = torch.zeros(B, dtype=torch.int64, device=eps.device)
    stage = torch.where(schedule[stage, rows] == eps, b.last, stage)
    e = schedule[stage, rows]
    c = b.constants(e)
    f = b.f_step(log_b.new_zeros(log_b.shape) if warm is None else warm.g, c)
    g = b.g_step(f, c)
    ones = torch.ones(B, dtype=torch.int64, device=eps.device)
    inf = torch.full((B,), math.inf, dtype=log_a.dtype, device=eps.device)
    no = torch.zeros(B, dtype=torch.bool, device=eps.device)
    st = State(
        f=f, g=g, f_hat=f, g_hat=g, stage=stage, e=e, stage_iters=ones * 0,
        iterations=ones.clone(), active=~no, err=inf.clone(), omega=torch.ones_like(inf),
        theta=torch.zeros_like(inf), err_ref=inf.clone(), ref_at=ones.clone(),
        settled_at=ones * 0, best=inf.clone(), improved_at=ones.clone(),
        reached_at=ones.clone(), restarted=no.clone(), best_f=f, best_g=g, best_err=inf.clone(),
        best_ref=inf.clone(), ref_settled=ones * 0,
        all_last=bool((stage == b.last).all()), one_stage=bool((stage == stage[0]).all()),
    )  # fmt: skip
    if warm is not None and warm.theta is not None:
        st.theta, omega = convergence.carry(warm.theta.to(e.dtype), e / warm.eps, opts.max_omega)
        st.omega = torch.where(stage == b.last, omega, 1.0)
    return b, st, c


def _check(b: Batch, st: State, c: StepConstants, opts: SolverOptions, it: int) -> _Decision:
    """Measure every problem's error and decide: finished, stalled, ready for the next ε.

    The loop aims at half the tolerance: the final float64 evaluation of the plan may differ
    from this working-precision estimate by a few per cent.
    """
    both = b.error(st, c)
    st.err = both if st.all_active else torch.where(st.active, both, st.err)
    if not st.all_last and st.one_stage and st.all_active:
        # Every problem at one annealing stage: none can finish, stall or record a best
        # state there, so the check only asks whether all are ready to move on (a stage
        # that cannot reach its tolerance moves on after stage_max_iter).
        ready = (st.err <= opts.stage_tol) | (st.stage_iters >= opts.stage_max_iter)
        moving = it < opts.max_iter and bool(ready.all())
        return _Decision(ready if moving else None, None, b.size)
    half_tol = 0.5 * opts.tol
    advance = None
    if st.all_last:  # the common case: every problem at its target ε
        finished = st.err <= half_tol
        better = st.err < 0.99 * st.best
        record = st.err < st.best_err
        st.improved_at = torch.where(better, st.iterations, st.improved_at)
    else:
        at_last = st.stage == b.last
        ok = st.err <= torch.where(at_last, half_tol, opts.stage_tol)
        finished = ok & at_last
        # A stage that cannot reach its tolerance (float32 at small ε) must not hold the
        # problem at a larger ε than asked: move on after ``stage_max_iter``. Annealing
        # problems advance together, once all are ready: each stage change costs the batch
        # an extra half-step (and a kernel update), whoever moves.
        ready = ok | (st.stage_iters >= opts.stage_max_iter)
        annealing = st.active & ~at_last
        if it < opts.max_iter:  # no step left at a new ε: the plain step of _finish
            advance = annealing & ~(annealing & ~ready).any()
        better = at_last & (st.err < 0.99 * st.best)
        record = at_last & (st.err < st.best_err)
        st.improved_at = torch.where(better | ~at_last, st.iterations, st.improved_at)
        st.reached_at = torch.where(at_last, st.reached_at, st.iterations)
    st.best = torch.where(better, st.err, st.best)
    restart = _stop_rules(st, opts, it, finished)
    if not st.all_active:
        record &= st.active
    counts = [st.active.sum(), record.sum()]
    counts += [t.sum() for t in (restart, advance) if t is not None]
    counted = torch.stack(counts).tolist()  # the one host sync of a check
    n_active, n_record, rest = counted[0], counted[1], counted[2:]
    n_restart = rest.pop(0) if restart is not None else 0
    n_advance = rest.pop(0) if advance is not None else 0
    st.all_active = n_active == b.size
    if n_record == b.size:  # everyone improved: keep these states
        st.best_f, st.best_g, st.best_err = st.f, st.g, st.err
    elif n_record:
        st.best_f = torch.where(flag(record), st.f, st.best_f)
        st.best_g = torch.where(flag(record), st.g, st.best_g)
        st.best_err = torch.where(record, st.err, st.best_err)
    return _Decision(advance if n_advance else None, restart if n_restart else None, n_active)


def _stop_rules(
    st: State, opts: SolverOptions, it: int, finished: torch.Tensor
) -> torch.Tensor | None:
    """Retire finished problems; every ten iterations also stalled and hopeless ones
    (:mod:`otcli.convergence`). A first stall restarts the problem instead (returned):
    annealing can leave near-ties (a near-permutation plan) in a flat dual direction that
    Sinkhorn leaves at a crawl, and a plain start from zero at the target ε may not."""
    stall_due = it % every(opts.check_every, 10) == 0
    projection_due = it % every(opts.check_every, 50) == 0
    if not (stall_due or projection_due):
        st.active = st.active & ~finished
        return None
    stalled = convergence.stalled(st.iterations, st.improved_at, st.reached_at, opts.patience)
    stalled &= ~finished
    if projection_due:
        settled = st.iterations - st.reached_at
        hopeless, st.best_ref, st.ref_settled = convergence.project(
            st.best, st.best_ref, settled, st.ref_settled, opts.tol, opts.hopeless_window,
            opts.max_iter - it,
        )  # fmt: skip
        hopeless &= ~finished
        stalled |= hopeless
        st.restarted = st.restarted | hopeless  # it stops at once, as a second stall does
    if not st.all_active:
        stalled &= st.active
    restart = stalled & ~st.restarted
    st.active = st.active & ~finished & ~(stalled & st.restarted)
    return restart


def _advance(b: Batch, st: State, d: _Decision, opts: SolverOptions) -> StepConstants | None:
    """Move the problems of ``d.advance`` to their next ε stage; the new constants, or None.

    Stages at the target already (a problem whose costs are smaller than the batch's
    largest) are skipped. Each problem that moves carries its estimate of plain Sinkhorn's
    rate to the new ε (:func:`otcli.convergence.carry`); at the target ε it starts at a
    factor ω a little below that rate's ω*, while annealing stages (a few iterations each,
    mostly the ε change's transient) start plain."""
    if d.restart is not None:
        st.restarted = st.restarted | d.restart
    if d.advance is None:
        return None
    stage = st.stage + d.advance
    st.stage = torch.where(b.schedule[stage, b.rows] == b.target, b.last, stage)
    st.all_last = bool((st.stage == b.last).all())
    st.one_stage = bool((st.stage == st.stage[0]).all())
    e = b.schedule[st.stage, b.rows]
    theta, omega = convergence.carry(st.theta, e / st.e, opts.max_omega)
    st.theta = torch.where(d.advance, theta, st.theta)
    omega = torch.where(st.stage == b.last, omega, 1.0)  # annealing stages start plain
    st.omega = torch.where(d.advance, omega, st.omega)
    st.e = e
    return b.constants(st.e)


def _refresh(b: Batch, st: State, d: _Decision, c: StepConstants) -> None:
    """Fresh starts for problems that advanced or restarted: the stage's iteration count, the
    restarted ones' ω (1, and no estimate of their rate), potentials (f = 0, g = G(0)) and
    bookkeeping; then the f half-step again, for the new ε or potentials. Their ω window
    starts over: the next check takes its reference error (ω itself was carried to the new
    ε by :func:`_advance`)."""
    fresh = d.advance if d.restart is None else d.restart if d.advance is None else (
        d.advance | d.restart
    )  # fmt: skip
    if d.advance is not None:
        st.stage_iters = torch.where(d.advance, 0, st.stage_iters)
    if d.restart is not None:
        restart = d.restart
        st.omega = torch.where(restart, 1.0, st.omega)
        st.theta = torch.where(restart, 0.0, st.theta)
        st.best = torch.where(restart, math.inf, st.best)
        st.improved_at = torch.where(restart, st.iterations, st.improved_at)
        st.reached_at = torch.where(restart, st.iterations, st.reached_at)
        st.best_ref = torch.where(restart, math.inf, st.best_ref)
        st.f = torch.where(flag(restart), 0.0, st.f)
        st.g_hat = b.g_step(st.f, c)
        st.g = torch.where(flag(restart), st.g_hat, st.g)
    st.f_hat = b.f_step(st.g, c)
    st.err_ref = torch.where(fresh, math.inf, st.err_ref)


def _relaxed_step(b: Batch, st: State, c: StepConstants, plain: torch.Tensor | None = None) -> None:
    """f ← f + ω(f̂ − f), then g ← g + ω(ĝ − g) with ĝ = G(f): frozen problems stay put.

    ``plain`` (B,): problems that take this step with ω = 1, the first at a new ε (over-
    relaxing the large move an ε change asks for overshoots it by far)."""
    omega = flag(st.omega if plain is None else torch.where(plain, 1.0, st.omega))
    if st.all_active:  # the common case, above all for one problem: no masking
        st.f = torch.lerp(st.f, st.f_hat, omega)
        st.g_hat = b.g_step(st.f, c)
        st.g = torch.lerp(st.g, st.g_hat, omega)
        st.iterations += 1
    else:
        active = flag(st.active)
        st.f = torch.where(active, torch.lerp(st.f, st.f_hat, omega), st.f)
        st.g_hat = b.g_step(st.f, c)
        st.g = torch.where(active, torch.lerp(st.g, st.g_hat, omega), st.g)
        st.iterations += st.active
    if not st.all_last:
        st.stage_iters += 1


def sinkhorn_loop(
    geom: Geometry,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    eps: torch.Tensor,
    opts: SolverOptions,
    progress: ProgressFn | None = None,
    warm: WarmStart | None = None,
) -> LoopOutput:
    """Over-relaxed Sinkhorn with ε-annealing until every problem meets ``opts.tol``.

    ``log_a`` (B, n) and ``log_b`` (B, m) are log-masses with −∞ on padding; ``eps`` is (B,).
    Each iteration is a relaxed pair of half-steps (:func:`_relaxed_step`); every
    ``check_every`` iterations a check (:func:`_check`) measures each problem's marginal
    error from the half-steps already made and decides, per problem:

    - annealing: each problem walks down its own ε schedule, moving to the next stage once
      its error there is below ``opts.stage_tol`` (one step per stage is not enough: what a
      stage leaves unconverged can decay arbitrarily slowly at smaller ε). The problems
      still annealing move together, when the last of them is ready (:func:`_advance`);
    - over-relaxation: ω per problem from the error's contraction over a window
      (:func:`otcli.convergence.relaxation`); the estimate of plain Sinkhorn's rate is
      carried to the next ε (:func:`_advance`), whose first step is plain, and at the
      target ε the first window starts one step in and ends at the next check;
    - stopping: converged problems are frozen; stalled ones restart once from zero, then
      stop; hopeless ones stop (:func:`_stop_rules`). Each returns the best state it reached
      at the target ε, not merely the last: over-relaxation, a restart or float32 rounding
      can make the error rise again, and a longer run must never return a worse answer;
    - compaction: once no more than a quarter of a batch of 4 or more is active, the
      finished problems leave it (:func:`~otcli.loopstate.compact`), so a slow problem no
      longer makes its converged neighbours pay for every one of its iterations.

    With ``opts.rho_a``/``opts.rho_b`` the half-steps are damped (unbalanced OT, see the
    module docstring) and the error is measured against the relaxed marginals, which is
    the fixed-point residual in units of mass: zero exactly at the unbalanced optimum.

    ``warm``: start from potentials (and a rate) annealed to some ε (:class:`WarmStart`).
    """
    b, st, c = _start(geom, log_a, log_b, eps, opts, warm)
    done: dict[str, torch.Tensor] | None = None
    window = every(opts.check_every, opts.relax_window)  # ω is re-estimated at checks only
    carried = warm is not None and warm.theta is not None  # first step plain, as at a new ε
    fresh_ref, plain = False, (st.active if carried else None)
    burst_from = 2 if carried else 1  # a burst that failed waits for the next check
    it = 0
    while it < opts.max_iter:
        it += 1
        ran = None
        if it >= burst_from:
            ran = burst(b, st, c, it, opts)
            burst_from = it + 1 if ran is not None else it + to_next_check(it, opts) + 1
            it += ran or 0
        if not ran:  # a burst leaves f̂ = F(g) of the state it left
            st.f_hat = b.f_step(st.g, c)
        if it % opts.check_every == 0 or it == opts.max_iter:
            d = _check(b, st, c, opts, it)
            c = _advance(b, st, d, opts) or c
            if it % window == 0 or fresh_ref:
                fresh_ref = False
                st.omega, st.theta, st.err_ref, renewed, st.settled_at = convergence.relaxation(
                    st.omega, st.theta, st.err, st.err_ref, st.iterations, st.ref_at,
                    st.settled_at, window, opts.max_omega,
                )  # fmt: skip
                st.ref_at = torch.where(renewed, st.iterations, st.ref_at)
            if progress is not None:
                progress(it, c.largest, float(st.err.max()))
            if it == opts.max_iter or d.n_active == 0:
                break
            if d.advance is not None or d.restart is not None:
                _refresh(b, st, d, c)
                fresh_ref = True  # the next check takes the new stage's first reference
                plain = d.advance
                if st.all_last and d.advance is not None:
                    # at the target ε: that reference comes one step in, not at the next
                    # burst's end, so the first ω window ends there
                    burst_from = max(burst_from, it + 2)
            elif b.size >= COMPACT_MIN_BATCH and d.n_active <= b.size // 4:
                b, st, done = compact(b, st, done)
                c = b.constants(st.e)
        _relaxed_step(b, st, c, plain)
        fresh_ref, plain = fresh_ref or (carried and it == 1), None
    return finish(b, st, done)

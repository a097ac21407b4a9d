"""The Sinkhorn loop's data: the batch it solves and the state each problem is in.

:func:`otcli.solver.sinkhorn_loop` runs named steps over these two: a :class:`Batch` (the
geometry, log-masses, ε schedule; fixed but for compaction) and a :class:`State` (potentials,
stage, relaxation and convergence bookkeeping, per problem). The batch also holds the two
half-steps and the error they give for free; :class:`SolverOptions` says how hard to work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from otcli import convergence
from otcli.annealing import StepConstants
from otcli.geometry import Geometry


def relaxed_marginal(log_w: torch.Tensor, pot: torch.Tensor, rho: float | None) -> torch.Tensor:
    """The marginal the optimum has on one side, given its potential: w e^{−pot/ρ}, or w.

    It is the first-order condition of the KL penalty: ∂/∂r [ρ KL(r‖w)] = ρ log(r/w) = −pot.
    Taken as exp(log w − pot/ρ), so padding (log w = −∞) stays exactly 0.
    """
    return log_w.exp() if rho is None else (log_w - pot / rho).exp()


def every(check_every: int, iterations: int) -> int:
    """A period of about ``iterations`` that is a whole number of check intervals."""
    return check_every * max(1, math.ceil(iterations / check_every))


def flag(t: torch.Tensor) -> torch.Tensor:
    """A (B,) per-problem tensor as a (B, 1) column, to mask or scale (B, n) potentials."""
    return t[:, None]


@dataclass(frozen=True)
class SolverOptions:
    """How hard to work: target ε per problem, stopping rule and ε-annealing.

    ``tol`` bounds the marginal error ‖P1 − ã‖₁ + ‖Pᵀ1 − b̃‖₁, where ã = a and b̃ = b for
    balanced sides and ã = a exp(−f/ρ_a), b̃ = b exp(−g/ρ_b) (the marginals the optimum
    has, see :func:`relaxed_marginal`) for sides relaxed by a finite ``rho_a``/``rho_b``
    (``None``: balanced); ``scaling`` in (0, 1) is the
    factor between successive ε stages (``None``: plain Sinkhorn at the target ε);
    ``check_every`` is how often the loop measures that error (one host sync each time);
    ``stage_tol`` and ``stage_max_iter`` decide when an annealing stage is done;
    ``patience`` (and half the iterations spent at the target ε, when more) is how long a
    problem's best error may go without a 1% fall there before it counts as stalled;
    ``hopeless_window`` is how often the loop projects, from the best error's fall over that
    many iterations, whether a problem far above ``tol`` can reach it within ``max_iter``.
    """

    max_iter: int = 1000
    tol: float = 1e-5
    stage_tol: float = 1e-2
    stage_max_iter: int = 100
    patience: int = 500
    hopeless_window: int = 200
    relax_window: int = 10
    # Pairs with shared and repeated points (bootstrap resamples) contract at 0.9998 per
    # plain iteration; ω up to 1.98 instead of 1.9 took 10–30% off bootstrap batches of
    # wine, digits and iris, and halved the median iterations at float64's tolerance.
    max_omega: float = 1.98
    scaling: float | None = 0.5
    check_every: int = 1
    rho_a: float | None = None
    rho_b: float | None = None


@dataclass
class Batch:
    """What the loop solves, fixed but for compaction: local row k is problem ``where[k]``."""

    geom: Geometry
    log_a: torch.Tensor  # (B, n) log-masses, −∞ on padding
    log_b: torch.Tensor  # (B, m)
    mass_a: torch.Tensor | None  # a balanced side's marginal, kept for the checks (None: relaxed)
    mass_b: torch.Tensor | None
    target: torch.Tensor  # (B,) target ε
    schedule: torch.Tensor  # (K + 1, B) ε per annealing stage; the last row is the target
    where: torch.Tensor  # (B,) rows of the caller's batch
    rows: torch.Tensor  # (B,) 0..B−1, to index the schedule
    rho_a: float | None
    rho_b: float | None

    @property
    def size(self) -> int:
        return self.where.numel()

    @property
    def last(self) -> int:
        return self.schedule.shape[0] - 1

    def constants(self, eps: torch.Tensor) -> StepConstants:
        return StepConstants.of(eps, self.rho_a, self.rho_b)

    def f_step(self, g: torch.Tensor, c: StepConstants) -> torch.Tensor:
        """f̂ = −τ_a ε log Σ_j b_j exp((g_j − C_ij)/ε): rows of P sum to a, (B, n)."""
        h = torch.addcmul(self.log_b, g, c.inv_eps)  # log b + g/ε
        return torch.mul(self.geom.lse_over_cols(h, c.eps), c.neg_scale_a)

    def g_step(self, f: torch.Tensor, c: StepConstants) -> torch.Tensor:
        """ĝ = −τ_b ε log Σ_i a_i exp((f_i − C_ij)/ε): columns of P sum to b, (B, m)."""
        h = torch.addcmul(self.log_a, f, c.inv_eps)  # log a + f/ε
        return torch.mul(self.geom.lse_over_rows(h, c.eps), c.neg_scale_b)

    def error(self, st: State, c: StepConstants) -> torch.Tensor:
        """(B,) marginal L1 error of the plan of (f, g), read off the half-steps already made.

        The plan of (f, g) has rows summing to a_i exp((f_i − f̂_i)/(τε)) relative to the
        optimum's ã_i = a_i exp(−f_i/ρ) (ã = a, τ = 1 when balanced; 1/ε + 1/ρ = 1/(τε)), and
        columns likewise: the L1 distance is Σ ã |expm1((f − f̂)/(τε))| per side.
        """
        rows = side_error(self.log_a, self.mass_a, st.f, st.f_hat, c.inv_scale_a, self.rho_a)
        return rows.add_(
            side_error(self.log_b, self.mass_b, st.g, st.g_hat, c.inv_scale_b, self.rho_b)
        )

    def select(self, keep: torch.Tensor) -> Batch:
        """Problems ``keep`` only (the loop's compaction)."""
        return Batch(
            self.geom.select(keep), self.log_a[keep], self.log_b[keep],
            None if self.mass_a is None else self.mass_a[keep],
            None if self.mass_b is None else self.mass_b[keep],
            self.target[keep], self.schedule[:, keep], self.where[keep],
            torch.arange(keep.numel(), device=keep.device), self.rho_a, self.rho_b,
        )  # fmt: skip


def side_error(
    log_w: torch.Tensor,
    mass: torch.Tensor | None,
    pot: torch.Tensor,
    hat: torch.Tensor,
    inv_scale: torch.Tensor,
    rho: float | None,
) -> torch.Tensor:
    target_mass = relaxed_marginal(log_w, pot, rho) if mass is None else mass
    ratio = torch.sub(pot, hat).mul_(inv_scale).expm1_().abs_()
    return ratio.mul_(target_mass).sum(1)


@dataclass
class State:
    """Where each problem is: potentials, ε stage, relaxation, convergence bookkeeping.

    Tensors are (B, ·) or (B,); the loop never writes f or g in place, so a best state is
    kept by reference. The three flags are batch-wide shortcuts for the common cases.
    """

    f: torch.Tensor  # (B, n)
    g: torch.Tensor  # (B, m)
    f_hat: torch.Tensor  # F(g): the f that makes rows sum to a for the current g
    g_hat: torch.Tensor  # G(f)
    stage: torch.Tensor  # (B,) int64, index into the schedule
    e: torch.Tensor  # (B,) the current ε
    stage_iters: torch.Tensor  # iterations at the current annealing stage
    iterations: torch.Tensor  # (B,) int64, annealing included
    active: torch.Tensor  # (B,) bool
    err: torch.Tensor  # (B,) the last measured marginal error
    omega: torch.Tensor  # (B,) over-relaxation factor
    theta: torch.Tensor  # (B,) plain Sinkhorn's estimated rate at the current ε (0: unknown)
    err_ref: torch.Tensor  # error at the start of the current rate window
    ref_at: torch.Tensor  # (B,) ``iterations`` when ``err_ref`` was taken
    settled_at: torch.Tensor  # (B,) ``iterations`` from which a changed ω's windows count
    best: torch.Tensor  # lowest error seen at the target ε (the 1% rule's reference)
    improved_at: torch.Tensor  # ``iterations`` when ``best`` last fell by 1%
    reached_at: torch.Tensor  # ``iterations`` when the target ε was reached (or restarted)
    restarted: torch.Tensor  # (B,) bool: restarted once from zero after a stall
    best_f: torch.Tensor  # the best state measured at the target ε
    best_g: torch.Tensor
    best_err: torch.Tensor
    best_ref: torch.Tensor  # ``best`` at the last projection (inf: none yet)
    ref_settled: torch.Tensor  # iterations at the target ε then
    all_active: bool = True
    all_last: bool = False  # every problem at its target ε: the lean check
    one_stage: bool = False  # every problem at one stage: leaner still while annealing

    def select(self, keep: torch.Tensor) -> State:
        tensors = {
            f.name: getattr(self, f.name)[keep]
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return State(**tensors, all_active=True, all_last=self.all_last, one_stage=self.one_stage)


@dataclass(frozen=True)
class LoopOutput:
    """Potentials and per-problem iteration counts straight out of the loop (device tensors).

    Whether a problem converged is decided afterwards, on the plan these potentials define.
    """

    f: torch.Tensor  # (B, n)
    g: torch.Tensor  # (B, m)
    iterations: torch.Tensor  # (B,) int64, annealing stages included
    theta: torch.Tensor  # (B,) the last estimate of plain Sinkhorn's rate (0: none)


def compact(
    b: Batch, st: State, done: dict[str, torch.Tensor] | None
) -> tuple[Batch, State, dict[str, torch.Tensor]]:
    """Finish the problems no longer active (their results wait in ``done``, allocated at
    the first compaction) and go on with the rest alone."""
    keep, gone = st.active.nonzero().squeeze(1), (~st.active).nonzero().squeeze(1)
    if done is None:
        done = {
            "f": st.f.new_zeros(st.f.shape), "g": st.g.new_zeros(st.g.shape),
            "iterations": st.iterations.clone(), "theta": st.theta.clone(),
        }  # fmt: skip
    ff, gg = convergence.best_of(st.f, st.g, st.err, st.best_f, st.best_g, st.best_err)
    done["f"][b.where[gone]] = ff[gone]
    done["g"][b.where[gone]] = gg[gone]
    done["iterations"][b.where[gone]] = st.iterations[gone]
    done["theta"][b.where[gone]] = st.theta[gone]
    return b.select(keep), st.select(keep), done


def finish(b: Batch, st: State, done: dict[str, torch.Tensor] | None) -> LoopOutput:
    """Each problem's best state, in the caller's order. A problem stopped by max_iter while
    still annealing takes one plain step at its target ε: potentials of a larger ε would put
    exp((f + g − C)/ε) out of range there, and this step gives a finite plan whose marginal
    error tells how far from done it is."""
    f, g = convergence.best_of(st.f, st.g, st.err, st.best_f, st.best_g, st.best_err)
    behind = st.stage < b.last
    if not st.all_last and bool(behind.any()):
        t = b.constants(b.target)
        f = torch.where(flag(behind), b.f_step(g, t), f)
        g = torch.where(flag(behind), b.g_step(f, t), g)
    iterations, theta = st.iterations, st.theta
    if done is not None:
        done["f"][b.where], done["g"][b.where] = f, g
        done["iterations"][b.where], done["theta"][b.where] = iterations, theta
        f, g, iterations, theta = done["f"], done["g"], done["iterations"], done["theta"]
    return LoopOutput(f=f, g=g, iterations=iterations, theta=theta)

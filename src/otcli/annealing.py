"""ε-annealing: the schedule of ε stages from the cost's scale down to each target ε, and
the constants a half-step needs of one ε (computed once per stage, not per iteration)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from otcli.errors import SolverError

#: Most ε-annealing stages: a factor so close to 1 that it needs more (0.999999999999 over
#: a cost range of 1e3 wants 10¹³ stages, a (K, B) schedule of terabytes) buys nothing more;
#: the last stage then steps straight to the target ε.
MAX_ANNEALING_STAGES = 10_000

#: Annealing starts at most this factor above the target ε (else at the largest cost):
#: stages far above it cost a kernel update and a few iterations each and leave potentials
#: too coarse to help.
#: Measured (2-core CPU, kernel engine) against starting at C_max: 10–15% faster on
#: unit-cube pairs at ε = 0.01 of 1,000–4,000 points, on 300 ragged pairs and on the 45
#: digit pairs at ε = 10; the same at ε = 1e-4 of the costs, where annealing matters most
#: (a start of 4ε there needed 3× the iterations; 8ε to 64ε did not).
ANNEALING_START = 64.0


def damping(rho: float | None, eps: torch.Tensor) -> torch.Tensor | float:
    """τ = ρ/(ρ + ε), the factor of an unbalanced half-step (1: balanced, ρ = ∞), (B,)."""
    return 1.0 if rho is None else rho / (rho + eps)


def eps_schedule(
    max_cost: torch.Tensor,
    eps: torch.Tensor,
    scaling: float | None,
    max_stages: int | None = None,
    first: torch.Tensor | None = None,
) -> torch.Tensor:
    """(K, B) annealing ε values, from the cost's scale down to (excluding) the target ε.

    Stage j gives problem k max(ε₀ₖ · s^j, εₖ) with ε₀ₖ = min(C_maxₖ,
    :data:`ANNEALING_START` · εₖ). The problems still annealing move to the next stage
    together (see :func:`otcli.solver.sinkhorn_loop`), so in a batch that mixes very
    different ratios C_maxₖ / εₖ a problem with an easy target walks its stages at the pace
    of its hardest neighbour (its result is the same; it just reports more iterations).
    ``first`` (B,) replaces ε₀ where a solve starts from potentials already annealed down to
    it (:mod:`otcli.multiscale`). With ``scaling=None`` the schedule is empty. The number of
    stages is counted in logs (C_max / ε overflows for ε = 1e-300) and capped at
    ``max_stages``: a loop of ``max_stages - 1`` iterations never gets further.
    """
    if scaling is None:
        return eps.new_zeros((0, eps.shape[0]))
    log_ratio = (max_cost.to(eps.dtype).log() - eps.log()).max().item()  # log(C_max / ε)
    if math.isnan(log_ratio) or log_ratio == math.inf:
        raise SolverError(
            "the cost matrix holds non-finite values (the coordinates are too large for the "
            "working precision); rescale the coordinates"
        )
    cost = max_cost.to(eps.dtype)
    start = torch.minimum(cost, ANNEALING_START * eps) if first is None else first  # (B,)
    log_ratio = (start.log() - eps.log()).max().item()  # log(ε₀ / ε), the most stages
    # (less a rounding's worth: 64ε / ε is six halvings, not seven)
    stages = math.ceil(log_ratio / -math.log(scaling) - 1e-9) if log_ratio > 0 else 0
    if max_stages is not None:
        stages = min(stages, max_stages)
    powers = scaling ** torch.arange(stages, dtype=eps.dtype, device=eps.device)  # (K,)
    return torch.maximum(start[None, :] * powers[:, None], eps[None, :])


@dataclass(frozen=True)
class StepConstants:
    """What the half-steps and error checks need of ε, computed once per ε (B,) tensor:
    1/ε, −τ_a ε and −τ_b ε (the half-steps' factors) and 1/(τ_a ε), 1/(τ_b ε), as (B, 1)."""

    eps: torch.Tensor
    largest: float  # the largest ε, for progress reports
    inv_eps: torch.Tensor
    neg_scale_a: torch.Tensor
    neg_scale_b: torch.Tensor
    inv_scale_a: torch.Tensor
    inv_scale_b: torch.Tensor

    @classmethod
    def of(cls, eps: torch.Tensor, rho_a: float | None, rho_b: float | None) -> StepConstants:
        col = eps[:, None]
        scale_a = col if rho_a is None else damping(rho_a, eps)[:, None] * col
        scale_b = col if rho_b is None else damping(rho_b, eps)[:, None] * col
        return cls(
            eps, float(eps.max()), 1.0 / col, -scale_a, -scale_b, 1.0 / scale_a, 1.0 / scale_b
        )

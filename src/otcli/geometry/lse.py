"""The one numerically stable log-sum-exp every geometry uses, in place and block by block.

    log Σ_k exp(z_k) = s + log Σ_k exp(z_k − s),   s = max_k z_k

Three details make it stable and fast, and are why every reduction goes through here:

- exponents are clamped at :data:`_EXP_FLOOR` before ``exp``: such terms cannot change a sum
  that contains exp(0) = 1, and torch's exp is ~10× slower where it underflows;
- a slice with no mass (z = −∞ everywhere) is shifted by 0 rather than by −∞, which would
  give nan; with the floor its log-sum-exp is then −80 + log K, finite and far below any
  real one (such slices are padding, which callers mask);
- everything runs in place in the caller's block, or in its scratch buffer ``exps`` (which
  may be a lower precision than ``z``: the shifted exponents lie in [−80, 0], so rounding
  them costs no more than storing the block does), so a pass allocates no (B, r, K) block.
"""

from __future__ import annotations

import torch

from otcli.geometry.base import _EXP_FLOOR, BlockFn


def finite_or_zero(top: torch.Tensor) -> torch.Tensor:
    """The shift to subtract from a slice whose maximum is ``top``: 0 where ``top`` is not
    finite (a slice with no mass, all −∞, would otherwise give −∞ − −∞ = nan)."""
    return top.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # one pass: isfinite + where


def exp_below(
    z: torch.Tensor, shift: torch.Tensor, exps: torch.Tensor | None = None
) -> torch.Tensor:
    """exp(z − shift), floored at exp(:data:`_EXP_FLOOR`), for a finite ``shift`` ≥ max z.

    ``shift`` broadcasts against ``z`` (see :func:`finite_or_zero`). The result goes into
    ``exps`` (same shape, any float dtype) when given, else into ``z``; either way ``z`` may
    be overwritten.
    """
    if exps is None:
        e = z.sub_(shift)
    elif exps.dtype == z.dtype:
        e = torch.sub(z, shift, out=exps)
    else:  # in place, then a cast: faster on CPU than one mixed-dtype pass (not vectorised)
        e = exps.copy_(z.sub_(shift))
    return e.clamp_(min=_EXP_FLOOR).exp_()


def exp_shifted(
    z: torch.Tensor, dim: int, exps: torch.Tensor | None = None, top: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(exp(z − s), s) along ``dim``: s = max z (kept), or 0 where that max is not finite.

    The exps are those of :func:`exp_below`. ``top``, if given, receives the true maximum
    (−∞ for a slice with no mass), for callers that merge chunks as they go.
    """
    top = z.amax(dim=dim, keepdim=True) if top is None else torch.amax(z, dim, True, out=top)
    shift = finite_or_zero(top)
    return exp_below(z, shift, exps), shift


def logsumexp_(
    z: torch.Tensor,
    dim: int,
    exps: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """log Σ exp(z) along ``dim`` (dropped), destroying ``z`` (or filling ``exps``).

    The sum of exps is taken in the dtype of the exps and its log in ``dtype`` (default: z's).
    """
    e, top = exp_shifted(z, dim, exps)
    return e.sum(dim=dim).to(dtype or z.dtype).log_().add_(top.squeeze(dim))


def blocked_lse(
    block: BlockFn,
    rows: int,
    h: torch.Tensor,
    eps: torch.Tensor,
    step: int,
    dtype: torch.dtype,
    exps: torch.Tensor | None = None,
) -> torch.Tensor:
    """out_r = log Σ_k exp(h_k − M_rk / ε) for a matrix M given block by block: (B, rows).

    ``block`` gives ``step`` rows at a time, already scaled by −1/ε, in ``dtype``: the
    precision of the exponents h_k − M_rk/ε, whose two terms are large where ε is small and
    cancel. ``exps`` (flat, one block's entries, any float dtype) takes the shifted exps when
    given, which may then be stored and summed in a lower precision. ``h`` and the result are
    in the loop's precision (float64 on CPU and CUDA).
    """
    B = h.shape[0]
    neg_inv_eps = (-1.0 / eps).to(dtype)[:, None, None]  # (B, 1, 1)
    hk = h.to(dtype)[:, None, :]  # (B, 1, K)

    def reduce(z: torch.Tensor) -> torch.Tensor:
        e = None if exps is None else exps[: z.numel()].view(z.shape)
        return logsumexp_(z, dim=-1, exps=e, dtype=dtype)

    if step >= rows:  # one block: no output buffer to copy it into
        return reduce(block(0, rows, neg_inv_eps).add_(hk)).to(h.dtype)
    out = torch.empty((B, rows), dtype=dtype, device=h.device)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        z = block(r0, r1, neg_inv_eps).add_(hk)  # (B, r, K): h_k − M_rk/ε
        out[:, r0:r1] = reduce(z)  # (B, r)
    return out.to(h.dtype)

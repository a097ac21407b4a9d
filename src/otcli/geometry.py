"""Geometries: how the Sinkhorn loop gets its log-sum-exps over the cost matrix.

The loop needs two reductions per iteration,

    lse_over_cols(h)_i = log Σ_j exp(h_j − C_ij / ε)      (B, m) → (B, n)
    lse_over_rows(h)_j = log Σ_i exp(h_i − C_ij / ε)      (B, n) → (B, m)

and nothing else about C. Two implementations share that interface:

- :class:`DenseGeometry` keeps C and Cᵀ in memory and reduces them block by block;
- :class:`OnlineGeometry` keeps only the points and rebuilds each block of C on the fly, so
  memory is O(n + m) (one scratch block) however large the clouds.

Both walk the matrix in row blocks of about ``block_elems`` entries: a block stays in cache
while it is scaled, shifted, exponentiated and summed, so DRAM is read once per pass instead
of once per elementwise operation. Padded entries are finite (padding repeats a real point)
and carry log-mass −∞ through ``h``, so they vanish inside the sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

from otcli.cost import CostFn

# exp(−80) ≈ 1.8e−35: terms below it cannot change a sum that contains 1, and clamping
# keeps torch.exp off its slow underflow path (10× slower on CPU, see PERF-NOTES).
_EXP_FLOOR = -80.0

# Entries per block: 2^18 float32 = 1 MiB, about one core's L2 cache.
DEFAULT_BLOCK_ELEMS = 1 << 18


class Geometry(Protocol):
    """What the Sinkhorn loop needs from the cost: log-sum-exps along rows and columns."""

    name: str

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B, m) → (B, n): log Σ_j exp(h_j − C_ij / ε)."""
        ...

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, m): log Σ_i exp(h_i − C_ij / ε)."""
        ...

    def max_cost(self) -> torch.Tensor:
        """(B,): the largest cost between real (unpadded) points, where ε-scaling starts."""
        ...


BlockFn = Callable[[int, int, torch.Tensor], torch.Tensor]
"""(r0, r1, s) → s · M[:, r0:r1] for a (B, R, K) matrix M, as a writable (B, r1 − r0, K) block."""


def _blocked_lse(
    block: BlockFn,
    rows: int,
    h: torch.Tensor,
    eps: torch.Tensor,
    step: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """out_r = log Σ_k exp(h_k − M_rk / ε) for a matrix M given block by block: (B, rows).

    The blocks are in the matrix's ``dtype`` (float32 by default); ``h`` and the result are
    in the loop's precision (float64 on CPU and CUDA).
    """
    B = h.shape[0]
    out = torch.empty((B, rows), dtype=dtype, device=h.device)
    neg_inv_eps = (-1.0 / eps).to(dtype)[:, None, None]  # (B, 1, 1)
    hk = h.to(dtype)[:, None, :]  # (B, 1, K)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        z = block(r0, r1, neg_inv_eps).add_(hk)  # (B, r, K): h_k − M_rk/ε
        zmax = z.amax(dim=-1, keepdim=True)  # (B, r, 1)
        # A row with no mass at all (−inf everywhere) would give nan: shift it by 0 instead.
        zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
        s = z.sub_(zmax).clamp_(min=_EXP_FLOOR).exp_().sum(dim=-1)  # (B, r)
        out[:, r0:r1] = s.log_().add_(zmax.squeeze(-1))
    return out.to(h.dtype)


def _rows_per_block(batch: int, cols: int, block_elems: int) -> int:
    return max(1, block_elems // max(1, batch * cols))


class DenseGeometry:
    """C and Cᵀ in memory, each (B, n, m) / (B, m, n): both reductions run along rows.

    Keeping the transpose doubles memory but lets both half-steps read memory in order,
    which on a CPU is worth more than the space.
    """

    name = "dense"

    def __init__(
        self,
        cost: torch.Tensor,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        block_elems: int = DEFAULT_BLOCK_ELEMS,
    ) -> None:
        self.cost = cost  # (B, n, m)
        self.cost_t = cost.transpose(1, 2).contiguous()  # (B, m, n)
        self.mask_x, self.mask_y = mask_x, mask_y
        B, n, m = cost.shape
        self._step_x = _rows_per_block(B, m, block_elems)
        self._step_y = _rows_per_block(B, n, block_elems)
        self._buf = cost.new_empty((B * max(self._step_x * m, self._step_y * n),))

    def _block(self, mat: torch.Tensor, step: int) -> BlockFn:
        def take(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            B, _, K = mat.shape
            buf = self._buf[: B * (r1 - r0) * K].view(B, r1 - r0, K)
            return torch.mul(mat[:, r0:r1], scale, out=buf)

        return take

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = self.cost.shape[1]
        step = self._step_x
        return _blocked_lse(self._block(self.cost, step), n, h, eps, step, self.cost.dtype)

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        m = self.cost.shape[2]
        step = self._step_y
        return _blocked_lse(self._block(self.cost_t, step), m, h, eps, step, self.cost.dtype)

    def max_cost(self) -> torch.Tensor:
        valid = self.mask_x[:, :, None] & self.mask_y[:, None, :]  # (B, n, m)
        return torch.where(valid, self.cost, 0).amax(dim=(1, 2))


class OnlineGeometry:
    """Only the points are kept; each block of C is rebuilt when needed: O(n + m) memory.

    Every half-step recomputes the whole cost, so it costs more time per iteration than the
    dense form, but it runs pairs whose n×m matrix would never fit in memory.
    """

    name = "online"

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        cost_fn: CostFn,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        dtype: torch.dtype,
        block_elems: int = DEFAULT_BLOCK_ELEMS,
    ) -> None:
        self.x, self.y = x.to(dtype), y.to(dtype)  # (B, n, d), (B, m, d), centred
        self.cost_fn, self.dtype = cost_fn, dtype
        self.mask_x, self.mask_y = mask_x, mask_y
        B, n, _ = x.shape
        m = y.shape[1]
        self._step_x = _rows_per_block(B, m, block_elems)
        self._step_y = _rows_per_block(B, n, block_elems)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = self.x.shape[1]

        def block(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            return self.cost_fn(self.x[:, r0:r1], self.y).mul_(scale)

        return _blocked_lse(block, n, h, eps, self._step_x, self.dtype)

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        m = self.y.shape[1]

        def block(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            # A block of Cᵀ: every cost here is symmetric, C(x, y) = C(y, x).
            return self.cost_fn(self.y[:, r0:r1], self.x).mul_(scale)

        return _blocked_lse(block, m, h, eps, self._step_y, self.dtype)

    def max_cost(self) -> torch.Tensor:
        B, n, _ = self.x.shape
        best = torch.zeros(B, dtype=self.dtype, device=self.x.device)
        for r0 in range(0, n, self._step_x):
            r1 = min(n, r0 + self._step_x)
            c = self.cost_fn(self.x[:, r0:r1], self.y)
            valid = self.mask_x[:, r0:r1, None] & self.mask_y[:, None, :]
            best = torch.maximum(best, torch.where(valid, c, 0).amax(dim=(1, 2)))
        return best


class KernelGeometry:
    """C in memory plus a stabilised kernel K̃: matrix-vector products instead of exps.

    Log-domain updates cost an exp per entry per half-step; a matrix-vector product with a
    precomputed kernel only reads memory, several times faster on a CPU. Plain
    K = exp(−C/ε) under- and overflows at small ε (POT's ``sinkhorn`` returns wrong values
    there), so the kernel absorbs the current potentials (Schmitzer 2019):

        K̃_ij = exp(α_i + β_j − C_ij/ε),   rows normalised at build (Σ_j K̃_ij = 1)

    and the half-steps become

        lse_over_cols(h)_i = log Σ_j K̃_ij exp(h_j − β_j) − α_i
        lse_over_rows(h)_j = log Σ_i K̃_ij exp(h_i − α_i) − β_j

    exact identities, accurate while h stays within ``reach`` of the absorbed values. When
    it drifts further, when ε changes (a new annealing stage) or when a result is not
    finite, the half-step is done in the log domain instead, and the kernel is rebuilt
    around the new potentials by the next column half-step. The answer is the log-domain
    answer to rounding, with exps paid only at rebuilds.
    """

    name = "dense"

    def __init__(
        self,
        cost: torch.Tensor,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        block_elems: int = DEFAULT_BLOCK_ELEMS,
        reach: float = 30.0,
    ) -> None:
        self.cost = cost  # (B, n, m)
        self.mask_x, self.mask_y = mask_x, mask_y
        self.kernel = torch.empty_like(cost)  # K̃, (B, n, m), in the cost's dtype
        self.alpha: torch.Tensor | None = None  # (B, n), in the loop's precision
        self.beta: torch.Tensor | None = None  # (B, m)
        self.eps_k: torch.Tensor | None = None  # ε the kernel was built for; None: stale
        self.reach = reach
        self.rebuilds = 0
        B, _, m = cost.shape
        self._step = _rows_per_block(B, m, block_elems)

    def _usable(self, d: torch.Tensor, eps: torch.Tensor) -> bool:
        """The kernel is for this ε and the finite entries of h − absorbed stay within reach."""
        if self.eps_k is None or not torch.equal(eps, self.eps_k):
            return False
        spread = torch.where(torch.isfinite(d), d.abs(), 0).amax()
        return bool(spread <= self.reach)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.beta is not None and self._usable(d := h - self.beta, eps):
            w = d.exp().to(self.kernel.dtype)[:, :, None]  # (B, m, 1)
            r = torch.bmm(self.kernel, w).squeeze(-1).to(h.dtype)  # (B, n): K̃ e^d
            out = r.log_().sub_(self.alpha)
            if bool(torch.isfinite(out).all()):
                return out
        return self._rebuild(h, eps)

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.alpha is not None and self._usable(d := h - self.alpha, eps):
            w = d.exp().to(self.kernel.dtype)[:, None, :]  # (B, 1, n)
            r = torch.bmm(w, self.kernel).squeeze(1).to(h.dtype)  # (B, m): K̃ᵀ e^d
            out = torch.where(self.mask_y, r.log_().sub_(self.beta), 0)
            if bool(torch.isfinite(out).all()):
                return out
        self.eps_k = None  # rebuild at the next column half-step
        return self._exact_rows(h, eps)

    def _rebuild(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Exact column half-step in the loop's precision; K̃ rebuilt around its in- and output.

        The exponent α_i + β_j − C_ij/ε is formed in that precision too, so K̃ carries only
        the rounding of its own storage, not the rounding of C/ε at small ε.
        """
        B, n, _ = self.cost.shape
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        out = h.new_empty((B, n))
        for r0 in range(0, n, self._step):
            r1 = min(n, r0 + self._step)
            z = (self.cost[:, r0:r1].to(h.dtype) * neg_inv_eps).add_(h[:, None, :])  # (B, r, m)
            zmax = z.amax(dim=-1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            lse = (z - zmax).clamp_(min=_EXP_FLOOR).exp_().sum(dim=-1).log_().add_(zmax[..., 0])
            out[:, r0:r1] = lse
            # K̃_ij = exp(h_j − C_ij/ε − lse_i): α_i = −lse_i, β_j = h_j; rows sum to 1.
            self.kernel[:, r0:r1] = z.sub_(lse[:, :, None]).clamp_(min=_EXP_FLOOR).exp_()
        self.alpha = -out
        self.beta = torch.where(torch.isfinite(h), h, 0)  # padding: −inf in h, 0 in β
        self.eps_k = eps.clone()
        self.rebuilds += 1
        return out

    def _exact_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Log-domain row half-step over row blocks, combining partial sums as it goes."""
        B, n, m = self.cost.shape
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        acc = h.new_full((B, m), -math.inf)
        for r0 in range(0, n, self._step):
            r1 = min(n, r0 + self._step)
            z = (self.cost[:, r0:r1].to(h.dtype) * neg_inv_eps).add_(h[:, r0:r1, None])
            zmax = z.amax(dim=1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            part = z.sub_(zmax).clamp_(min=_EXP_FLOOR).exp_().sum(dim=1).log_().add_(zmax[:, 0])
            acc = torch.logaddexp(acc, part)
        return torch.where(self.mask_y, acc, 0)

    def max_cost(self) -> torch.Tensor:
        valid = self.mask_x[:, :, None] & self.mask_y[:, None, :]  # (B, n, m)
        return torch.where(valid, self.cost, 0).amax(dim=(1, 2))

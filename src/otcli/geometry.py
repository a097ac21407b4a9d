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
        vector_dtype: torch.dtype = torch.float64,
    ) -> None:
        self.cost = cost  # (B, n, m)
        self.mask_x, self.mask_y = mask_x, mask_y
        self.kernel = torch.zeros_like(cost)  # K̃, (B, n, m), in the cost's dtype
        B, n, m = cost.shape
        self.alpha = cost.new_zeros((B, n), dtype=vector_dtype)  # in the loop's precision
        self.beta = cost.new_zeros((B, m), dtype=vector_dtype)
        # ε each problem's kernel was built for; NaN: stale (rebuild at the next column step)
        self.eps_k = cost.new_full((B,), math.nan, dtype=vector_dtype)
        self.reach = reach
        self.rebuilds = 0  # problems rebuilt, summed over calls
        self._block_elems = block_elems

    def _usable(self, d: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B,) bool: kernel built for this ε and finite entries of h − absorbed within reach."""
        spread = torch.where(torch.isfinite(d), d.abs(), 0).amax(dim=1)
        return (eps == self.eps_k) & (spread <= self.reach)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        d = h - self.beta  # (B, m)
        usable = self._usable(d, eps)
        w = torch.where(usable[:, None], d, -math.inf).exp().to(self.kernel.dtype)  # (B, m)
        # K̃ e^d as a row vector times K̃ᵀ: torch's batched matrix-vector product is several
        # times slower than the vector-matrix form on CPU for batches of small matrices.
        r = torch.bmm(w[:, None, :], self.kernel.transpose(1, 2)).squeeze(1).to(h.dtype)  # (B, n)
        out = r.log_().sub_(self.alpha)
        redo = ~(usable & torch.isfinite(out).all(dim=1))
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            out[idx] = self._rebuild(idx, h[idx], eps[idx])
        return out

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        d = h - self.alpha  # (B, n)
        usable = self._usable(d, eps)
        w = torch.where(usable[:, None], d, -math.inf).exp().to(self.kernel.dtype)  # (B, n)
        r = torch.bmm(w[:, None, :], self.kernel).squeeze(1).to(h.dtype)  # (B, m): K̃ᵀ e^d
        out = torch.where(self.mask_y, r.log_().sub_(self.beta), 0)
        redo = ~(usable & torch.isfinite(out).all(dim=1))
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            out[idx] = self._exact_rows(idx, h[idx], eps[idx])
            self.eps_k[idx] = math.nan  # rebuilt at their next column half-step
        return out

    def _rebuild(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Exact column half-step for problems ``idx``; their K̃ rebuilt around it.

        Done in the loop's precision, so the exponent α_i + β_j − C_ij/ε carries no rounding
        of C/ε: K̃ holds only the rounding of its own storage.
        """
        whole = idx.numel() == self.cost.shape[0]  # no copies of C when all are rebuilt
        cost = self.cost if whole else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = _rows_per_block(b, m, self._block_elems)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        out = h.new_empty((b, n))
        kernel = self.kernel if whole else torch.empty_like(cost)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = (cost[:, r0:r1].to(h.dtype) * neg_inv_eps).add_(h[:, None, :])  # (b, r, m)
            zmax = z.amax(dim=-1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            e = z.sub_(zmax).clamp_(min=_EXP_FLOOR).exp_()  # exp(z − max), (b, r, m)
            total = e.sum(dim=-1)  # (b, r)
            out[:, r0:r1] = total.log().add_(zmax[..., 0])  # lse_i
            # K̃_ij = exp(h_j − C_ij/ε − lse_i) = e_ij / Σ_j e_ij: α_i = −lse_i, β_j = h_j,
            # rows sum to 1, and no second exp.
            kernel[:, r0:r1] = e.div_(total[:, :, None])
        if not whole:
            self.kernel[idx] = kernel
        self.alpha[idx] = -out
        self.beta[idx] = torch.where(torch.isfinite(h), h, 0)  # padding: −inf in h, 0 in β
        self.eps_k[idx] = eps
        self.rebuilds += int(idx.numel())
        return out

    def _exact_rows(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Log-domain row half-step for problems ``idx``, combining row blocks as it goes."""
        cost = self.cost if idx.numel() == self.cost.shape[0] else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = _rows_per_block(b, m, self._block_elems)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        acc = h.new_full((b, m), -math.inf)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = (cost[:, r0:r1].to(h.dtype) * neg_inv_eps).add_(h[:, r0:r1, None])
            zmax = z.amax(dim=1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            part = z.sub_(zmax).clamp_(min=_EXP_FLOOR).exp_().sum(dim=1).log_().add_(zmax[:, 0])
            acc = torch.logaddexp(acc, part)
        return torch.where(self.mask_y[idx], acc, 0)

    def max_cost(self) -> torch.Tensor:
        valid = self.mask_x[:, :, None] & self.mask_y[:, None, :]  # (B, n, m)
        return torch.where(valid, self.cost, 0).amax(dim=(1, 2))

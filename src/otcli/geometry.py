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

from otcli.blocksparse import BlockSparseLse, box_cost_lower, kd_leaves, leaf_sizes
from otcli.costs import CostFn

# exp(−80) ≈ 1.8e−35: terms below it cannot change a sum that contains 1, and clamping
# keeps torch.exp off its slow underflow path (10× slower on CPU, see PERF-NOTES).
_EXP_FLOOR = -80.0

# Entries per block: 2^18 float32 = 1 MiB, about one core's L2 cache.
DEFAULT_BLOCK_ELEMS = 1 << 18

# Entries per block of the online geometry, whose blocks are computed rather than read: at
# 2^20 (8 MiB of float64 exponents) a half-step ran 1.3× faster than at 2^18 on the 2-core
# Zen 5 here, for both the fused squared-Euclidean path and the coordinate-loop costs.
ONLINE_BLOCK_ELEMS = 1 << 20

# Pairs from this size (n·m, about 2,000 × 2,000) on are reduced block-sparsely by the online
# geometry. Smaller pairs take the online path only when asked to (dense fits any machine),
# and keep its simpler code; the gain was measured from 10,000 points up.
_PRUNE_MIN_ENTRIES = 1 << 22

# Kernel size (entries per problem) from which a product is split across threads.
_SLAB_MIN_ENTRIES = 1 << 16

# Annealing stages in a row served by squaring the kernel before an exact rebuild: each
# squaring doubles K̃'s relative rounding (2^8 float32 ulps ≈ 3e−5, ample for a warm start).
_MAX_SQUARINGS = 8

# Largest column factor exp(h − 2β) a squaring may apply (float32 overflows near e^88).
_SQUARE_MAX_SHIFT = 60.0

# Entries per block when a kernel is rebuilt (4 MiB of float64 exponents): measured best
# on a 2-core Zen 5; smaller blocks pay more per-operation overhead than they save in cache.
_REBUILD_BLOCK_ELEMS = 1 << 19


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


def _masked_max(cost: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor) -> torch.Tensor:
    """(B,): the largest entry of each (n, m) cost between real points, row block by block."""
    B, n, m = cost.shape
    step = _rows_per_block(B, m, DEFAULT_BLOCK_ELEMS)
    best = cost.new_zeros(B)
    for r0 in range(0, n, step):
        valid = mask_x[:, r0 : r0 + step, None] & mask_y[:, None, :]
        part = torch.where(valid, cost[:, r0 : r0 + step], 0).amax(dim=(1, 2))
        best = torch.maximum(best, part)
    return best


def _slabs_per_problem(batch: int, entries: int) -> int:
    """Row slabs each problem's kernel is cut into so a product keeps every thread busy."""
    threads = torch.get_num_threads()
    if batch >= 2 * threads or entries < _SLAB_MIN_ENTRIES:
        return 1
    return min(8, -(-2 * threads // batch))


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
        return _masked_max(self.cost, self.mask_x, self.mask_y)


class OnlineGeometry:
    """Only the points are kept; each block of C is rebuilt when needed: O(n + m) memory.

    Every half-step recomputes the whole cost, so it costs more time per iteration than the
    dense form, but it runs pairs whose n×m matrix would never fit in memory.

    On CPU the squared Euclidean cost takes a fused path: its exponents come from one float64
    batched product per block, exact to float64 rounding rather than to the float32 C that
    :meth:`SinkhornResult.plan` rebuilds; the two differ by ulp(C)/ε, which the reported
    marginal error (always measured on the returned plan) includes.

    One large pair on CPU with a coordinate cost is reduced block-sparsely instead
    (:mod:`otcli.blocksparse`): the same sums to float64 rounding, without the leaf pairs
    whose terms provably cannot reach 1e−17 of them, which at small ε is most of C.
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
        block_elems: int = ONLINE_BLOCK_ELEMS,
        prune: bool | None = None,
    ) -> None:
        self.x, self.y = x.to(dtype), y.to(dtype)  # (B, n, d), (B, m, d), centred
        self.cost_fn, self.dtype = cost_fn, dtype
        self.mask_x, self.mask_y = mask_x, mask_y
        B, n, _ = x.shape
        m = y.shape[1]
        self._step_x = _rows_per_block(B, m, block_elems)
        self._step_y = _rows_per_block(B, n, block_elems)
        # Squared Euclidean on CPU: h_j − C_ij/ε comes out of one batched matrix product,
        # up to a per-row constant, instead of a cost block and three more passes over it.
        # The product runs in float64, where |x|² + |y|² − 2x·y loses nothing that matters;
        # the exps still run in ``dtype``.
        self._fused = x.device.type == "cpu" and cost_fn.fused_sqeuclidean
        if self._fused:
            self._x64, self._y64 = x.to(torch.float64), y.to(torch.float64)
            self._sqx, self._sqy = self._x64.square().sum(-1), self._y64.square().sum(-1)
        # One large pair on CPU: skip the leaf pairs whose terms cannot reach 1e−17 of a sum
        # (see otcli.blocksparse). ``prune`` None decides by size; tests force it either way.
        if prune is None:
            prune = n * m >= _PRUNE_MIN_ENTRIES
        self._sparse: tuple[BlockSparseLse, BlockSparseLse] | None = None
        if (
            prune
            and B == 1
            and x.device.type == "cpu"
            and cost_fn.has_box_lower
            and bool(mask_x.all())
            and bool(mask_y.all())
        ):
            self._sparse = _sparse_pair(self.x[0], self.y[0], cost_fn, self._fused)

    def _fused_lse(
        self,
        rows: torch.Tensor,
        sq_rows: torch.Tensor,
        cols: torch.Tensor,
        sq_cols: torch.Tensor,
        h: torch.Tensor,
        eps: torch.Tensor,
        step: int,
    ) -> torch.Tensor:
        """log Σ_k exp(h_k − |r_i − c_k|²/ε) for points ``rows`` (B, R, d), ``cols`` (B, K, d).

        = log Σ_k exp(r_i·(2c_k/ε) + h_k − |c_k|²/ε) − |r_i|²/ε: one baddbmm per block.
        """
        B, R, _ = rows.shape
        K = cols.shape[1]
        inv = (1.0 / eps).to(torch.float64)  # (B,)
        scaled = (cols * (2 * inv)[:, None, None]).transpose(1, 2)  # (B, d, K)
        bias = (h.to(torch.float64) - sq_cols * inv[:, None])[:, None, :]  # (B, 1, K)
        out = torch.empty((B, R), dtype=torch.float64, device=h.device)
        z_hi = torch.empty((B, min(step, R), K), dtype=torch.float64, device=h.device)
        z_lo = torch.empty((B, min(step, R), K), dtype=self.dtype, device=h.device)
        for r0 in range(0, R, step):
            r1 = min(R, r0 + step)
            z = z_hi[:, : r1 - r0]
            torch.baddbmm(bias, rows[:, r0:r1], scaled, out=z)
            zmax = z.amax(dim=-1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            e = z_lo[:, : r1 - r0].copy_(z.sub_(zmax)).clamp_(min=_EXP_FLOOR).exp_()
            out[:, r0:r1] = e.sum(dim=-1).to(torch.float64).log_().add_(zmax[..., 0])
        return out.sub_(sq_rows * inv[:, None]).to(h.dtype)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self._sparse is not None:
            plain = lambda: self._plain_cols(h, eps)[0].double()  # noqa: E731
            return self._sparse[0](h[0].double(), float(eps[0]), plain)[None].to(h.dtype)
        return self._plain_cols(h, eps)

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self._sparse is not None:
            plain = lambda: self._plain_rows(h, eps)[0].double()  # noqa: E731
            return self._sparse[1](h[0].double(), float(eps[0]), plain)[None].to(h.dtype)
        return self._plain_rows(h, eps)

    def _plain_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self._fused:
            return self._fused_lse(self._x64, self._sqx, self._y64, self._sqy, h, eps, self._step_x)
        n = self.x.shape[1]

        def block(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            return self.cost_fn(self.x[:, r0:r1], self.y).mul_(scale)

        return _blocked_lse(block, n, h, eps, self._step_x, self.dtype)

    def _plain_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self._fused:
            return self._fused_lse(self._y64, self._sqy, self._x64, self._sqx, h, eps, self._step_y)
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


def _sparse_pair(
    x: torch.Tensor, y: torch.Tensor, cost_fn: CostFn, fused: bool
) -> tuple[BlockSparseLse, BlockSparseLse]:
    """Block-sparse reducers over the columns (rows x, columns y) and over the rows."""
    n, m = x.shape[0], y.shape[0]
    row_x, col_y = leaf_sizes(n, m)
    row_y, col_x = leaf_sizes(m, n)
    xr, yc = kd_leaves(x, row_x), kd_leaves(y, col_y)
    yr, xc = kd_leaves(y, row_y), kd_leaves(x, col_x)
    cmin_cols, cmin_rows = box_cost_lower(cost_fn, xr, yc), box_cost_lower(cost_fn, yr, xc)
    if cmin_cols is None or cmin_rows is None:  # the caller checked cost_fn.has_box_lower
        raise ValueError(f"{cost_fn.describe()} has no box bound to prune by")
    over_cols = BlockSparseLse(x, y, xr, yc, cmin_cols, cost_fn, fused)
    over_rows = BlockSparseLse(y, x, yr, xc, cmin_rows, cost_fn, fused)
    return over_cols, over_rows


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
    answer to rounding, with exps paid only at rebuilds. An annealing stage that halves ε
    squares the kernel instead of rebuilding it (:meth:`_square`); the target ε values
    (``exact_eps``) always get a rebuild.
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
        exact_eps: torch.Tensor | None = None,
    ) -> None:
        self.cost = cost  # (B, n, m)
        self.mask_x, self.mask_y = mask_x, mask_y
        self._massless_x, self._massless_y = ~mask_x, ~mask_y  # padding, zero masses
        B, n, m = cost.shape
        self._n = n
        self._splits = _slabs_per_problem(B, n * m)
        n_pad = -(-n // self._splits) * self._splits
        # K̃, (B, n, m), in the cost's dtype: a view of a buffer whose zero rows round n up
        # to a whole number of slabs.
        self._full = cost.new_zeros((B, n_pad, m))
        self.kernel = self._full[:, :n]
        self.alpha = cost.new_zeros((B, n), dtype=vector_dtype)  # in the loop's precision
        self.beta = cost.new_zeros((B, m), dtype=vector_dtype)
        # ε each problem's kernel was built for; NaN: stale (rebuild at the next column step)
        self.eps_k = cost.new_full((B,), math.nan, dtype=vector_dtype)
        self.reach = reach
        self.rebuilds = 0  # problems rebuilt, summed over calls
        self._block_elems = block_elems
        # ε values whose kernel must be exact (the targets); None: never square a kernel.
        self.exact_eps = exact_eps
        self.squarings = torch.zeros(B, dtype=torch.int64, device=cost.device)  # since a build

    def _times(self, w: torch.Tensor, over_cols: bool) -> torch.Tensor:
        """K̃ w, (B, m) → (B, n) (``over_cols``), or wᵀ K̃, (B, n) → (B, m), in K̃'s dtype.

        Both run as batched vector-times-matrix products, the fast form of torch's CPU bmm,
        over ``splits`` row slabs per problem: torch parallelises bmm over the batch only,
        so a lone large problem would otherwise leave all cores but one idle.
        """
        B, n_pad, m = self._full.shape
        s = self._splits
        slabs = self._full.view(B * s, n_pad // s, m)
        if over_cols:
            ws = w[:, None, None, :].expand(B, s, 1, m).reshape(B * s, 1, m)
            return torch.bmm(ws, slabs.transpose(1, 2)).view(B, n_pad)[:, : self._n]
        wp = w if n_pad == self._n else torch.nn.functional.pad(w, (0, n_pad - self._n))
        return torch.bmm(wp.view(B * s, 1, n_pad // s), slabs).view(B, s, m).sum(dim=1)

    def _usable(self, d: torch.Tensor, eps: torch.Tensor, massless: torch.Tensor) -> torch.Tensor:
        """(B,) bool: kernel built for this ε and h − absorbed within reach where there is mass.

        (``torch.isfinite`` is several times slower than these few passes on small batches.)
        """
        spread = d.masked_fill(massless, 0.0).abs_().amax(dim=1)
        return (eps == self.eps_k) & (spread <= self.reach)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.exact_eps is not None:
            halved = (2 * eps == self.eps_k) & (eps != self.exact_eps)
            halved &= self.squarings < _MAX_SQUARINGS
            if bool(halved.any()):
                self._square(halved.nonzero().squeeze(1), h)
        d = h - self.beta  # (B, m)
        usable = self._usable(d, eps, self._massless_y)
        w = torch.where(usable[:, None], d, -math.inf).exp().to(self.kernel.dtype)  # (B, m)
        r = self._times(w, over_cols=True).to(h.dtype)  # (B, n): K̃ e^d
        out = r.log_().sub_(self.alpha)
        redo = ~(usable & torch.isfinite(out.sum(dim=1)))  # a sum is finite iff all are
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            out[idx] = self._rebuild(idx, h[idx], eps[idx])
        return out

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        d = h - self.alpha  # (B, n)
        usable = self._usable(d, eps, self._massless_x)
        w = torch.where(usable[:, None], d, -math.inf).exp().to(self.kernel.dtype)  # (B, n)
        r = self._times(w, over_cols=False).to(h.dtype)  # (B, m): K̃ᵀ e^d
        out = torch.where(self.mask_y, r.log_().sub_(self.beta), 0)
        redo = ~(usable & torch.isfinite(out.sum(dim=1)))  # a sum is finite iff all are
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            out[idx] = self._exact_rows(idx, h[idx], eps[idx])
            self.eps_k[idx] = math.nan  # rebuilt at their next column half-step
        return out

    def _square(self, idx: torch.Tensor, h: torch.Tensor) -> None:
        """Halve the kernel's ε for problems ``idx`` by squaring K̃: one cheap pass, no exp.

        exp(α + β − C/ε)² = exp(2α + 2β − C/(ε/2)). Columns are then scaled by
        exp(h_j − 2β_j), so that β = h as after a rebuild, and rows renormalised. Squaring
        doubles K̃'s relative rounding, so it serves the annealing stages only: the target ε
        always gets an exact rebuild (see ``exact_eps``), and after :data:`_MAX_SQUARINGS`
        in a row so does any stage. A problem whose column factors would overflow, or
        whose rows vanish, is marked stale and rebuilt instead.
        """
        whole = idx.numel() == self.kernel.shape[0]
        hb, beta = h[idx], self.beta[idx]
        shift = torch.where(torch.isfinite(hb), hb - 2 * beta, -math.inf)  # (b, m)
        ok = shift.amax(dim=1) <= _SQUARE_MAX_SHIFT
        if not bool(ok.all()):
            self.eps_k[idx[~ok]] = math.nan
            idx, hb, shift = idx[ok], hb[ok], shift[ok]
            whole = False
            if idx.numel() == 0:
                return
        kernel = self.kernel if whole else self.kernel[idx]  # (b, n, m)
        b, n, m = kernel.shape
        col = shift.exp().to(kernel.dtype)[:, None, :]  # (b, 1, m)
        sums = h.new_empty((b, n))
        step = _rows_per_block(b, m, self._block_elems)
        for r0 in range(0, n, step):
            blk = kernel[:, r0 : r0 + step]
            blk.mul_(blk).mul_(col)
            total = blk.sum(dim=-1)  # (b, r)
            blk.div_(total[:, :, None])
            sums[:, r0 : r0 + step] = total.to(h.dtype)
        if not whole:
            self.kernel[idx] = kernel
        alpha = 2 * self.alpha[idx] - sums.log()
        self.alpha[idx] = alpha
        self.beta[idx] = torch.where(torch.isfinite(hb), hb, 0)
        fine = torch.isfinite(alpha).all(dim=1)
        self.eps_k[idx] = torch.where(fine, self.eps_k[idx] / 2, math.nan)
        self.squarings[idx] += 1

    def _rebuild(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Exact column half-step for problems ``idx``; their K̃ rebuilt around it.

        Done in the loop's precision, so the exponent α_i + β_j − C_ij/ε carries no rounding
        of C/ε: K̃ holds only the rounding of its own storage.
        """
        whole = idx.numel() == self.cost.shape[0]  # no copies of C when all are rebuilt
        cost = self.cost if whole else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = _rows_per_block(b, m, _REBUILD_BLOCK_ELEMS)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        out = h.new_empty((b, n))
        kernel = self.kernel if whole else torch.empty_like(cost)
        z_hi = h.new_empty((b, step, m))  # exponents in the loop's precision
        z_lo = cost.new_empty((b, step, m))  # exp(exponent − row max), in the kernel's dtype
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = torch.addcmul(h[:, None, :], cost[:, r0:r1], neg_inv_eps, out=z_hi[:, : r1 - r0])
            zmax = z.amax(dim=-1, keepdim=True)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            # Shifted exponents lie in [−80, 0]: rounding them to the kernel's dtype costs
            # K̃ no more than its own storage does, and the exp runs at single-precision speed.
            e = z_lo[:, : r1 - r0].copy_(z.sub_(zmax)).clamp_(min=_EXP_FLOOR).exp_()
            total = e.sum(dim=-1)  # (b, r)
            out[:, r0:r1] = total.to(h.dtype).log().add_(zmax[..., 0])  # lse_i (total kept)
            # K̃_ij = exp(h_j − C_ij/ε − lse_i) = e_ij / Σ_j e_ij: α_i = −lse_i, β_j = h_j,
            # rows sum to 1, and no second exp.
            torch.div(e, total[:, :, None], out=kernel[:, r0:r1])
        if not whole:
            self.kernel[idx] = kernel
        self.alpha[idx] = -out
        self.beta[idx] = torch.where(torch.isfinite(h), h, 0)  # padding: −inf in h, 0 in β
        self.eps_k[idx] = eps
        self.squarings[idx] = 0
        self.rebuilds += int(idx.numel())
        return out

    def _exact_rows(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Log-domain row half-step for problems ``idx``, combining row blocks as it goes.

        Exponents in the loop's precision, exps of the shifted ones in the kernel's dtype, as
        in :meth:`_rebuild`.
        """
        cost = self.cost if idx.numel() == self.cost.shape[0] else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = _rows_per_block(b, m, _REBUILD_BLOCK_ELEMS)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        acc = h.new_full((b, m), -math.inf)
        z_hi = h.new_empty((b, step, m))
        z_lo = cost.new_empty((b, step, m))
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = z_hi[:, : r1 - r0]
            torch.addcmul(h[:, r0:r1, None], cost[:, r0:r1], neg_inv_eps, out=z)
            zmax = z.amax(dim=1, keepdim=True)  # (b, 1, m)
            zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
            e = z_lo[:, : r1 - r0].copy_(z.sub_(zmax)).clamp_(min=_EXP_FLOOR).exp_()
            part = e.sum(dim=1).to(h.dtype).log_().add_(zmax[:, 0])
            acc = torch.logaddexp(acc, part)
        return torch.where(self.mask_y[idx], acc, 0)

    def max_cost(self) -> torch.Tensor:
        return _masked_max(self.cost, self.mask_x, self.mask_y)

"""The online geometry: only the points are kept, and each block of C is rebuilt on the fly.

Memory is O(n + m) (one scratch block) however large the clouds, at the price of
recomputing C every half-step. Two faster paths share the class: on CPU the squared
Euclidean cost gets its exponents from one float64 matrix product per block, and one large
pair on CPU is reduced block-sparsely (:mod:`otcli.geometry.blocksparse`), skipping the
blocks whose terms provably cannot count.
"""

from __future__ import annotations

import torch

from otcli.costs import CostFn
from otcli.geometry.base import block_elems_for, rows_per_block
from otcli.geometry.blocksparse import (
    BlockSparseLse,
    box_cost_lower,
    kd_leaves,
    largest_cost,
    leaf_sizes,
)
from otcli.geometry.lse import blocked_lse, logsumexp_

# Pairs from this size (n·m, about 2,000 × 2,000) on are reduced block-sparsely by the online
# geometry. Smaller pairs take the online path only when asked to (dense fits any machine),
# and keep its simpler code; the gain was measured from 10,000 points up.
_PRUNE_MIN_ENTRIES = 1 << 22


class OnlineGeometry:
    """Only the points are kept; each block of C is rebuilt when needed: O(n + m) memory.

    Every half-step recomputes the whole cost, so it costs more time per iteration than the
    dense form, but it runs pairs whose n×m matrix would never fit in memory. Blocks hold
    ``block_elems`` entries, by default the device's (:func:`block_elems_for`): 2^20 on CPU,
    2^26 on CUDA, where fewer blocks mean fewer kernel launches.

    On CPU the squared Euclidean cost takes a fused path: its exponents come from one float64
    batched product per block, exact to float64 rounding. The solve then stands on C in
    float64 (``cost_dtype``), and so do the returned plan and its figures: on a float32 C
    they would differ by ulp(C)/ε, 2e-6 of a row's mass for colour pixels at ε = 1e-3,
    which doubled the marginal error a float32 solve reported and failed 20,000-pixel pairs.

    One large pair on CPU with a coordinate cost is reduced block-sparsely instead
    (:mod:`otcli.geometry.blocksparse`): the same sums to float64 rounding, without the leaf
    pairs whose terms provably cannot reach the sums' rounding (1e−17 of them in float64,
    1e−8 in float32), which at small ε is most of C.
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
        block_elems: int | None = None,
        prune: bool | None = None,
    ) -> None:
        if block_elems is None:  # the device's: 2^20 entries on CPU, 2^26 on CUDA
            block_elems = block_elems_for(x.device, online=True)
        self.x, self.y = x.to(dtype), y.to(dtype)  # (B, n, d), (B, m, d), centred
        self._points = (x, y)  # as given, for select()
        self.cost_fn, self.dtype = cost_fn, dtype
        self.mask_x, self.mask_y = mask_x, mask_y
        B, n, _ = x.shape
        m = y.shape[1]
        self._step_x = rows_per_block(B, m, block_elems)
        self._step_y = rows_per_block(B, n, block_elems)
        # Squared Euclidean on CPU: h_j − C_ij/ε comes out of one batched matrix product,
        # up to a per-row constant, instead of a cost block and three more passes over it.
        # The product runs in float64, where |x|² + |y|² − 2x·y loses nothing that matters;
        # the exps still run in ``dtype``.
        self._fused = x.device.type == "cpu" and cost_fn.fused_sqeuclidean
        # The precision of the C this geometry solves on, which the returned plan is built
        # on too (see :class:`otcli.result.SinkhornResult`'s ``cost_dtype``).
        self.cost_dtype = torch.float64 if self._fused else dtype
        if self._fused:
            self._x64, self._y64 = x.to(torch.float64), y.to(torch.float64)
            self._sqx, self._sqy = self._x64.square().sum(-1), self._y64.square().sum(-1)
        # One large pair on CPU: skip the leaf pairs whose terms cannot reach the sums' rounding
        # (see .blocksparse). ``prune`` None decides by size; tests force it either way.
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
            self._sparse = _sparse_pair(x[0], y[0], cost_fn, self._fused, dtype)
        self.engine = "online" if self._sparse is None else "block-sparse"

    def select(self, idx: torch.Tensor) -> OnlineGeometry:
        x, y = self._points
        return OnlineGeometry(
            x[idx], y[idx], self.cost_fn, self.mask_x[idx], self.mask_y[idx], self.dtype,
            prune=False,
        )  # fmt: skip

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
            out[:, r0:r1] = logsumexp_(z, dim=-1, exps=z_lo[:, : r1 - r0])  # exps in dtype
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

        return blocked_lse(block, n, h, eps, self._step_x, self.dtype)

    def _plain_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self._fused:
            return self._fused_lse(self._y64, self._sqy, self._x64, self._sqx, h, eps, self._step_y)
        m = self.y.shape[1]

        def block(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            # A block of Cᵀ: C(y, x) for a symmetric cost, else a block of C transposed
            # (a cost function or matrix of the user's), copied to contiguous rows.
            if self.cost_fn.symmetric:
                return self.cost_fn(self.y[:, r0:r1], self.x).mul_(scale)
            c = self.cost_fn(self.x, self.y[:, r0:r1]).transpose(1, 2)
            return c.mul(scale).contiguous()

        return blocked_lse(block, m, h, eps, self._step_y, self.dtype)

    def max_cost(self) -> torch.Tensor:
        if self._sparse is not None:  # one pair: the leaf pairs that can hold the largest
            top = largest_cost(self._sparse[0])
            return torch.full((1,), top, dtype=self.dtype, device=self.x.device)
        B, n, _ = self.x.shape
        best = torch.zeros(B, dtype=self.dtype, device=self.x.device)
        for r0 in range(0, n, self._step_x):
            r1 = min(n, r0 + self._step_x)
            c = self.cost_fn(self.x[:, r0:r1], self.y)
            valid = self.mask_x[:, r0:r1, None] & self.mask_y[:, None, :]
            best = torch.maximum(best, torch.where(valid, c, 0).amax(dim=(1, 2)))
        return best


def _sparse_pair(
    x: torch.Tensor, y: torch.Tensor, cost_fn: CostFn, fused: bool, dtype: torch.dtype
) -> tuple[BlockSparseLse, BlockSparseLse]:
    """Block-sparse reducers over the columns (rows x, columns y) and over the rows; the
    points as given (the fused product takes them in float64), the sums in ``dtype``."""
    n, m = x.shape[0], y.shape[0]
    row_x, col_y = leaf_sizes(n, m)
    row_y, col_x = leaf_sizes(m, n)
    xr, yc = kd_leaves(x, row_x), kd_leaves(y, col_y)
    yr, xc = kd_leaves(y, row_y), kd_leaves(x, col_x)
    cmin_cols, cmin_rows = box_cost_lower(cost_fn, xr, yc), box_cost_lower(cost_fn, yr, xc)
    if cmin_cols is None or cmin_rows is None:  # the caller checked cost_fn.has_box_lower
        raise ValueError(f"{cost_fn.describe()} has no box bound to prune by")
    over_cols = BlockSparseLse(x, y, xr, yc, cmin_cols, cost_fn, fused, dtype)
    over_rows = BlockSparseLse(y, x, yr, xc, cmin_rows, cost_fn, fused, dtype)
    return over_cols, over_rows

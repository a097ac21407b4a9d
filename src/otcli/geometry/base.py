"""What every geometry shares: the protocol the Sinkhorn loop talks to, and block sizes.

The loop needs two reductions per iteration and nothing else about C (:class:`Geometry`).
Every geometry computes them over blocks of C; how many entries a block holds depends on the
device (:func:`block_elems_for`): on a CPU a block should stay in cache while it is scaled,
shifted, exponentiated and summed, while on a GPU each block costs a handful of kernel
launches whatever its size, so the fewer blocks the better.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

# exp(−80) ≈ 1.8e−35: terms below it cannot change a sum that contains 1, and clamping
# keeps torch.exp off its slow underflow path (10× slower on CPU, see PERF-NOTES).
_EXP_FLOOR = -80.0

# Entries per block on CPU: 2^18 float32 = 1 MiB, about one core's L2 cache.
DEFAULT_BLOCK_ELEMS = 1 << 18

# Entries per block of the online geometry on CPU, whose blocks are computed rather than
# read: at 2^20 (8 MiB of float64 exponents) a half-step ran 1.3× faster than at 2^18 on the
# 2-core Zen 5 here, for both the fused squared-Euclidean path and the coordinate-loop costs.
ONLINE_BLOCK_ELEMS = 1 << 20

# Entries per block on CUDA. A block costs ~10 kernel launches whatever its size, so at 2^18
# a 10,000² problem took ~385 blocks per half-step (141 ms an iteration on an H200, against
# POT's 0.7 ms). 2^27 entries (a 512 MiB float32 scratch block, allocated once and reused)
# take a whole problem of up to ~11,500², or a whole batch of smaller ones, in one block.
CUDA_BLOCK_ELEMS = 1 << 27

# Entries per block of the online geometry on CUDA: each block is a fresh cost evaluation
# with temporaries of its own size (two for the coordinate loop), so half the dense cap.
CUDA_ONLINE_BLOCK_ELEMS = 1 << 26


class Geometry(Protocol):
    """What the Sinkhorn loop needs from the cost: log-sum-exps along rows and columns.

    ``name`` is what results report (``dense`` or ``online``: whether C is held); ``engine``
    says which code computes the reductions: ``dense`` (log domain over C in memory),
    ``kernel`` (products with a stabilised kernel), ``online`` (C rebuilt block by block) or
    ``block-sparse`` (the online geometry's pruned reducers, one large pair on CPU).
    """

    name: str
    engine: str

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B, m) → (B, n): log Σ_j exp(h_j − C_ij / ε)."""
        ...

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, m): log Σ_i exp(h_i − C_ij / ε)."""
        ...

    def select(self, idx: torch.Tensor) -> Geometry:
        """The same geometry for problems ``idx`` of the batch only (a new object; the
        loop drops finished problems this way)."""
        ...

    def max_cost(self) -> torch.Tensor:
        """(B,): the largest cost between real (unpadded) points, where ε-scaling may start."""
        ...


BlockFn = Callable[[int, int, torch.Tensor], torch.Tensor]
"""(r0, r1, s) → s · M[:, r0:r1] for a (B, R, K) matrix M, as a writable (B, r1 − r0, K) block."""


def block_elems_for(device: torch.device, online: bool = False) -> int:
    """Entries per block of C on ``device``: cache-sized on CPU (and MPS), large on CUDA.

    ``online``: for the online geometry, whose blocks are computed (see the constants).
    """
    if device.type == "cuda":
        return CUDA_ONLINE_BLOCK_ELEMS if online else CUDA_BLOCK_ELEMS
    return ONLINE_BLOCK_ELEMS if online else DEFAULT_BLOCK_ELEMS


def rows_per_block(batch: int, cols: int, block_elems: int) -> int:
    """Rows of a (batch, rows, cols) matrix that make a block of about ``block_elems``."""
    return max(1, block_elems // max(1, batch * cols))


def masked_max(cost: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor) -> torch.Tensor:
    """(B,): the largest entry of each (n, m) cost between real points, row block by block."""
    B, n, m = cost.shape
    step = rows_per_block(B, m, block_elems_for(cost.device))
    best = cost.new_zeros(B)
    for r0 in range(0, n, step):
        valid = mask_x[:, r0 : r0 + step, None] & mask_y[:, None, :]
        part = torch.where(valid, cost[:, r0 : r0 + step], 0).amax(dim=(1, 2))
        best = torch.maximum(best, part)
    return best

"""The dense log-domain geometry: C and Cᵀ in memory, both reductions along rows.

This is the engine wherever exps are cheap next to memory traffic (GPUs), where it takes
each half-step in one block if it can; on a CPU the kernel geometry
(:mod:`otcli.geometry.kernel`) replaces most of its exps by products.
"""

from __future__ import annotations

import torch

from otcli.geometry.base import BlockFn, block_elems_for, masked_max, rows_per_block
from otcli.geometry.lse import blocked_lse


class DenseGeometry:
    """C and Cᵀ in memory, each (B, n, m) / (B, m, n): both reductions run along rows.

    Keeping the transpose doubles memory but lets both half-steps read memory in order,
    which on a CPU is worth more than the space. Each block is scaled into one scratch
    buffer, allocated once and reused by every half-step. ``block_elems`` (entries per
    block) defaults to the device's (:func:`block_elems_for`): cache-sized blocks on CPU,
    on CUDA the whole batch at once up to 2^26 entries, so a half-step is a few kernels.

    A float32 C is read into float64 exponents h_k − C_ik/ε wherever the device has float64
    (not MPS): both terms grow like 1/ε and cancel, and in float32 their rounding (6e−8 of
    C/ε) became the plan's error at small ε. Only the shifted exps, in [−80, 0], go back to
    float32, so the plan is resolved as finely as the CPU kernel geometry resolves it.
    """

    name = "dense"
    engine = "dense"

    def __init__(
        self,
        cost: torch.Tensor,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        block_elems: int | None = None,
    ) -> None:
        wide = cost.dtype == torch.float32 and cost.device.type != "mps"
        self._z_dtype = torch.float64 if wide else cost.dtype
        if block_elems is None:  # a float64 block holds half the entries in the same bytes
            block_elems = block_elems_for(cost.device) // (2 if wide else 1)
        self.cost = cost  # (B, n, m)
        self.cost_t = cost.transpose(1, 2).contiguous()  # (B, m, n)
        self.mask_x, self.mask_y = mask_x, mask_y
        B, n, m = cost.shape
        self._step_x = rows_per_block(B, m, block_elems)
        self._step_y = rows_per_block(B, n, block_elems)
        rows_x, rows_y = min(n, self._step_x), min(m, self._step_y)
        size = B * max(rows_x * m, rows_y * n)
        self._buf = torch.empty(size, dtype=self._z_dtype, device=cost.device)
        self._exps = cost.new_empty((size,)) if wide else None
        self._block_elems = block_elems

    def select(self, idx: torch.Tensor) -> DenseGeometry:
        return DenseGeometry(self.cost[idx], self.mask_x[idx], self.mask_y[idx])

    def _block(self, mat: torch.Tensor) -> BlockFn:
        def take(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
            B, _, K = mat.shape
            buf = self._buf[: B * (r1 - r0) * K].view(B, r1 - r0, K)
            return torch.mul(mat[:, r0:r1], scale, out=buf)  # (B, r, K): −M_rk/ε, z dtype

        return take

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = self.cost.shape[1]
        return blocked_lse(
            self._block(self.cost), n, h, eps, self._step_x, self._z_dtype, self._exps
        )

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        m = self.cost.shape[2]
        return blocked_lse(
            self._block(self.cost_t), m, h, eps, self._step_y, self._z_dtype, self._exps
        )

    def max_cost(self) -> torch.Tensor:
        return masked_max(self.cost, self.mask_x, self.mask_y)

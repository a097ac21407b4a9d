"""A pair's cost scale: its mean cost, which a relative ε multiplies and reports compare with."""

from __future__ import annotations

import torch

from otcli.cloud import Cloud
from otcli.config import SolveConfig
from otcli.costs import CostFn, SqEuclidean, working_cost

#: Cost entries per problem in each block :func:`mean_costs` builds.
MEAN_BLOCK_ENTRIES = 1 << 20


def mean_costs(
    x: torch.Tensor,
    y: torch.Tensor,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    cost_fn: CostFn,
    dtype: torch.dtype,
    dense: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) float64: each problem's mean cost over its real (unpadded) pairs, the scale that
    ``eps_rel`` multiplies and that a report compares ε with.

    Exact in every case (a row sample was 2–4% off on real data): from ``dense`` (B, n, m)
    where the geometry holds C; in closed form for the squared Euclidean cost,
    mean |x|² + mean |y|² − 2 x̄·ȳ; otherwise over all of C, built block by block in O(n + m)
    memory (one pass of the cost, small beside a solve).
    """
    m = y.shape[1]
    count = mask_x.sum(1).to(torch.float64) * mask_y.sum(1).to(torch.float64)  # (B,)
    if dense is not None:
        # mask_xᵀ C mask_y as two products: no n×m temporary (report only, float32 sums).
        mx, my = mask_x.to(dense.dtype)[:, None, :], mask_y.to(dense.dtype)[:, :, None]
        total = torch.bmm(torch.bmm(mx, dense), my)[:, 0, 0].to(torch.float64)
        return total / count.clamp(min=1)
    if isinstance(cost_fn, SqEuclidean):
        wx, wy = mask_x.to(torch.float64), mask_y.to(torch.float64)  # (B, n), (B, m)
        nx, ny = wx.sum(1).clamp(min=1), wy.sum(1).clamp(min=1)
        x64, y64 = x.to(torch.float64), y.to(torch.float64)
        mean_x = (x64 * wx[..., None]).sum(1) / nx[:, None]  # (B, d)
        mean_y = (y64 * wy[..., None]).sum(1) / ny[:, None]
        # Σᵢⱼ |xᵢ − yⱼ|² / nm = mean |x − x̄|² + mean |y − ȳ|² + |x̄ − ȳ|²: no cancellation
        spread_x = ((x64 - mean_x[:, None]).square().sum(-1) * wx).sum(1) / nx
        spread_y = ((y64 - mean_y[:, None]).square().sum(-1) * wy).sum(1) / ny
        return spread_x + spread_y + (mean_x - mean_y).square().sum(-1)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    step = max(1, MEAN_BLOCK_ENTRIES // max(1, m))
    for r0 in range(0, x.shape[1], step):
        rows = slice(r0, r0 + step)
        c = working_cost(cost_fn, x[:, rows], y, dtype).to(torch.float64)  # (B, r, m)
        keep = mask_x[:, rows, None] & mask_y[:, None, :]
        total += torch.where(keep, c, 0.0).sum(dim=(1, 2))
    return total / count.clamp(min=1)


def pair_eps(x: Cloud, y: Cloud, config: SolveConfig) -> tuple[float, float]:
    """(ε, mean cost) for one pair before solving it: the config's absolute ε, or ``eps_rel``
    times the mean cost, computed exactly as a solve computes it."""
    dev, hi = config.torch_device, torch.float32 if config.device == "mps" else torch.float64
    centre = x.points.mean(axis=0) if config.cost.translation_invariant else 0 * x.points[0]
    xt = torch.as_tensor(x.points - centre, dtype=hi, device=dev)[None]
    yt = torch.as_tensor(y.points - centre, dtype=hi, device=dev)[None]
    mx = torch.ones(xt.shape[:2], dtype=torch.bool, device=dev)
    my = torch.ones(yt.shape[:2], dtype=torch.bool, device=dev)
    scale = float(mean_costs(xt, yt, mx, my, config.cost, config.torch_dtype)[0])
    return config.pair_eps(scale), scale

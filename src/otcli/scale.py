"""A pair's cost scale: its mean cost, which a relative ε multiplies and reports compare with."""

from __future__ import annotations

import torch

from otcli.cloud import Cloud
from otcli.config import SolveConfig
from otcli.costs import CostFn, working_cost

#: Cost entries per problem that :func:`mean_costs` reads when it samples rows.
MEAN_SAMPLE_ENTRIES = 1 << 20


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

    Exact from ``dense`` (B, n, m) or when n·m ≤ 2^20; beyond, over every k-th row of C
    (a fixed stride: the same clouds always give the same ε).
    """
    n, m = x.shape[1], y.shape[1]
    count = mask_x.sum(1).to(torch.float64) * mask_y.sum(1).to(torch.float64)  # (B,)
    if dense is not None:
        # mask_xᵀ C mask_y as two products: no n×m temporary (report only, float32 sums).
        mx, my = mask_x.to(dense.dtype)[:, None, :], mask_y.to(dense.dtype)[:, :, None]
        total = torch.bmm(torch.bmm(mx, dense), my)[:, 0, 0].to(torch.float64)
        return total / count.clamp(min=1)
    stride = max(1, -(-n * m // MEAN_SAMPLE_ENTRIES))
    rows = slice(0, n, stride)
    c = working_cost(cost_fn, x[:, rows], y, dtype).to(torch.float64)  # (B, r, m)
    keep = (mask_x[:, rows, None] & mask_y[:, None, :]).to(torch.float64)
    return (c * keep).sum(dim=(1, 2)) / keep.sum(dim=(1, 2)).clamp(min=1)


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
    eps = config.eps if config.eps_rel is None else config.eps_rel * scale
    return config.check_eps(eps), scale  # type: ignore[arg-type]

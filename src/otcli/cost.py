"""Ground costs C(x, y) by name, on batched point tensors.

Every cost maps ``x`` of shape ``(B, n, d)`` and ``y`` of shape ``(B, m, d)`` to ``(B, n, m)``.
The same function serves the dense geometry (whole clouds) and a block-wise one (slices of
the clouds), so there is one definition of each cost.

Accuracy over speed where they conflict: for low dimensions the squared distance is summed
coordinate by coordinate (no ``|x|² + |y|² − 2x·y`` cancellation); for high dimensions the
matrix-product form is used on centred clouds, in the working dtype, with TF32 off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from otcli.errors import InputError, OptionError

COST_NAMES = ("sqeuclidean", "euclidean", "cityblock", "cosine", "pnorm")

# Above this dimension the coordinate loop costs more than a matrix product.
_LOOP_MAX_DIM = 16


@dataclass(frozen=True)
class CostFn:
    """A named ground cost; ``p`` matters only for ``pnorm`` (C = Σ_k |x_k − y_k|^p)."""

    name: str
    p: float = 2.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _IMPLS[self.name](x, y, self.p)

    @property
    def translation_invariant(self) -> bool:
        return self.name != "cosine"

    def describe(self) -> str:
        return f"pnorm(p={self.p:g})" if self.name == "pnorm" else self.name


def get_cost(name: str, p: float | None = None) -> CostFn:
    """Look a cost up by name, checking ``p`` (only ``pnorm`` takes one; default 2)."""
    if name not in COST_NAMES:
        raise OptionError("--cost", f"unknown cost {name!r}; choose one of {', '.join(COST_NAMES)}")
    if p is None:
        return CostFn(name)
    if name != "pnorm":
        raise OptionError("--p", f"--p applies to --cost pnorm only (got --cost {name})")
    if not (math.isfinite(p) and p > 0):
        raise OptionError("--p", f"p must be a positive finite number, got {p}")
    return CostFn(name, float(p))


def _sum_over_coords(
    x: torch.Tensor, y: torch.Tensor, term: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Σ_k term(x_ik − y_jk) without a (B, n, m, d) temporary.

    ``term`` works in place on its argument; the terms are added in coordinate order, so the
    result does not depend on how the clouds are sliced into blocks.
    """
    out = term(torch.sub(x[:, :, None, 0], y[:, None, :, 0]))  # (B, n, m)
    if x.shape[-1] > 1:
        tmp = torch.empty_like(out)
        for k in range(1, x.shape[-1]):
            out += term(torch.sub(x[:, :, None, k], y[:, None, :, k], out=tmp))
    return out


def _no_tf32_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.is_cuda:
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return x @ y.transpose(-1, -2)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    return x @ y.transpose(-1, -2)


def _sqeuclidean(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    if x.shape[-1] <= _LOOP_MAX_DIM:
        return _sum_over_coords(x, y, torch.Tensor.square_)
    # Centre on a common point first: the expansion loses digits when |x| ≫ |x − y|.
    centre = 0.5 * (x.mean(dim=1, keepdim=True) + y.mean(dim=1, keepdim=True))
    xc, yc = x - centre, y - centre
    sq = (xc * xc).sum(-1)[:, :, None] + (yc * yc).sum(-1)[:, None, :]  # (B, n, m)
    return (sq - 2 * _no_tf32_matmul(xc, yc)).clamp_(min=0)


def _euclidean(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    return _sqeuclidean(x, y, p).sqrt_()


def _cityblock(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    if x.shape[-1] <= _LOOP_MAX_DIM:
        return _sum_over_coords(x, y, torch.Tensor.abs_)
    return torch.cdist(x, y, p=1.0)


def _pnorm(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    if p == 2.0:
        return _sqeuclidean(x, y, p)
    if p == 1.0:
        return _cityblock(x, y, p)
    if x.shape[-1] <= _LOOP_MAX_DIM:
        return _sum_over_coords(x, y, lambda t: t.abs_().pow_(p))
    return torch.cdist(x, y, p=p).pow_(p)


def _cosine(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    xn = x / x.norm(dim=-1, keepdim=True)
    yn = y / y.norm(dim=-1, keepdim=True)
    return (1 - _no_tf32_matmul(xn, yn)).clamp_(0, 2)


_IMPLS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "sqeuclidean": _sqeuclidean,
    "euclidean": _euclidean,
    "cityblock": _cityblock,
    "cosine": _cosine,
    "pnorm": _pnorm,
}


def working_cost(
    cost_fn: CostFn, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """C in the solver's dtype, from the (centred) points rounded to that dtype.

    Every part of a solve (the loop, the final statistics, ``plan()``) derives C this way,
    so the reported cost and marginal error describe exactly the plan a user gets back; in
    float32 at small ε, deriving C another way would shift P by ulp(C)/ε. Low-dimensional
    costs are elementwise, hence bit-for-bit the same on every device and block shape.
    """
    return cost_fn(x.to(dtype), y.to(dtype))


def check_points_for_cost(cost: CostFn, points: object, source: str) -> None:
    """Refuse inputs a cost cannot handle (a zero vector has no direction for ``cosine``)."""
    if cost.name == "cosine":
        norms = np.linalg.norm(np.asarray(points), axis=-1)
        if (norms == 0).any():
            i = int(np.flatnonzero(norms == 0)[0])
            raise InputError(
                source, f"point {i} (0-based) is the zero vector, which has no cosine distance"
            )

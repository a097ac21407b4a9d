"""The shared log-sum-exp (otcli.geometry.lse) equals torch.logsumexp: any dim, −∞ entries
and rows, exps kept in a lower precision, and block by block."""

from __future__ import annotations

import math

import pytest
import torch

from otcli.geometry.base import _EXP_FLOOR
from otcli.geometry.lse import blocked_lse, exp_shifted, logsumexp_


def _with_holes(shape: tuple[int, ...], seed: int, dtype=torch.float64) -> torch.Tensor:
    """Values over a wide range, a fifth of them −∞, and one whole slice along the last dim
    −∞ except one entry (the max is then a lone value)."""
    g = torch.Generator().manual_seed(seed)
    z = 30 * torch.randn(shape, generator=g, dtype=torch.float64)
    z[torch.rand(shape, generator=g) < 0.2] = -math.inf
    z[0, 1] = -math.inf
    z[0, 1, 0] = 3.0
    return z.to(dtype)


@pytest.mark.parametrize("dim", [-1, 1, 0])
def test_logsumexp_equals_torch(dim):
    z = _with_holes((3, 40, 50), seed=1)
    want = torch.logsumexp(z, dim=dim)
    # Slices with no mass at all (some along dim 0, of 3): the floor's −80 + log K, not −∞.
    want = torch.where(want > -math.inf, want, _EXP_FLOOR + math.log(z.shape[dim]))
    got = logsumexp_(z.clone(), dim=dim)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_logsumexp_with_exps_in_float32_and_result_in_float64():
    z = _with_holes((2, 30, 70), seed=2)
    exps = torch.empty((2, 40, 70), dtype=torch.float32)[:, :30]  # a strided scratch view
    got = logsumexp_(z.clone(), dim=-1, exps=exps, dtype=torch.float64)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.logsumexp(z, dim=-1), rtol=1e-6, atol=1e-6)


def test_a_row_without_mass_gives_no_nan():
    """All −∞: shifted by 0, not by −∞; the floor then gives −80 + log K, as it always has
    (such rows are padding, masked by the callers)."""
    z = torch.full((1, 2, 25), -math.inf, dtype=torch.float64)
    z[0, 0, 3] = -5.0
    got = logsumexp_(z.clone(), dim=-1)
    assert got[0, 0] == -5.0
    assert got[0, 1] == pytest.approx(_EXP_FLOOR + math.log(25))
    e, shift = exp_shifted(z.clone(), dim=-1, top=(top := torch.empty(1, 2, 1, dtype=z.dtype)))
    assert shift.flatten().tolist() == [-5.0, 0.0]  # the shift taken: finite
    assert top.flatten().tolist() == [-5.0, -math.inf]  # the true max, for merging callers
    assert not e.isnan().any()


@pytest.mark.parametrize("step", [1, 7, 40, 1000])
def test_blocked_lse_equals_torch(step):
    """log Σ_k exp(h_k − M_rk/ε) over a matrix handed out in row blocks, −∞ in h included."""
    g = torch.Generator().manual_seed(3)
    M = torch.rand(2, 40, 30, generator=g, dtype=torch.float64)
    h = torch.randn(2, 30, generator=g, dtype=torch.float64)
    h[0, :5] = -math.inf
    h[1] = -math.inf
    h[1, 7] = 0.5
    eps = torch.tensor([0.01, 0.2], dtype=torch.float64)

    def block(r0: int, r1: int, scale: torch.Tensor) -> torch.Tensor:
        return M[:, r0:r1] * scale

    got = blocked_lse(block, 40, h, eps, step, torch.float64)
    want = torch.logsumexp(h[:, None, :] - M / eps[:, None, None], dim=2)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)

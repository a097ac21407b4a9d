"""Which engine ran: every geometry says so in ``engine``, while ``name`` keeps the
user-facing ``dense`` / ``online``; and how large a block each device gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import otcli
from otcli.api import make_geometry
from otcli.config import make_config
from otcli.costs import get_cost
from otcli.geometry import DenseGeometry, KernelGeometry, OnlineGeometry
from otcli.geometry.base import (
    CUDA_BLOCK_ELEMS,
    CUDA_ONLINE_BLOCK_ELEMS,
    DEFAULT_BLOCK_ELEMS,
    ONLINE_BLOCK_ELEMS,
    block_elems_for,
    rows_per_block,
)


def _pair(batch: int, n: int, m: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(batch, m, 2, generator=g, dtype=torch.float64)
    ones_x = torch.ones(batch, n, dtype=torch.bool)
    ones_y = torch.ones(batch, m, dtype=torch.bool)
    return x, y, ones_x, ones_y


def test_dense_and_kernel_engines():
    x, y, mx, my = _pair(2, 30, 20)
    C = get_cost("sqeuclidean")(x, y)
    dense, kernel = DenseGeometry(C, mx, my), KernelGeometry(C, mx, my)
    assert (dense.name, dense.engine) == ("dense", "dense")
    assert (kernel.name, kernel.engine) == ("dense", "kernel")


@pytest.mark.parametrize(
    ("batch", "cost", "prune", "engine"),
    [
        (1, "sqeuclidean", True, "block-sparse"),  # one pair, a cost with a box bound
        (1, "cityblock", True, "block-sparse"),
        (1, "sqeuclidean", False, "online"),
        (1, "sqeuclidean", None, "online"),  # None: by size, and this pair is small
        (1, "cosine", True, "online"),  # no box bound: nothing to prune by
        (2, "sqeuclidean", True, "online"),  # batches keep the plain path
    ],
)
def test_online_engines(batch, cost, prune, engine):
    x, y, mx, my = _pair(batch, 300, 200)
    geom = OnlineGeometry(x, y, get_cost(cost), mx, my, torch.float64, prune=prune)
    assert (geom.name, geom.engine) == ("online", engine)
    assert (geom._sparse is not None) == (engine == "block-sparse")


@pytest.mark.parametrize(
    ("geometry", "engine"), [("auto", "kernel"), ("dense", "kernel"), ("online", "online")]
)
def test_what_a_small_cpu_solve_runs(geometry, engine):
    """The facade on CPU: a small pair held dense runs the kernel engine."""
    x, y, mx, my = _pair(1, 40, 30)
    geom = make_geometry(x, y, mx, my, make_config(geometry=geometry, device="cpu"))
    assert geom.engine == engine
    assert geom.name == ("online" if geometry == "online" else "dense")


def test_block_size_by_device():
    """CPU keeps its tuned cache-sized blocks; CUDA gets blocks of whole problems (a pure
    function of the device: no CUDA needed to check it)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert block_elems_for(cpu) == DEFAULT_BLOCK_ELEMS == 1 << 18
    assert block_elems_for(cpu, online=True) == ONLINE_BLOCK_ELEMS == 1 << 20
    assert block_elems_for(torch.device("mps")) == 1 << 18
    assert block_elems_for(cuda) == CUDA_BLOCK_ELEMS == 1 << 27
    assert block_elems_for(torch.device("cuda", 1), online=True) == CUDA_ONLINE_BLOCK_ELEMS
    assert CUDA_ONLINE_BLOCK_ELEMS == 1 << 26
    # 10,000² at float32 on an H200 took ~385 row blocks per half-step; now one.
    assert rows_per_block(1, 10_000, block_elems_for(cuda)) >= 10_000
    assert rows_per_block(1, 10_000, block_elems_for(cpu)) == 26


def test_cpu_geometries_keep_their_block_sizes():
    x, y, mx, my = _pair(2, 300, 200)
    C = get_cost("sqeuclidean")(x, y)
    dense = DenseGeometry(C, mx, my)
    assert (dense._step_x, dense._step_y) == (rows_per_block(2, 200, 1 << 18), 436)
    online = OnlineGeometry(x, y, get_cost("cityblock"), mx, my, torch.float64)
    assert (online._step_x, online._step_y) == ((1 << 20) // 400, (1 << 20) // 600)
    # The scratch block: the rows a block really takes, never more than the matrix.
    assert dense._buf.numel() == 2 * 300 * 200


def test_cuda_sized_blocks_give_the_same_sums(monkeypatch):
    """What CUDA runs (every problem of the batch in one block), run here on CPU tensors by
    handing the geometries the CUDA block size: one block, the same log-sum-exps."""
    import otcli.geometry.dense as dense_module
    import otcli.geometry.online as online_module

    monkeypatch.setattr(
        dense_module, "block_elems_for", lambda device, online=False: CUDA_BLOCK_ELEMS
    )
    monkeypatch.setattr(
        online_module, "block_elems_for", lambda device, online=False: CUDA_ONLINE_BLOCK_ELEMS
    )
    x, y, mx, my = _pair(3, 70, 50)
    cost_fn = get_cost("cityblock")
    C = cost_fn(x, y)
    eps = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64)
    hx, hy = torch.randn(3, 70, dtype=torch.float64), torch.randn(3, 50, dtype=torch.float64)
    hy[2, :10] = -torch.inf
    want_cols = torch.logsumexp(hy[:, None, :] - C / eps[:, None, None], dim=2)
    want_rows = torch.logsumexp(hx[:, :, None] - C / eps[:, None, None], dim=1)
    dense = DenseGeometry(C, mx, my)
    online = OnlineGeometry(x, y, cost_fn, mx, my, torch.float64)
    assert min(dense._step_x, online._step_x) >= 70
    assert min(dense._step_y, online._step_y) >= 50
    assert dense._buf.numel() == 3 * 70 * 50  # the whole batch, and no more
    for geom in (dense, online):
        torch.testing.assert_close(geom.lse_over_cols(hy, eps), want_cols, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(geom.lse_over_rows(hx, eps), want_rows, rtol=1e-12, atol=1e-12)


@pytest.fixture
def gpu_engine(monkeypatch):
    """The log-domain dense engine that CUDA runs, here on the CPU."""
    import otcli.api

    monkeypatch.setattr(otcli.api, "KERNEL_ON_CPU", False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_engine_resolves_the_plan_like_the_cpu_engine(gpu_engine, dtype):
    """float32 C with float64 exponents: at small ε the dense engine's figures describe its
    plan, meet the tolerance and match POT's log-domain solver, as the kernel engine's do."""
    import ot

    from conftest import assert_valid_result

    rng = np.random.default_rng(1)
    x, y = rng.random((120, 2)), rng.random((100, 2))
    r = otcli.solve(x, y, eps=1e-3, dtype=dtype, device="cpu")
    assert r.engine == "dense"
    assert_valid_result(r)
    M = ot.dist(x, y)
    P = ot.sinkhorn(np.full(120, 1 / 120), np.full(100, 1 / 100), M, 1e-3,
                    method="sinkhorn_log", stopThr=1e-11, numItermax=200000)  # fmt: skip
    assert r.cost == pytest.approx(float((P * M).sum()), rel=1e-4)


def test_gpu_engine_seed_shifts(gpu_engine, line):
    """The seed's shifted lines (the case that came out 16.0000 instead of 16.0001 on CUDA)."""
    x, y = line
    ys = [y + np.array([0.0, s - 1.0]) for s in (1.0, 2.0, 3.0, 4.0)]
    rs = otcli.solve([x] * 4, ys, eps=0.1, device="cpu")
    assert {r.engine for r in rs} == {"dense"}
    assert [round(r.cost, 4) for r in rs] == [1.0001, 4.0001, 9.0001, 16.0001]

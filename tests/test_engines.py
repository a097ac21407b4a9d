"""Which engine ran: every geometry says so in ``engine``, while ``name`` keeps the
user-facing ``dense`` / ``online``; and how large a block each device gets."""

from __future__ import annotations

import pytest
import torch

from otcli.api import make_geometry
from otcli.costs import get_cost
from otcli.geometry import DenseGeometry, KernelGeometry, OnlineGeometry


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
    geom = make_geometry(x, y, mx, my, get_cost("sqeuclidean"), torch.float32, geometry, None)
    assert geom.engine == engine
    assert geom.name == ("online" if geometry == "online" else "dense")

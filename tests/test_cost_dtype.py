"""A float32 solve on the online geometry's fused path stands on C computed in float64, and
its plan, figures, saved potentials and map stand on that same C (``cost_dtype``).

The data is nobody's here: pixels of scikit-image's bundled photographs as RGB points,
many of them far from their partner relative to ε (colour transfer), where a float32 C
(ulp(C)/ε ≈ 2e-6 of a row's mass at ε = 1e-3) doubled the marginal error a solve reported
and left 20,000-pixel pairs unconverged.
"""

from __future__ import annotations

import numpy as np
import pytest

import otcli
from otcli.potentials import load_potentials, save_potentials
from otcli.transport import result_map

pytestmark = pytest.mark.usefixtures("single_thread")

EPS = 1e-3


@pytest.fixture(scope="module")
def pixels() -> tuple[np.ndarray, np.ndarray]:
    images = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)

    def sample(img: np.ndarray, n: int) -> np.ndarray:
        p = img.reshape(-1, 3).astype(np.float64) / 255.0
        return p[rng.choice(len(p), n, replace=False)]

    return sample(images.astronaut(), 1500), sample(images.coffee(), 1400)


def _exact_plan(r: otcli.SinkhornResult, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """a_i b_j exp((f_i + g_j − C_ij)/ε), C in float64 from the points as given."""
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return a[:, None] * b[None, :] * np.exp((r.f[:, None] + r.g[None, :] - C) / r.eps)


def test_online_float32_plan_stands_on_the_exact_cost(pixels):
    x, y = pixels
    estimates: list[float] = []
    r = otcli.solve(
        x, y, eps=EPS, geometry="online", progress=lambda it, e, err: estimates.append(err)
    )
    assert r.dtype == "float32" and r.cost_dtype == "float64"
    P, exact = r.plan(), _exact_plan(r, x, y)
    np.testing.assert_allclose(P, exact, rtol=1e-9, atol=1e-300)
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    err = np.abs(exact.sum(1) - a).sum() + np.abs(exact.sum(0) - b).sum()
    assert r.marginal_error == pytest.approx(err, rel=1e-6)
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    assert r.cost == pytest.approx(float((exact * C).sum()), rel=1e-9)
    # The figure the loop stopped on is the plan's: float32 exps, not a float32 C, set the gap.
    assert r.converged and r.marginal_error == pytest.approx(min(estimates), rel=0.05)


def test_dense_float32_keeps_its_float32_cost(pixels):
    """The kernel geometry solves on C rounded to float32: its plan stays on that C."""
    x, y = pixels
    r = otcli.solve(x, y, eps=EPS, geometry="dense")
    assert r.cost_dtype == ""
    P = r.plan()
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    err = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()
    assert r.converged and r.marginal_error == pytest.approx(err, rel=1e-6)


def test_saved_potentials_and_the_map_keep_the_cost_dtype(pixels, tmp_path):
    x, y = pixels
    r = otcli.solve(x, y, eps=EPS, geometry="online")
    path = tmp_path / "p.npz"
    save_potentials(r, path)
    back = load_potentials(path)
    assert back.cost_dtype == "float64"
    np.testing.assert_array_equal(back.plan(), r.plan())
    # The map of the cloud's own points is the plan's barycentric projection, row by row.
    P = _exact_plan(r, x, y)
    moved = result_map(back, x[:50])
    np.testing.assert_allclose(moved, (P[:50] @ y) / P[:50].sum(1, keepdims=True), rtol=1e-9)

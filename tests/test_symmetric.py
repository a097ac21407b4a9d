"""A cloud against itself (the Sinkhorn divergence's self terms): the averaged symmetric
iteration (otcli.symmetric) against POT's converged solvers.

Oracles: POT's plain ``ot.sinkhorn`` and ``ot.unbalanced.sinkhorn_unbalanced`` run to
stopThr 1e-14 (kernel form: in float64 at these ε, exp(−C/ε) does not underflow), the
marginals of the returned plan recomputed with numpy, and the iteration counts alternating
half-steps needed on the same problems (counted, not timed).
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
from sklearn import datasets

import otcli
from otcli.api import self_pairs
from otcli.cloud import as_cloud_list
from otcli.config import make_config

pytestmark = pytest.mark.usefixtures("single_thread")


def pot_self(x: np.ndarray, w: np.ndarray, eps: float) -> tuple[float, np.ndarray]:
    M = ot.dist(x, x)
    P, log = ot.sinkhorn(w, w, M, eps, stopThr=1e-14, numItermax=200_000, log=True)
    assert log["err"][-1] < 1e-13  # the oracle converged
    return float((P * M).sum()), P


def test_a_slow_self_problem_converges_in_tens_of_iterations() -> None:
    # 140 points at ε = 0.01 of the mean cost, float64: alternating half-steps took 10,000
    # iterations to 2.7e-6 (not converged at tol 1e-7), POT's sinkhorn_log 10,000 to 4.2e-7
    # and 200,000 to 2.3e-8 (too slow for an oracle here). The plan's form is the oracle: a
    # plan a_i a_j exp((f_i + g_j − C_ij)/ε) with the marginals a is the entropic optimum
    # (the scaling of a positive matrix to given marginals is unique).
    x = np.random.default_rng(3).random((140, 3))
    w = np.full(140, 1 / 140)
    r = otcli.solve(x, x, eps_rel=0.01, dtype="float64")
    assert r.converged and r.marginal_error <= r.tol
    assert r.iterations <= 100
    M = ot.dist(x, x)
    gibbs = w[:, None] * w[None, :] * np.exp((r.f[:, None] + r.g[None, :] - M) / r.eps)
    plan = r.plan()
    np.testing.assert_allclose(plan, gibbs, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(plan, plan.T, atol=1e-15)  # f = g: a symmetric plan
    err = np.abs(plan.sum(1) - w).sum() + np.abs(plan.sum(0) - w).sum()
    assert err <= r.tol
    assert err == pytest.approx(r.marginal_error, rel=1e-3, abs=1e-13)
    assert r.cost == pytest.approx(float((plan * M).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_real_data_self_terms_equal_pot(dtype: str) -> None:
    iris = datasets.load_iris().data[:60]
    w = np.random.default_rng(0).random(60) + 0.2
    w = w / w.sum()
    r = otcli.solve(iris, iris, w, w, eps=1.0, dtype=dtype)  # POT: 1,700 iterations
    assert r.converged and r.marginal_error <= r.tol
    assert r.iterations <= 100
    cost, _ = pot_self(iris, w, 1.0)
    assert r.cost == pytest.approx(cost, rel=1e-7 if dtype == "float64" else 1e-5)  # ~ tol


def test_unbalanced_self_term_equals_pot() -> None:
    rng = np.random.default_rng(1)
    x, w = rng.random((30, 2)), rng.random(30) + 0.2
    w = w / w.sum()
    eps, rho = 0.05, 0.3
    M = ot.dist(x, x)
    P, log = ot.unbalanced.sinkhorn_unbalanced(
        w, w, M, eps, rho, method="sinkhorn", reg_type="kl", numItermax=100_000,
        stopThr=1e-14, log=True,
    )  # fmt: skip
    assert log["err"][-1] < 1e-13
    r = otcli.solve(x, x, w, w, eps=eps, rho=rho, dtype="float64", tol=1e-10)
    assert r.converged
    np.testing.assert_allclose(r.plan(), P, atol=1e-10)
    assert r.mass == pytest.approx(float(P.sum()), rel=1e-9)


def test_divergence_self_terms_take_the_symmetric_iteration() -> None:
    rng = np.random.default_rng(2)
    xs = [rng.random((int(n), 3)) for n in rng.integers(60, 140, 6)]
    ys = [rng.random((int(n), 3)) for n in rng.integers(60, 140, 6)]
    out = otcli.divergence(xs, ys, eps_rel=0.05, dtype="float64")  # POT: ~600 iterations
    for d, x in zip(out, xs, strict=True):
        assert d.xx.converged and d.yy.converged and d.xy.converged
        assert max(d.xx.iterations, d.yy.iterations) <= 60
        cost, _ = pot_self(x, np.full(len(x), 1 / len(x)), d.xx.eps)
        assert d.xx.cost == pytest.approx(cost, rel=1e-8)
        assert d.divergence >= 0


def test_only_self_pairs_under_a_symmetric_cost_are_symmetric() -> None:
    x = np.random.default_rng(4).random((20, 2))
    (cx,), _ = as_cloud_list(x, None, "x")
    (cy,), _ = as_cloud_list(x.copy(), None, "y")
    (cw,), _ = as_cloud_list(x, np.arange(1.0, 21.0), "w")
    (cz,), _ = as_cloud_list(x + 1e-9, None, "z")
    config = make_config()
    assert self_pairs([cx], [cx], config) and self_pairs([cx], [cy], config)
    assert not self_pairs([cx], [cw], config)  # other weights
    assert not self_pairs([cx], [cz], config)  # other points
    assert not self_pairs([cx, cx], [cy, cz], config)  # every pair must be one
    callable_cost = make_config(cost=lambda a, b: (a[:, :, None] - b[:, None, :]).abs().sum(-1))
    assert not self_pairs([cx], [cx], callable_cost)  # not known to be symmetric
    assert not self_pairs([cx], [cx], make_config(rho_a=0.5))  # one side relaxed


def test_max_iter_while_annealing_gives_a_finite_plan_not_converged() -> None:
    x = np.random.default_rng(5).random((50, 2))
    r = otcli.solve(x, x, eps=1e-3, max_iter=2, dtype="float64")
    assert not r.converged
    assert np.isfinite(r.cost) and np.isfinite(r.marginal_error)

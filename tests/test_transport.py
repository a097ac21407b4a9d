"""The entropic transport map (``SinkhornResult.transport``, ``otcli.transport``) against POT.

Oracles: POT's converged log-domain plan (the map at A's points is (P y)_i / a_i), POT's own
potentials (log u, log v) turned into the map with numpy, POT's converged unbalanced plan,
and the Brenier map of an affine pair (y = 2x + t: the squared-Euclidean optimal map is
x ↦ 2x + t, which the entropic map approaches as ε → 0). Costs come from
``conftest.numpy_cost``, never from otcli.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy.special import softmax

import otcli
from conftest import numpy_cost
from otcli.errors import OtcliError
from otcli.potentials import load_potentials, save_potentials
from otcli.transport import entropic_map

EPS = 0.2
COSTS = [("sqeuclidean", None), ("euclidean", None), ("cityblock", None), ("pnorm", 1.5),
         ("cosine", None)]  # fmt: skip


def _pair(seed: int = 0, n: int = 40, m: int = 30):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) + 2.0  # off the origin: cosine sees distinct directions
    y = rng.normal(size=(m, 2)) * 0.6 + [3.5, 1.0]
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    return x, y, a / a.sum(), b / b.sum()


def _pot(x, y, a, b, cost, p, eps):
    """POT's converged log-domain solve: the plan and its log-scalings."""
    M = numpy_cost(x, y, cost, p)
    plan, log = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", stopThr=1e-12,
                            numItermax=200_000, log=True)  # fmt: skip
    assert log["err"][-1] < 1e-11  # the oracle converged
    return plan, log["log_u"], log["log_v"]


def _solve(x, y, a, b, cost, p, eps=EPS, **kw):
    return otcli.solve(x, y, a, b, eps=eps, cost=cost, p=p, dtype="float64", tol=1e-12, **kw)


@pytest.mark.parametrize(("cost", "p"), COSTS)
def test_map_at_source_points_is_pot_barycentric_projection(cost, p):
    x, y, a, b = _pair()
    plan, _, _ = _pot(x, y, a, b, cost, p, EPS)
    expected = plan @ y / a[:, None]  # (P y)_i / a_i
    moved = _solve(x, y, a, b, cost, p).transport(x)
    np.testing.assert_allclose(moved, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("cost", "p"), COSTS)
def test_map_of_new_points_and_inverse_from_pot_potentials(cost, p):
    x, y, a, b = _pair(1)
    _, log_u, log_v = _pot(x, y, a, b, cost, p, EPS)
    rng = np.random.default_rng(7)
    new_x = rng.normal(size=(25, 2)) * 1.5 + 2.0
    new_y = rng.normal(size=(20, 2)) + np.array([3.5, 1.0])
    # T(x) = Σ_j v_j e^{−C(x, y_j)/ε} y_j / Σ_j (same), from POT's scalings; inverse with u.
    forward = softmax(log_v[None, :] - numpy_cost(new_x, y, cost, p) / EPS, axis=1) @ y
    back = softmax(log_u[None, :] - numpy_cost(x, new_y, cost, p).T / EPS, axis=1) @ x
    res = _solve(x, y, a, b, cost, p)
    np.testing.assert_allclose(res.transport(new_x), forward, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.transport(new_y, inverse=True), back, rtol=1e-4, atol=1e-6)


def test_float32_solve_map_matches_its_own_plan_rows():
    """In float32 the map is the row-normalised plan() to float64 rounding: the cost is
    evaluated exactly as the solve did (centred, in the solve's dtype)."""
    x, y, a, b = _pair(2, 300, 200)
    res = otcli.solve(x * 1e3 + 5e4, y * 1e3 + 5e4, a, b, eps=2e3)
    plan = res.plan()
    expected = plan @ res.y.points / plan.sum(1)[:, None]
    np.testing.assert_allclose(res.transport(res.x.points), expected, rtol=1e-12)


def test_affine_pair_small_eps_sends_each_point_to_its_partner():
    """y = 2x + t, shuffled, for x near a unit grid: the optimal map is x ↦ 2x + t (Brenier),
    and any other assignment costs O(1) ≫ ε more, so each point goes to its partner and the
    inverse map brings it back."""
    rng = np.random.default_rng(3)
    grid = np.arange(6.0)
    x = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2) + rng.random((36, 2)) * 0.2
    partner = 2.0 * x + [1.0, -0.5]
    y = partner[rng.permutation(36)]
    res = otcli.solve(x, y, eps=0.05, dtype="float64", tol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.transport(x), partner, atol=1e-9)
    np.testing.assert_allclose(res.transport(partner, inverse=True), x, atol=1e-9)


def test_unbalanced_map_is_row_normalised_pot_plan():
    """Unbalanced: T(x_i) = (P y)_i / (P 1)_i with POT's converged unbalanced plan."""
    x, y, a, b = _pair(4, 30, 25)
    eps, rho = 0.5, 2.0
    plan, log = ot.unbalanced.sinkhorn_unbalanced(
        a, b, ot.dist(x, y), eps, rho, method="sinkhorn", reg_type="kl",
        numItermax=100_000, stopThr=1e-14, log=True,
    )  # fmt: skip
    assert log["err"][-1] < 1e-13
    res = otcli.solve(x, y, a, b, eps=eps, rho=rho, dtype="float64", tol=1e-12)
    assert res.mass < 0.99  # mass was destroyed: (P 1)_i ≠ a_i
    np.testing.assert_allclose(res.transport(x), plan @ y / plan.sum(1)[:, None], rtol=1e-4)
    np.testing.assert_allclose(
        res.transport(y, inverse=True), plan.T @ x / plan.sum(0)[:, None], rtol=1e-4
    )


def test_online_geometry_gives_the_dense_map():
    x, y, a, b = _pair(5, 200, 150)
    dense = otcli.solve(x, y, a, b, eps=0.1, geometry="dense", dtype="float64", tol=1e-10)
    online = otcli.solve(x, y, a, b, eps=0.1, geometry="online", dtype="float64", tol=1e-10)
    np.testing.assert_allclose(online.transport(x), dense.transport(x), rtol=1e-6)


def test_entropic_map_works_on_arrays_and_blocks():
    """The building block: arrays in, the same numbers whatever the block size."""
    x, y, a, b = _pair(6)
    _, _, log_v = _pot(x, y, a, b, "sqeuclidean", None, EPS)
    g = EPS * (log_v - np.log(b))  # POT's scaling as a potential: v_j = b_j e^{g_j/ε}
    expected = softmax(log_v[None, :] - numpy_cost(x, y, "sqeuclidean") / EPS, axis=1) @ y
    for block in (1, 7, 1 << 20):
        moved = entropic_map(x, y, b, g, EPS, block_entries=block * len(y))
        np.testing.assert_allclose(moved, expected, rtol=1e-6)
    seen = []
    entropic_map(x, y, b, g, EPS, block_entries=10 * len(y), progress=lambda d, t: seen.append(d))
    assert seen == [10, 20, 30, 40]


def test_tensors_in_tensors_out():
    x, y, a, b = _pair(8)
    res = _solve(x, y, a, b, "sqeuclidean", None)
    expected = res.transport(x)
    t = torch.tensor(x, dtype=torch.float32)
    moved = res.transport(t)
    assert isinstance(moved, torch.Tensor) and moved.dtype == torch.float32
    assert moved.shape == (40, 2)
    np.testing.assert_allclose(moved.numpy(), expected, rtol=1e-5)
    assert isinstance(res.transport(x), np.ndarray)


def test_one_dimensional_points_keep_their_shape():
    rng = np.random.default_rng(9)
    x, y = rng.random(30), rng.random(20) + 1.0
    res = otcli.solve(x, y, eps=1e-3, dtype="float64", tol=1e-9)
    moved = res.transport(x)
    assert moved.shape == (30,)
    # In 1-D the optimal map is monotone: sorted points stay sorted.
    assert np.all(np.diff(moved[np.argsort(x)]) > 0)


def test_bad_points_are_errors_naming_them():
    x, y, a, b = _pair()
    res = _solve(x, y, a, b, "sqeuclidean", None)
    with pytest.raises(OtcliError, match=r"^x_new: points of shape 5×3: the map moves points "
                       r"in 2-D, give \(k, 2\)$"):  # fmt: skip
        res.transport(np.ones((5, 3)))
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(OtcliError, match=r"^x_new: non-finite coordinate nan at point 2 "):
        res.transport(bad)
    with pytest.raises(OtcliError, match=r"^x_new: non-finite coordinate inf at point 0 "):
        res.transport(torch.tensor([[np.inf, 0.0]]), inverse=True)


def test_solve_matrix_result_has_no_map():
    x, y, a, b = _pair()
    res = otcli.solve_matrix(numpy_cost(x, y, "sqeuclidean"), a, b, eps=EPS)
    with pytest.raises(OtcliError, match=r"^transport: this result was solved from a cost "
                       "matrix"):  # fmt: skip
        res.transport(x)


def test_saved_potentials_rebuild_the_map_exactly(tmp_path):
    x, y, a, b = _pair(10)
    res = otcli.solve(x, y, a, b, eps=0.3, cost="pnorm", p=1.5, rho=3.0)
    path = tmp_path / "map.npz"
    save_potentials(res, path)
    back = load_potentials(path)
    new = np.random.default_rng(0).normal(size=(17, 2)) + 2.0
    assert np.array_equal(back.transport(new), res.transport(new))
    assert np.array_equal(back.transport(y, inverse=True), res.transport(y, inverse=True))
    assert (back.eps, back.rho_a, back.cost_fn, back.dtype) == (0.3, 3.0, res.cost_fn, "float32")
    with np.load(path, allow_pickle=False) as saved:  # plain arrays: loads without pickle
        assert str(saved["otcli_version"]) == otcli.__version__


def test_load_potentials_refuses_other_files(tmp_path):
    other = tmp_path / "points.npz"
    np.savez(other, points=np.ones((3, 2)))
    with pytest.raises(OtcliError, match=r"is not a potentials file written by otdist map"):
        load_potentials(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(OtcliError, match=r"junk\.npz: is not a potentials file"):
        load_potentials(junk)


def test_callable_cost_that_is_not_symmetric_maps_both_ways():
    """A cost of one's own, C(x, y) = |x − 2y|²: the inverse map evaluates C(x_i, y) with the
    new point second, as POT's potentials say."""
    x, y, a, b = _pair(11, 30, 20)

    def cost(p, q):  # (B, n, d), (B, m, d) -> (B, n, m)
        return ((p[:, :, None, :] - 2 * q[:, None, :, :]) ** 2).sum(-1)

    M = ((x[:, None, :] - 2 * y[None, :, :]) ** 2).sum(-1)
    _, log = ot.sinkhorn(a, b, M, 1.0, method="sinkhorn_log", stopThr=1e-12,
                         numItermax=200_000, log=True)  # fmt: skip
    res = otcli.solve(x, y, a, b, eps=1.0, cost=cost, dtype="float64", tol=1e-12)
    new_y = y[:7] + 0.1
    back = softmax(log["log_u"][:, None] - ((x[:, None] - 2 * new_y[None]) ** 2).sum(-1), axis=0)
    np.testing.assert_allclose(res.transport(new_y, inverse=True), back.T @ x, rtol=1e-4)
    forward = softmax(log["log_v"][None, :] - M, axis=1) @ y
    np.testing.assert_allclose(res.transport(x), forward, rtol=1e-4)

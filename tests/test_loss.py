"""``otcli.sinkhorn_loss`` / ``SinkhornLoss``: values and gradients for PyTorch.

Oracles: POT's converged log-domain plan and potentials (the envelope gradient
∇_x OT_ε = Σ_j P_ij ∇_x C(x_i, y_j), ∇_a OT_ε = f up to a constant), central finite
differences of the loss itself, one-at-a-time calls for batches, and the closed form
S_ε(x, x) = 0. Data: the iris flowers (scikit-learn's bundled copy) and seeded clouds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import otcli
from otcli.errors import OtcliError

ot = pytest.importorskip("ot")


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return x[y == 1][:30], x[y == 2][:25]


def _pot_plan(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float):
    M = ot.dist(x, y)
    P, log = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", numItermax=200_000,
                         stopThr=1e-13, log=True)  # fmt: skip
    f = eps * (log["log_u"] - np.log(a))
    return P, f


def test_gradients_match_pots_converged_plan_by_the_envelope_theorem():
    x_np, y_np = _iris()
    rng = np.random.default_rng(0)
    a_np = rng.random(30) + 0.5
    a_np /= a_np.sum()
    b_np = np.full(25, 1 / 25)
    x = torch.tensor(x_np, requires_grad=True)
    a = torch.tensor(a_np, requires_grad=True)
    loss = otcli.sinkhorn_loss(x, torch.tensor(y_np), a, divergence=False, eps=0.5, tol=1e-12)
    assert loss.ndim == 0 and loss.dtype == torch.float64
    loss.backward()
    P, f = _pot_plan(x_np, y_np, a_np, b_np, 0.5)
    want_x = 2 * (P.sum(1)[:, None] * x_np - P @ y_np)  # Σ_j P_ij ∇_x |x_i − y_j|²
    np.testing.assert_allclose(x.grad.numpy(), want_x, rtol=1e-4, atol=1e-9)
    # The weights: f up to a constant (the simplex has no normal component).
    got_a = a.grad.numpy()
    np.testing.assert_allclose(got_a - got_a.mean(), f - f.mean(), rtol=1e-4, atol=1e-8)
    # And the value is the one solve reports.
    res = otcli.solve(x_np, y_np, a_np, eps=0.5, tol=1e-12, dtype="float64")
    assert loss.item() == pytest.approx(res.objective, rel=1e-12)


@pytest.mark.parametrize("divergence", [True, False])
def test_gradient_equals_central_finite_differences(divergence):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 2, generator=g, dtype=torch.float64)
    y = torch.rand(9, 2, generator=g, dtype=torch.float64) + 0.3
    b = torch.rand(9, generator=g, dtype=torch.float64) + 0.2
    opts = dict(eps=0.1, tol=1e-13, divergence=divergence, max_iter=100_000)
    x.requires_grad_(True)
    b.requires_grad_(True)
    otcli.sinkhorn_loss(x, y, None, b, **opts).backward()
    h = 1e-6
    for target, grad, index in [(x, x.grad, (3, 1)), (x, x.grad, (7, 0)), (b, b.grad, (4,))]:
        with torch.no_grad():
            plus, minus = target.detach().clone(), target.detach().clone()
            plus[index] += h
            minus[index] -= h
        args = [(plus if target is x else x.detach()), y, None,
                 (plus if target is b else b.detach())]  # fmt: skip
        up = otcli.sinkhorn_loss(*args, **opts)
        args = [(minus if target is x else x.detach()), y, None,
                 (minus if target is b else b.detach())]  # fmt: skip
        down = otcli.sinkhorn_loss(*args, **opts)
        fd = float(up - down) / (2 * h)
        assert float(grad[index]) == pytest.approx(fd, rel=1e-5, abs=1e-8), index


def test_batches_and_ragged_lists_equal_one_at_a_time():
    g = torch.Generator().manual_seed(4)
    xb = torch.rand(3, 20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    yb = torch.rand(3, 15, 3, generator=g, dtype=torch.float64)
    loss = otcli.sinkhorn_loss(xb, yb, eps=0.05, tol=1e-10)
    assert loss.shape == (3,)
    loss.sum().backward()
    for k in range(3):
        xk = xb[k].detach().clone().requires_grad_(True)
        one = otcli.sinkhorn_loss(xk, yb[k], eps=0.05, tol=1e-10)
        assert one.item() == pytest.approx(loss[k].item(), rel=1e-9)
        one.backward()
        torch.testing.assert_close(xb.grad[k], xk.grad, rtol=1e-6, atol=1e-10)
    # Ragged: clouds of different sizes in lists.
    xs = [torch.rand(n, 2, generator=g, dtype=torch.float64, requires_grad=True) for n in (5, 17)]
    ys = [torch.rand(m, 2, generator=g, dtype=torch.float64) for m in (11, 4)]
    losses = otcli.sinkhorn_loss(xs, ys, eps=0.05, tol=1e-10)
    assert losses.shape == (2,)
    losses.sum().backward()
    for xk, yk, value in zip(xs, ys, losses, strict=True):
        fresh = xk.detach().clone().requires_grad_(True)
        one = otcli.sinkhorn_loss(fresh, yk, eps=0.05, tol=1e-10)
        one.backward()
        assert one.item() == pytest.approx(value.item(), rel=1e-9)
        torch.testing.assert_close(xk.grad, fresh.grad, rtol=1e-6, atol=1e-10)


def test_online_geometry_gradient_equals_the_dense_one():
    g = torch.Generator().manual_seed(5)
    y = torch.rand(80, 3, generator=g, dtype=torch.float64)
    grads = {}
    for geometry in ("dense", "online"):
        x = torch.rand(60, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        x.requires_grad_(True)
        otcli.sinkhorn_loss(x, y, eps=0.02, geometry=geometry, tol=1e-11).backward()
        grads[geometry] = x.grad
    torch.testing.assert_close(grads["online"], grads["dense"], rtol=1e-6, atol=1e-10)


def test_divergence_and_its_gradient_vanish_at_y_equal_x():
    x_np, _ = _iris()
    x = torch.tensor(x_np, requires_grad=True)
    loss = otcli.sinkhorn_loss(x, torch.tensor(x_np), eps=0.3, tol=1e-12)
    assert abs(loss.item()) < 1e-9
    loss.backward()
    assert float(x.grad.abs().max()) < 1e-6


def test_training_moves_a_cloud_onto_another():
    """Gradient descent on the points: the divergence falls at least 20× in 60 steps."""
    x_np, y_np = _iris()
    x = torch.tensor(x_np[:, :2] + 3.0, dtype=torch.float32, requires_grad=True)
    y = torch.tensor(y_np[:, :2], dtype=torch.float32)
    loss_fn = otcli.SinkhornLoss(eps=0.01)
    opt = torch.optim.SGD([x], lr=1.0)
    history = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        # Each point's gradient is ∝ its mass 1/n: step by n × it (Lagrangian flow).
        x.grad *= x.shape[0] / 2
        opt.step()
        history.append(loss.item())
    assert loss.dtype == torch.float32
    assert history[-1] < history[0] / 20, history[::10]


def test_a_learnable_cost_gets_its_gradient():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(15, 3, generator=g, dtype=torch.float64)
    y = torch.rand(12, 3, generator=g, dtype=torch.float64)
    W = torch.nn.Parameter(torch.eye(3, dtype=torch.float64) + 0.1)

    def cost(p, q):
        return torch.cdist(p @ W, q @ W) ** 2

    opts = dict(eps=0.1, tol=1e-12, divergence=False, cost=cost)
    otcli.sinkhorn_loss(x, y, **opts).backward()
    assert W.grad is not None
    h = 1e-6
    with torch.no_grad():
        W[0, 2] += h
        up = float(otcli.sinkhorn_loss(x, y, **opts))
        W[0, 2] -= 2 * h
        down = float(otcli.sinkhorn_loss(x, y, **opts))
        W[0, 2] += h
    assert float(W.grad[0, 2]) == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_unbalanced_gradient_equals_finite_differences():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(10, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(14, 2, generator=g, dtype=torch.float64) + 0.5
    opts = dict(eps=0.1, reach=0.7, tol=1e-12, divergence=False, max_iter=100_000)
    otcli.sinkhorn_loss(x, y, **opts).backward()
    h = 1e-6
    base = x.detach()
    for index in [(0, 0), (5, 1)]:
        plus, minus = base.clone(), base.clone()
        plus[index] += h
        minus[index] -= h
        fd = (float(otcli.sinkhorn_loss(plus, y, **opts))
              - float(otcli.sinkhorn_loss(minus, y, **opts))) / (2 * h)  # fmt: skip
        assert float(x.grad[index]) == pytest.approx(fd, rel=1e-5, abs=1e-9), index


def test_float32_points_give_a_float32_loss_and_finite_gradients():
    x = torch.rand(50, 2, requires_grad=True)
    y = torch.rand(40, 2)
    loss = otcli.sinkhorn_loss(x, y, eps=0.01)
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == torch.float32 and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize(
    ("args", "keyword"),
    [
        ((torch.rand(5, 2), torch.rand(4, 3)), "^y: points have 3 coordinates"),
        ((torch.tensor([[0.0, float("nan")]]), torch.rand(4, 2)), "x"),
        ((torch.rand(5, 2), torch.rand(4, 2), -torch.ones(5)), "a"),
        ((torch.rand(5, 2), torch.rand(4, 2), None, torch.ones(3)), "b"),
        (([torch.rand(5, 2)], [torch.rand(4, 2), torch.rand(3, 2)]), "y"),
    ],
)
def test_bad_input_is_an_otcli_error_naming_the_keyword(args, keyword):
    with pytest.raises(OtcliError, match=keyword):
        otcli.sinkhorn_loss(*args, eps=0.1)


def test_not_converged_warns_and_still_returns_a_loss():
    g = torch.Generator().manual_seed(9)
    x = torch.rand(30, 2, generator=g, requires_grad=True)
    y = torch.rand(30, 2, generator=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = otcli.sinkhorn_loss(x, y, eps=0.001, max_iter=3, scaling=None)
    messages = [str(w.message) for w in caught if "did not converge" in str(w.message)]
    assert messages, [str(w.message) for w in caught]
    # It names the solve that missed (here all three of the divergence) and its own error.
    assert "x–y (marginal error" in messages[0] and "self term" in messages[0]
    assert "> tol 1e-05 after 3 iterations" in messages[0]
    loss.backward()
    assert bool(torch.isfinite(x.grad).all())


def test_module_repr_and_forward():
    loss_fn = otcli.SinkhornLoss(eps=0.2, divergence=False)
    assert "eps=0.2" in repr(loss_fn)
    x, y = torch.rand(8, 2, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    assert float(loss_fn(x, y)) == pytest.approx(otcli.solve(x.numpy(), y.numpy(), eps=0.2,
                                                             dtype="float64").objective)  # fmt: skip


def test_the_library_takes_tensors_as_a_pytorch_user_gives_them():
    """(B, n, d) tensors are B pairs, torch.device and torch dtypes are accepted, and a
    float64 tensor is solved in float64 unless dtype says otherwise."""
    g = torch.Generator().manual_seed(10)
    x = torch.rand(3, 20, 2, generator=g, dtype=torch.float64)
    y = torch.rand(3, 15, 2, generator=g, dtype=torch.float64)
    rs = otcli.solve(x, y, eps=0.1)
    assert len(rs) == 3 and {r.dtype for r in rs} == {"float64"}
    for k in range(3):
        one = otcli.solve(x[k].numpy(), y[k].numpy(), eps=0.1, dtype="float64")
        assert rs[k].cost == pytest.approx(one.cost, rel=1e-6)  # each within its tol
    r = otcli.solve(x[0].float(), y[0].float(), device=torch.device("cpu"), dtype=torch.float64)
    assert (r.dtype, r.device) == ("float64", "cpu")
    assert otcli.solve(x[0].float(), y[0].float()).dtype == "float32"
    ds = otcli.divergence(x, y, eps=0.1)
    assert [d.xy.dtype for d in ds] == ["float64"] * 3


def test_a_misspelled_keyword_is_an_option_error_naming_it():
    with pytest.raises(otcli.OptionError, match=r"^epss: sinkhorn_loss takes otcli.solve's"):
        otcli.sinkhorn_loss(torch.rand(4, 2), torch.rand(3, 2), epss=0.1)

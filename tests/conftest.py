"""Shared fixtures, the one validity check every solver test makes, and the in-process CLI.

``assert_valid_result`` recomputes everything it checks with numpy from what a result hands
back (plan, cost matrix, potentials): it never trusts a figure the library computed itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

from otcli.cli import run

if TYPE_CHECKING:
    from otcli.result import SinkhornResult

# torch loads inside the fixtures that need them: every test module
# shares this file, and test_io / test_cli should not pay for them at collection.

# The quick loop: ``python -m pytest -m "not slow"`` leaves out the scale tests (marked
# ``@pytest.mark.slow``; the marker is declared in pyproject.toml). The default command,
# which CI runs, runs everything.


def otdist(capfd: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the ``otdist`` command in-process; return (exit code, stdout, stderr).

    Arguments are turned into strings (paths and numbers may be passed as they are). Output
    captured before the call is dropped, so stdout and stderr hold this run's text only.
    """
    capfd.readouterr()
    code = run([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


# --- the seed's worked examples (shared/seed/README.md) --------------------------------------

LINE_X = np.array([[float(i), 0.0] for i in range(5)])
LINE_Y = np.array([[float(i), 1.0] for i in range(5)])


def numpy_cost(x: np.ndarray, y: np.ndarray, name: str, p: float | None = None) -> np.ndarray:
    """C_ij straight from the definitions, in numpy float64 (never from otcli.costs).

    Works on (n, d) × (m, d) → (n, m) and on batches (..., n, d) × (..., m, d).
    """
    diff = x[..., :, None, :] - y[..., None, :, :]  # (..., n, m, d)
    if name == "sqeuclidean":
        return (diff**2).sum(-1)
    if name == "euclidean":
        return np.sqrt((diff**2).sum(-1))
    if name == "cityblock":
        return np.abs(diff).sum(-1)
    if name == "pnorm":
        return (np.abs(diff) ** (2.0 if p is None else p)).sum(-1)
    if name == "cosine":
        xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
        yn = y / np.linalg.norm(y, axis=-1, keepdims=True)
        return 1.0 - np.einsum("...ik,...jk->...ij", xn, yn)
    raise AssertionError(name)


def _normalised(w: np.ndarray | None, n: int) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    return w / w.sum()


def marginal_l1(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁, computed with numpy."""
    return float(np.abs(plan.sum(axis=1) - a).sum() + np.abs(plan.sum(axis=0) - b).sum())


def assert_valid_result(
    r: SinkhornResult,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    *,
    require_converged: bool = True,
) -> np.ndarray:
    """Everything a solved problem must satisfy; returns the plan for further checks.

    ``a``/``b`` are the masses the caller passed (relative; normalised here, uniform if None).
    - cost and objective are finite; the result converged (unless told not to require it);
    - P ≥ 0 and its marginals miss ``a``/``b`` by no more than the reported marginal error
      (which must itself be ≤ ``tol`` when converged);
    - ⟨P, C⟩ from ``plan()`` and ``cost_matrix()`` equals ``cost`` to 1e-9 relative;
    - ``objective`` is the primal value ⟨P,C⟩ + ε KL(P | a⊗b) of the returned plan (never
      below ⟨P, C⟩), and equals the dual ⟨a, f⟩ + ⟨b, g⟩ up to what the marginal error allows.
    """
    a = _normalised(a, r.x.n)
    b = _normalised(b, r.y.n)
    assert np.isfinite(r.cost), r.cost
    assert np.isfinite(r.objective), r.objective
    assert np.isfinite(r.f).all()
    assert np.isfinite(r.g).all()
    assert r.f.shape == (r.x.n,)
    assert r.g.shape == (r.y.n,)
    np.testing.assert_allclose(r.x.weights, a, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.y.weights, b, rtol=1e-12, atol=0)
    if require_converged:
        assert r.converged, (r.marginal_error, r.tol, r.iterations)
        assert r.marginal_error <= r.tol
    assert r.converged == (r.marginal_error <= r.tol)

    plan = r.plan()
    cmat = r.cost_matrix()
    assert plan.shape == cmat.shape == (r.x.n, r.y.n)
    assert np.isfinite(plan).all()
    assert (plan >= 0).all()
    err = marginal_l1(plan, a, b)
    assert err <= r.marginal_error * (1 + 1e-6) + 1e-12, (err, r.marginal_error)

    pc = float((plan * cmat).sum())
    assert pc == pytest.approx(r.cost, rel=1e-9, abs=1e-300)

    dual = float(a @ r.f + b @ r.g)
    # Primal value of the same plan: ⟨P,C⟩ + ε KL(P | a⊗b), with KL's mass terms (numpy's
    # own, from the plan). It equals ⟨P1, f⟩ + ⟨Pᵀ1, g⟩ + ε(1 − ΣP), so it may differ from
    # the dual by what the marginal error moves: at most err · (max|f| + max|g| + ε).
    ab = np.outer(a, b)
    pos = plan > 0
    kl = float((plan[pos] * np.log(plan[pos] / ab[pos])).sum() - plan.sum() + ab.sum())
    primal = pc + r.eps * kl
    assert primal == pytest.approx(r.objective, rel=1e-7, abs=1e-9 * r.eps)
    assert r.objective >= r.cost * (1 - 1e-12)
    gap = err * (np.abs(r.f).max() + np.abs(r.g).max() + r.eps) + 1e-9 * max(1.0, abs(dual))
    assert abs(dual - r.objective) <= gap, (dual, r.objective, gap)
    return plan


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One torch thread for a module of small problems.

    On a busy 2-core machine, torch's two OpenMP threads and OpenBLAS's (POT's oracles) spin
    against each other: a 4-pair batch of ≤ 50 points took 0.9-3.6 s instead of 0.08 s. The
    numerical tests solve tiny problems, where threads buy nothing. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``; the setting is restored after.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def line() -> tuple[np.ndarray, np.ndarray]:
    """The seed's line: x = (i, 0), y = (i, 1), i = 0..4, uniform masses."""
    return LINE_X.copy(), LINE_Y.copy()


@pytest.fixture(scope="session")
def moons() -> tuple[np.ndarray, np.ndarray]:
    """The seed's moons, ``make_moons(n_samples=30)`` class 0 vs class 1, from its closed form.

    scikit-learn's noiseless moons are x = cos t, y = sin t (outer) and x = 1 − cos t,
    y = 1 − sin t − 0.5 (inner), t = linspace(0, π, 15); tests/test_packaging.py checks the
    formula against scikit-learn where it is installed.
    """
    t = np.linspace(0.0, np.pi, 15)
    outer = np.column_stack([np.cos(t), np.sin(t)])
    inner = np.column_stack([1.0 - np.cos(t), 1.0 - np.sin(t) - 0.5])
    return outer, inner


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)

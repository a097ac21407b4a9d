"""Over-relaxation's factor ω: the rules of :mod:`otcli.convergence` against the closed forms of
the linear model (Young's SOR theory, as Thibault et al. 2017 apply it to Sinkhorn), the
loop's ω at the target ε, and iteration counts on fixed problems (counted, not timed)."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

import otcli
from otcli import convergence, solver
from otcli.geometry import DenseGeometry
from otcli.loopstate import SolverOptions

pytestmark = pytest.mark.usefixtures("single_thread")


def relaxed_rate(theta: float, omega: float) -> float:
    """The oracle: the spectral radius of ω-relaxed iterations of a linear map of rate Θ, the
    largest root of ρ² + (2(ω − 1) − ω²Θ) ρ + (ω − 1)² = 0 (numpy's polynomial roots)."""
    roots = np.roots([1.0, 2 * (omega - 1) - omega**2 * theta, (omega - 1) ** 2])
    return float(np.abs(roots).max())


def best_omega(theta: float) -> float:
    return 2.0 / (1.0 + math.sqrt(1.0 - theta))


def one(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64)


def count(value: int) -> torch.Tensor:
    return torch.tensor([value])


def relax(omega, theta, err, err_ref, iterations=20, ref_at=10, settled_at=0, window=10):
    return convergence.relaxation(
        one(omega), one(theta), one(err), one(err_ref), count(iterations), count(ref_at),
        count(settled_at), window, 1.98,
    )  # fmt: skip


@pytest.mark.parametrize(("theta", "omega"), [(0.99, 1.3), (0.95, 1.0), (0.999, 1.6)])
def test_a_measured_window_gives_the_best_factor(theta, omega):
    """A window whose error falls at the linear model's rate for (Θ, ω) gives ω*(Θ) and Θ."""
    rho = relaxed_rate(theta, omega)
    new, got_theta, ref, renewed, _ = relax(omega, 0.5, rho**10, 1.0)
    assert float(got_theta) == pytest.approx(theta, rel=1e-7)
    assert float(new) == pytest.approx(min(best_omega(theta), 1.98), rel=1e-6)
    assert bool(renewed) and float(ref) == pytest.approx(rho**10)


def test_the_first_window_at_an_eps_counts_the_transient():
    """With no estimate yet (Θ = 0) the measured 1 − Θ is shrunk to FIRST_SHARE of itself."""
    theta, omega = 0.9, 1.0
    new, got_theta, *_ = relax(omega, 0.0, relaxed_rate(theta, omega) ** 10, 1.0)
    slower = 1.0 - convergence.FIRST_SHARE * (1.0 - theta)
    assert float(got_theta) == pytest.approx(slower, rel=1e-9)
    assert float(new) == pytest.approx(best_omega(slower), rel=1e-9)
    assert float(new) > best_omega(theta)


def test_a_rising_error_backs_off():
    """An error that grew over a window halves ω − 1, and Θ becomes the rate that factor
    is best for; the window after that change is not measured."""
    new, got_theta, _, _, settled_at = relax(1.8, 0.99, 2e-3, 1e-3)
    assert float(new) == pytest.approx(1.4)
    assert best_omega(float(got_theta)) == pytest.approx(1.4)
    assert int(settled_at) == 20 + 10
    # the next window starts before settled_at: whatever it shows, ω stays
    again, *_ = relax(1.4, float(got_theta), 1.0, 1e-6, iterations=30, ref_at=20, settled_at=30)
    assert float(again) == pytest.approx(1.4)


def test_a_fall_faster_than_the_model_allows_is_a_transient():
    """No linear rate at ω is below ω − 1: such a fall leaves ω where it is."""
    new, *_ = relax(1.7, 0.9, 0.5**10, 1.0)
    assert float(new) == pytest.approx(1.7)


def test_a_young_reference_waits():
    """A reference taken 3 iterations before a window's end is not measured against."""
    new, _, ref, renewed, _ = relax(1.0, 0.5, 0.5, 1.0, iterations=13, ref_at=10)
    assert float(new) == 1.0 and not bool(renewed) and float(ref) == 1.0


def test_carry_extrapolates_the_rate_to_the_next_eps():
    """Halving ε halves 1 − Θ; the next stage starts at CARRY_MARGIN of ω*'s excess; a
    problem with no estimate starts plain."""
    theta, omega = convergence.carry(torch.tensor([0.96, 0.0]), torch.tensor([0.5, 0.5]), 1.98)
    assert float(theta[0]) == pytest.approx(0.98)
    want = 1 + convergence.CARRY_MARGIN * (best_omega(0.98) - 1)
    assert float(omega[0]) == pytest.approx(want)
    assert float(theta[1]) == 0.0 and float(omega[1]) == 1.0


def test_the_target_stage_starts_relaxed_after_a_measured_annealing(monkeypatch, rng):
    """Annealing stages long enough to measure (stage_tol 1e-6) hand the target ε a factor
    above 1 after its first, plain step; the result is POT's log-domain plan."""
    x, y = rng.random((60, 2)), rng.random((50, 2))
    cmat = ((x[:, None] - y[None]) ** 2).sum(-1)
    steps = []
    real = solver._relaxed_step

    def spy(b, st, c, *plain):
        at_target = bool((st.stage == b.last).all())
        first = bool(plain) and plain[0] is not None and bool(plain[0].all())
        steps.append((at_target, first, float(st.omega[0])))
        real(b, st, c, *plain)

    monkeypatch.setattr(solver, "_relaxed_step", spy)
    C = torch.tensor(cmat)[None]
    geom = DenseGeometry(
        C, torch.ones(1, 60, dtype=torch.bool), torch.ones(1, 50, dtype=torch.bool)
    )
    log_a = torch.full((1, 60), -math.log(60), dtype=torch.float64)
    log_b = torch.full((1, 50), -math.log(50), dtype=torch.float64)
    eps = 0.01
    out = solver.sinkhorn_loop(
        geom, log_a, log_b, torch.tensor([eps], dtype=torch.float64),
        SolverOptions(tol=1e-9, stage_tol=1e-6, max_iter=3000),
    )  # fmt: skip
    arrival = next(k for k, s in enumerate(steps) if s[0])
    assert steps[arrival][1]  # the first step at the target is plain
    assert steps[arrival + 1][2] > 1.2  # the next ones are relaxed at once
    f, g = out.f[0].numpy(), out.g[0].numpy()
    plan = np.exp((f[:, None] + g[None] - cmat) / eps) / (60 * 50)
    want = ot.sinkhorn(
        np.full(60, 1 / 60), np.full(50, 1 / 50), cmat, eps, method="sinkhorn_log",
        numItermax=200_000, stopThr=1e-13,
    )  # fmt: skip
    assert np.abs(plan.sum(1) - 1 / 60).sum() + np.abs(plan.sum(0) - 1 / 50).sum() < 1e-8
    assert (plan * cmat).sum() == pytest.approx((want * cmat).sum(), rel=1e-7)


def ragged_pairs(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first pairs of benchmarks/bench_batch.py's make_data (seed 0): 100–500 points in
    the unit cube, d = 3."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):
        n, m = (int(s) for s in rng.integers(100, 501, 2))
        pairs.append((rng.random((n, 3)), rng.random((m, 3))))
    return pairs


def test_ragged_pairs_need_fewer_iterations_at_the_target():
    """Eight of the benchmark's ragged pairs at ε = 0.01, tol 1e-4, one batch: each took 70–80
    iterations while ω stayed 1 for the first 20–30 at the target ε (it then rose window by
    window); with the carried rate and the short first window each takes at most 60. The
    costs are POT's (converged ``sinkhorn_log``) to 1e-4."""
    pairs = ragged_pairs(8)
    res = otcli.solve([p[0] for p in pairs], [p[1] for p in pairs], eps=0.01, tol=1e-4)
    assert all(r.converged for r in res)
    assert max(r.iterations for r in res) <= 60, [r.iterations for r in res]
    for (x, y), r in list(zip(pairs, res, strict=True))[:2]:
        cmat = ((x[:, None] - y[None]) ** 2).sum(-1)
        a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
        plan = ot.sinkhorn(a, b, cmat, 0.01, method="sinkhorn_log", numItermax=100_000,
                           stopThr=1e-10)  # fmt: skip
        assert r.cost == pytest.approx((plan * cmat).sum(), rel=1e-4)

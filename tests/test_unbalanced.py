"""Unbalanced OT (KL-relaxed marginals) against POT's ``ot.unbalanced``, in every geometry and
in batches of mixed sizes; the limit ρ → ∞; the reach convention; costs given as functions."""

from __future__ import annotations

import json
import math

import numpy as np
import ot
import pytest
import torch

import otcli
import otcli.api as api_module
import otcli.geometry.blocksparse as bs
import otcli.geometry.online as online_module
from conftest import otdist
from otcli.config import make_config
from otcli.costs import CallableCost
from otcli.errors import OptionError
from otcli.geometry import DenseGeometry, KernelGeometry, OnlineGeometry
from otcli.solver import SolverOptions, sinkhorn_loop

pytestmark = pytest.mark.usefixtures("single_thread")

EPS, RHO = 0.05, 0.5
TIGHT = {"dtype": "float64", "tol": 1e-11, "max_iter": 20000}


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Generalised KL(p‖q) = Σ p log(p/q) − p + q, 0 log 0 = 0 (numpy)."""
    pos = p > 0
    return float((p[pos] * np.log(p[pos] / q[pos])).sum() - p.sum() + q.sum())


def primal(plan, C, a, b, eps, rho_a, rho_b) -> float:
    """⟨P, C⟩ + ε KL(P‖a⊗b) + ρ_a KL(P1‖a) + ρ_b KL(Pᵀ1‖b): the unbalanced objective."""
    value = float((plan * C).sum()) + eps * _kl(plan, np.outer(a, b))
    if rho_a is not None:
        value += rho_a * _kl(plan.sum(1), a)
    if rho_b is not None:
        value += rho_b * _kl(plan.sum(0), b)
    return value


def pot_plan(x, y, a, b, eps, reg_m):
    """POT's converged unbalanced plan (KL to a⊗b, as otcli) and its cost matrix.

    POT's plain scaling iterations: in float64 at these ε, exp(−C/ε) > 1e−140 never
    underflows, and its log-domain ``sinkhorn_stabilized`` stalls on some of these pairs
    (mass 0.081 instead of 0.786 after 170,000 iterations at ε = 0.01, ρ = (0.3, 0.2)).
    """
    M = ot.dist(x, y)
    a, b = a / a.sum(), b / b.sum()
    plan, log = ot.unbalanced.sinkhorn_unbalanced(
        a, b, M, eps, reg_m, method="sinkhorn", reg_type="kl", numItermax=100_000,
        stopThr=1e-14, log=True,
    )  # fmt: skip
    assert log["err"][-1] < 1e-13  # the oracle converged
    return plan, M, a, b


def _clouds(rng, n, m, d=2):
    x, y = rng.random((n, d)), rng.random((m, d)) + 0.3
    return x, y, rng.random(n) + 0.2, rng.random(m) + 0.2


def assert_unbalanced_result(r, a, b, C) -> np.ndarray:
    """What an unbalanced result must satisfy, recomputed with numpy from its plan."""
    plan = r.plan()
    assert r.converged and r.marginal_error <= r.tol
    assert float((plan * C).sum()) == pytest.approx(r.cost, rel=1e-9)
    assert plan.sum() == pytest.approx(r.mass, rel=1e-9)
    target_a = a if r.rho_a is None else a * np.exp(-r.f / r.rho_a)
    target_b = b if r.rho_b is None else b * np.exp(-r.g / r.rho_b)
    err = np.abs(plan.sum(1) - target_a).sum() + np.abs(plan.sum(0) - target_b).sum()
    assert err == pytest.approx(r.marginal_error, rel=1e-3, abs=1e-12)
    value = primal(plan, C, a, b, r.eps, r.rho_a, r.rho_b)
    assert value == pytest.approx(r.objective, rel=1e-9)
    return plan


# --- against POT ---------------------------------------------------------------------------


def test_weighted_pair_equals_pot(rng):
    x, y, wa, wb = _clouds(rng, 14, 9)
    plan_pot, M, a, b = pot_plan(x, y, wa, wb, EPS, RHO)
    r = otcli.solve(x, y, wa, wb, eps=EPS, rho=RHO, **TIGHT)
    plan = assert_unbalanced_result(r, a, b, M)
    np.testing.assert_allclose(plan, plan_pot, atol=1e-10)
    assert r.mass < 0.99  # the relaxation is at work: mass was left behind
    linear = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, M, EPS, RHO, method="sinkhorn_stabilized", numItermax=200_000, stopThr=1e-15
    )
    assert r.cost == pytest.approx(float(linear), rel=1e-8)
    assert r.objective == pytest.approx(primal(plan_pot, M, a, b, EPS, RHO, RHO), rel=1e-8)
    # POT's "total" drops the mass terms of its KL divergences (kl_div(mass=False)):
    # ours = POT's + (ε + ρ_a + ρ_b)(1 − Σ P) for unit masses.
    total = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, M, EPS, RHO, method="sinkhorn_stabilized", numItermax=200_000, stopThr=1e-15,
        returnCost="total",
    )  # fmt: skip
    gap = (EPS + 2 * RHO) * (1 - plan_pot.sum())
    assert r.objective == pytest.approx(float(total) + gap, rel=1e-7)


def test_mixed_sizes_in_one_batch_equal_pot(rng):
    sizes = [(12, 9), (5, 17), (20, 6)]
    pairs = [_clouds(rng, n, m) for n, m in sizes]
    xs, ys, was, wbs = (list(t) for t in zip(*pairs, strict=True))
    results = otcli.solve(xs, ys, was, wbs, eps=EPS, rho=RHO, **TIGHT)
    for r, (x, y, wa, wb) in zip(results, pairs, strict=True):
        plan_pot, M, a, b = pot_plan(x, y, wa, wb, EPS, RHO)
        plan = assert_unbalanced_result(r, a, b, M)
        np.testing.assert_allclose(plan, plan_pot, atol=1e-10)


@pytest.mark.parametrize("side", ["a", "b"])
def test_semi_relaxed_equals_pot(rng, side):
    x, y, wa, wb = _clouds(rng, 11, 8)
    reg_m = (RHO, math.inf) if side == "a" else (math.inf, RHO)
    plan_pot, M, a, b = pot_plan(x, y, wa, wb, EPS, reg_m)
    r = otcli.solve(x, y, wa, wb, eps=EPS, **{f"rho_{side}": RHO}, **TIGHT)
    plan = assert_unbalanced_result(r, a, b, M)
    np.testing.assert_allclose(plan, plan_pot, atol=1e-10)
    kept = plan.sum(0) if side == "a" else plan.sum(1)  # the balanced side stays exact
    np.testing.assert_allclose(kept, b if side == "a" else a, atol=1e-10)
    assert (r.rho_a, r.rho_b) == ((RHO, None) if side == "a" else (None, RHO))


def test_large_rho_recovers_balanced_ot(rng):
    x, y, wa, wb = _clouds(rng, 13, 10)
    balanced = otcli.solve(x, y, wa, wb, eps=EPS, **TIGHT)
    near = otcli.solve(x, y, wa, wb, eps=EPS, rho=1e7, **TIGHT)
    loose = otcli.solve(x, y, wa, wb, eps=EPS, rho=0.1, **TIGHT)
    assert near.cost == pytest.approx(balanced.cost, rel=1e-6)
    assert near.objective == pytest.approx(balanced.objective, rel=1e-6)
    np.testing.assert_allclose(near.plan(), balanced.plan(), atol=1e-7)
    assert near.mass == pytest.approx(1.0, abs=1e-6)
    assert loose.mass < 0.95 and loose.cost < 0.9 * balanced.cost  # ρ matters


# --- the same answer from every engine ----------------------------------------------------


def test_every_engine_gives_the_same_unbalanced_answer(rng, monkeypatch):
    x, y, wa, wb = _clouds(rng, 60, 45)
    kw = dict(eps=0.01, rho_a=0.3, rho_b=0.2, **TIGHT)
    kernel = otcli.solve(x, y, wa, wb, geometry="dense", **kw)
    online = otcli.solve(x, y, wa, wb, geometry="online", **kw)
    monkeypatch.setattr(online_module, "_PRUNE_MIN_ENTRIES", 0)  # one pair → block-sparse
    monkeypatch.setattr(bs, "_ROW_LEAF_SMALL", 16)  # small leaves: blocks really are skipped
    monkeypatch.setattr(bs, "_COL_LEAF", 8)
    sparse = otcli.solve(x, y, wa, wb, geometry="online", **kw)
    monkeypatch.setattr(api_module, "KERNEL_ON_CPU", False)  # the GPUs' log-domain engine
    dense = otcli.solve(x, y, wa, wb, geometry="dense", **kw)
    engines = [r.engine for r in (kernel, online, sparse, dense)]
    assert engines == ["kernel", "online", "block-sparse", "dense"]
    plan_pot, M, a, b = pot_plan(x, y, wa, wb, 0.01, (0.3, 0.2))
    for r in (kernel, online, sparse, dense):
        plan = assert_unbalanced_result(r, a, b, M)
        np.testing.assert_allclose(plan, plan_pot, atol=1e-9)


def test_kernel_geometry_loop_equals_log_domain_loop_in_float32():
    """The stabilised kernel (absorptions, squarings across annealing stages) under damped
    steps: the same potentials as the log-domain loop, at the float32 default tolerance."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 40, 2, generator=g, dtype=torch.float64)
    y = torch.rand(3, 30, 2, generator=g, dtype=torch.float64)
    C = ((x[:, :, None] - y[:, None]) ** 2).sum(-1).float()
    mx, my = torch.ones(3, 40, dtype=torch.bool), torch.ones(3, 30, dtype=torch.bool)
    log_a = torch.full((3, 40), -math.log(40), dtype=torch.float64)
    log_b = torch.full((3, 30), -math.log(30), dtype=torch.float64)
    eps = torch.tensor([0.01, 0.003, 0.05], dtype=torch.float64)
    opts = SolverOptions(tol=1e-5, max_iter=5000, rho_a=0.2, rho_b=0.4)
    outs = [
        sinkhorn_loop(geom, log_a, log_b, eps, opts)
        for geom in (DenseGeometry(C, mx, my), KernelGeometry(C, mx, my, exact_eps=eps))
    ]
    for t in ("f", "g"):
        np.testing.assert_allclose(getattr(outs[0], t), getattr(outs[1], t), atol=1e-4 * 0.05)


# --- divergence ---------------------------------------------------------------------------


def test_unbalanced_divergence_against_pot(rng):
    x, y, wa, wb = _clouds(rng, 10, 12)
    d = otcli.divergence(x, y, wa, wb, eps=EPS, reach=0.7, **TIGHT)

    def ot_value(p, q, wp, wq):
        plan, M, a, b = pot_plan(p, q, wp, wq, EPS, 0.7**2)
        return primal(plan, M, a, b, EPS, 0.49, 0.49)

    expected = ot_value(x, y, wa, wb) - 0.5 * (ot_value(x, x, wa, wa) + ot_value(y, y, wb, wb))
    assert d.converged and d.xy.rho_a == pytest.approx(0.49)
    assert d.divergence == pytest.approx(expected, rel=1e-7)
    assert d.divergence > 0
    same = otcli.divergence(x, x, wa, wa, eps=EPS, rho=RHO, **TIGHT)
    assert abs(same.divergence) < 1e-9


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "p", "power"), [("sqeuclidean", None, 2), ("euclidean", None, 1),
                             ("cityblock", None, 1), ("pnorm", 3.0, 3)],
)  # fmt: skip
def test_reach_is_rho_to_the_cost_power(cost, p, power):
    config = make_config(cost=cost, p=p, reach=0.5, device="cpu")
    assert config.rho_a == config.rho_b == pytest.approx(0.5**power)
    semi = make_config(cost=cost, p=p, reach_b=2.0, rho_a=0.1, device="cpu")
    assert (semi.rho_a, semi.rho_b) == (0.1, pytest.approx(2.0**power))
    assert make_config(cost=cost, p=p, device="cpu").rho_a is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cost": "cosine", "reach": 1.0},
         "--reach: the cosine cost is not a power of a distance, so a reach has no penalty; "
         "give ρ itself with --rho"),
        ({"reach": 1.0, "rho": 1.0}, "--rho: give --reach or --rho, not both"),
        ({"reach": 1.0, "reach_a": 1.0},
         "--reach-a: give --reach (both sides) or per-side options, not both"),
        ({"reach_a": 1.0, "rho_a": 1.0}, "--rho-a: give --reach-a or --rho-a, not both"),
        ({"rho": 0.0}, "--rho: must be a positive finite number (a penalty; leave it out for "
         "balanced OT), got 0.0"),
        ({"reach_b": -1.0}, "--reach-b: must be a positive finite number (a distance; leave it "
         "out for balanced OT), got -1.0"),
        ({"rho_a": math.inf}, "--rho-a: must be a positive finite number (a penalty; leave it "
         "out for balanced OT), got inf"),
        ({"reach": 1e200}, "--reach: ρ = 1e+200^2 is out of range (inf)"),
    ],
)  # fmt: skip
def test_unbalanced_option_errors(kwargs, message):
    with pytest.raises(OptionError) as info:
        make_config(device="cpu", **kwargs)
    assert str(info.value) == message


def test_cosine_takes_rho(rng):
    x, y, wa, wb = _clouds(rng, 9, 7, d=3)
    r = otcli.solve(x, y, wa, wb, eps=0.02, cost="cosine", rho=0.3, **TIGHT)
    a, b = wa / wa.sum(), wb / wb.sum()
    C = ot.dist(x, y, metric="cosine")
    plan = assert_unbalanced_result(r, a, b, C)
    ref = ot.unbalanced.sinkhorn_unbalanced(
        a, b, C, 0.02, 0.3, method="sinkhorn_stabilized", numItermax=200_000, stopThr=1e-15
    )
    np.testing.assert_allclose(plan, ref, atol=1e-10)


# --- a cost of your own -------------------------------------------------------------------


def sq_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("geometry", ["dense", "online"])
def test_callable_squared_euclidean_equals_the_named_cost(rng, geometry):
    x, y, wa, wb = _clouds(rng, 30, 25, d=3)
    named = otcli.solve(x, y, wa, wb, eps=0.02, geometry=geometry, **TIGHT)
    own = otcli.solve(x, y, wa, wb, eps=0.02, geometry=geometry, cost=sq_cost, **TIGHT)
    assert own.cost_fn.describe() == "callable(sq_cost)"
    assert own.converged and own.engine == named.engine
    assert own.cost == pytest.approx(named.cost, rel=1e-9)
    assert own.objective == pytest.approx(named.objective, rel=1e-9)
    np.testing.assert_allclose(own.plan(), named.plan(), atol=1e-12)


def test_an_asymmetric_callable_is_transposed_not_swapped(rng):
    """C(x, y) ≠ C(y, x): the online geometry must reduce over Cᵀ, not over C(y, x)."""
    x, y, wa, wb = _clouds(rng, 20, 15)

    def uphill(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return sq_cost(p, q) + 0.5 * (q[:, None, :, 1] - p[:, :, None, 1]).clamp(min=0)

    kw = dict(eps=0.02, cost=uphill, **TIGHT)
    dense, online = (otcli.solve(x, y, wa, wb, geometry=g, **kw) for g in ("dense", "online"))
    C = sq_cost(torch.as_tensor(x)[None], torch.as_tensor(y)[None])[0].numpy()
    C = C + 0.5 * np.clip(y[None, :, 1] - x[:, None, 1], 0, None)
    a, b = wa / wa.sum(), wb / wb.sum()
    ref = ot.sinkhorn(a, b, C, 0.02, method="sinkhorn_log", numItermax=100_000, stopThr=1e-14)
    for r in (dense, online):
        assert r.converged
        np.testing.assert_allclose(r.plan(), ref, atol=1e-10)


def test_a_callable_skips_block_sparse_pruning(rng):
    x = torch.as_tensor(rng.random((1, 300, 2)))
    y = torch.as_tensor(rng.random((1, 200, 2)))
    ones_x, ones_y = torch.ones(1, 300, dtype=torch.bool), torch.ones(1, 200, dtype=torch.bool)
    geom = OnlineGeometry(x, y, CallableCost(sq_cost), ones_x, ones_y, torch.float64, prune=True)
    assert geom.engine == "online" and geom._sparse is None


def test_a_callable_with_the_wrong_shape_is_refused(line):
    x, y = line
    with pytest.raises(OptionError) as info:
        otcli.solve(x, y, cost=lambda p, q: sq_cost(p, q)[:, :, 0], device="cpu")
    assert str(info.value) == (
        "cost: callable(<lambda>) returned shape (1, 5) for points (1, 5, 2) × (1, 5, 2); "
        "it must return a tensor of shape (1, 5, 5)"
    )


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def moons_files(tmp_path, moons):
    x, y = moons
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    return tmp_path / "a.npy", tmp_path / "b.npy", x, y


def test_cli_reach_reports_mass_and_penalties(capfd, moons_files):
    a, b, x, y = moons_files
    code, out, err = otdist(capfd, a, b, "--reach", 0.5, "--json", "--dtype", "float64")
    assert code == 0, err
    got = json.loads(out)
    r = otcli.solve(x, y, reach=0.5, dtype="float64")
    assert (got["rho_a"], got["rho_b"]) == (0.25, 0.25)
    assert got["mass"] == pytest.approx(r.mass, rel=1e-12) and got["mass"] < 0.99
    assert got["objective"] == pytest.approx(r.objective, rel=1e-12)
    assert "w_p" not in got  # P is no coupling of a and b
    code, out, _ = otdist(capfd, a, b, "--rho-a", 0.25)
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "ε KL(P‖a⊗b) + ρ_a KL(P1‖a), in dual form" in lines["objective"]
    assert "transported, Σ P of 1 per cloud (ρ_a = 0.25)" in lines["mass"]
    assert "error to relaxed marginals" in lines["iterations"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cost", "cosine", "--reach", "1"],
         "--reach: the cosine cost is not a power of a distance, so a reach has no penalty; "
         "give ρ itself with --rho"),
        (["--exact", "--rho", "1"], "--exact: solves balanced OT; drop --reach / --rho"),
        (["--reach", "1", "--rho-b", "2"],
         "--rho-b: give --reach (both sides) or per-side options, not both"),
    ],
)  # fmt: skip
def test_cli_unbalanced_option_errors(capfd, moons_files, args, message):
    a, b, *_ = moons_files
    assert otdist(capfd, a, b, *args) == (2, "", f"Error: {message}\n")


def test_batch_and_pairwise_take_the_same_options(capfd, moons_files, tmp_path):
    a, b, x, y = moons_files
    (tmp_path / "m.csv").write_text("a,b\na.npy,b.npy\nb.npy,a.npy\n")
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.jsonl",
                          "--reach", 0.5, "--dtype", "float64")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    r = otcli.solve(x, y, reach=0.5, dtype="float64")
    # Batched with other problems, a solve stops at another iteration: equal to tol 1e-7.
    assert [row["cost"] for row in rows] == pytest.approx([r.cost, r.cost], rel=1e-6)
    assert rows[0]["objective"] == pytest.approx(r.objective, rel=1e-6)
    code, _, err = otdist(capfd, "pairwise", a, b, "-o", tmp_path / "d.npy", "--rho", 0.25,
                          "--dtype", "float64")  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "d.npy")[0, 1] == pytest.approx(r.cost, rel=1e-6)
    code, _, err = otdist(capfd, "pairwise", a, b, "-o", tmp_path / "e.npy", "--rho-a", 1)
    assert (code, err) == (
        2,
        "Error: --reach-a/--rho-a: pairwise solves each pair once for a "
        "symmetric matrix; relax both sides alike (--reach or --rho)\n",
    )

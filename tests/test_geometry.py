"""Dense and online geometries: the same log-sum-exps, whatever the block size or layout."""

from __future__ import annotations

import json

import numpy as np
import ot
import pytest
import torch

import otcli
from conftest import otdist
from otcli.costs import COST_NAMES, get_cost
from otcli.geometry import DenseGeometry, KernelGeometry, OnlineGeometry

COSTS = [(name, 1.5 if name == "pnorm" else None) for name in COST_NAMES]


def _clouds(n: int, m: int, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, n, d, generator=g, dtype=torch.float64)
    y = torch.rand(2, m, d, generator=g, dtype=torch.float64) + 0.3
    return x, y


@pytest.mark.parametrize(("name", "p"), COSTS)
@pytest.mark.parametrize("block_elems", [7, 1000, 1 << 20])
def test_blocked_lse_equals_torch_logsumexp(name, p, block_elems):
    x, y = _clouds(37, 23)
    cost_fn = get_cost(name, p)
    C = cost_fn(x, y)  # (2, 37, 23), the oracle's own dense matrix
    mask_x = torch.ones(2, 37, dtype=torch.bool)
    mask_y = torch.ones(2, 23, dtype=torch.bool)
    eps = torch.tensor([0.05, 0.3], dtype=torch.float64)
    hx = torch.randn(2, 37, dtype=torch.float64)
    hy = torch.randn(2, 23, dtype=torch.float64)
    want_cols = torch.logsumexp(hy[:, None, :] - C / eps[:, None, None], dim=2)
    want_rows = torch.logsumexp(hx[:, :, None] - C / eps[:, None, None], dim=1)
    geoms = [
        DenseGeometry(C, mask_x, mask_y, block_elems=block_elems),
        OnlineGeometry(x, y, cost_fn, mask_x, mask_y, torch.float64, block_elems=block_elems),
    ]
    for geom in geoms:
        torch.testing.assert_close(geom.lse_over_cols(hy, eps), want_cols, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(geom.lse_over_rows(hx, eps), want_rows, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(geom.max_cost(), C.amax(dim=(1, 2)))


def test_kernel_geometry_matches_log_domain_as_potentials_drift():
    """Kernel products equal exact log-sum-exps near the absorbed potentials and far away
    (where it must fall back), across ε changes and with padded columns."""
    x, y = _clouds(40, 30, seed=3)
    C = get_cost("sqeuclidean")(x, y)
    mask_x = torch.ones(2, 40, dtype=torch.bool)
    mask_y = torch.ones(2, 30, dtype=torch.bool)
    mask_y[1, 20:] = False
    geom = KernelGeometry(C, mask_x, mask_y, block_elems=500)
    g = torch.Generator().manual_seed(1)
    for eps_values, scale in [((0.05, 0.2), 0.0), ((0.05, 0.2), 1.0), ((0.05, 0.2), 50.0),
                              ((0.01, 0.2), 1.0)]:  # fmt: skip
        eps = torch.tensor(eps_values, dtype=torch.float64)
        hy = scale * torch.randn(2, 30, generator=g, dtype=torch.float64)
        hy[1, 20:] = -torch.inf
        hx = scale * torch.randn(2, 40, generator=g, dtype=torch.float64) - 3.0
        want_cols = torch.logsumexp(hy[:, None, :] - C / eps[:, None, None], dim=2)
        want_rows = torch.logsumexp(hx[:, :, None] - C / eps[:, None, None], dim=1)
        torch.testing.assert_close(geom.lse_over_cols(hy, eps), want_cols, rtol=1e-12, atol=1e-12)
        # Small moves reuse the kernel: no rebuild, same answers.
        builds = geom.rebuilds
        hy2 = hy + 0.5 * torch.rand(2, 30, generator=g, dtype=torch.float64)
        want2 = torch.logsumexp(hy2[:, None, :] - C / eps[:, None, None], dim=2)
        torch.testing.assert_close(geom.lse_over_cols(hy2, eps), want2, rtol=1e-12, atol=1e-12)
        assert geom.rebuilds == builds
        got_rows = geom.lse_over_rows(hx, eps)
        torch.testing.assert_close(got_rows[0], want_rows[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_rows[1, :20], want_rows[1, :20], rtol=1e-12, atol=1e-12)


def _log_domain_steps(C, log_a, log_b, f, g, eps, omega, steps):
    """The oracle: over-relaxed Sinkhorn iterations written out with torch.logsumexp."""
    e = eps[:, None]
    w = omega[:, None]
    for _ in range(steps):
        f_hat = -e * torch.logsumexp((log_b + g / e)[:, None, :] - C / e[..., None], dim=2)
        f = f + w * (f_hat - f)
        g_hat = -e * torch.logsumexp((log_a + f / e)[:, :, None] - C / e[..., None], dim=1)
        g = g + w * (g_hat - g)
    f_next = -e * torch.logsumexp((log_b + g / e)[:, None, :] - C / e[..., None], dim=2)
    return f, g, g_hat, f_next


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_scaling_steps_equal_log_domain_iterations(dtype):
    """The loop's bursts (u ← u^{1−ω}(a/K̃v)^ω, v likewise) give the log-domain iterations'
    potentials, with padding on both sides, ω per problem, and a frozen problem (ω = 0)."""
    x, y = _clouds(40, 30, seed=7)
    C = get_cost("sqeuclidean")(x, y)
    mask_x = torch.ones(2, 40, dtype=torch.bool)
    mask_y = torch.ones(2, 30, dtype=torch.bool)
    mask_x[1, 33:], mask_y[1, 21:] = False, False
    log_a = torch.where(mask_x, -torch.log(mask_x.sum(1, keepdim=True).double()), -torch.inf)
    log_b = torch.where(mask_y, -torch.log(mask_y.sum(1, keepdim=True).double()), -torch.inf)
    eps = torch.tensor([0.05, 0.1], dtype=torch.float64)
    geom = KernelGeometry(C.to(dtype), mask_x, mask_y, exact_eps=eps)
    f = torch.zeros(2, 40, dtype=torch.float64)
    g = -eps[:, None] * torch.logsumexp(
        (log_a + f / eps[:, None])[:, :, None] - C / eps[:, None, None], dim=1
    )
    g = torch.where(mask_y, g, 0.0)
    geom.lse_over_cols(log_b + g / eps[:, None], eps)  # builds the kernel, as the loop's first step
    for omega in (torch.tensor([1.0, 1.0]), torch.tensor([1.7, 1.3]), torch.tensor([1.5, 0.0])):
        omega = omega.double()
        got = geom.scaling_steps(log_a, log_b, f, g, eps, omega, 7)
        assert got is not None and got[3].tolist() == [7, 7]
        want = _log_domain_steps(C, log_a, log_b, f, g, eps, omega, 7)
        tol = 1e-10 if dtype == torch.float64 else 2e-5
        have_all = (got[0], got[1], got[2], got[4])  # f, g, ĝ and f̂ = F(g) of the state left
        for k, (have, ref) in enumerate(zip(have_all, want, strict=True)):
            mask = mask_y if k in (1, 2) else mask_x
            torch.testing.assert_close(have[mask], ref[mask], rtol=tol, atol=tol)
        if omega[1] == 0:  # frozen: its potentials stay where they were (to rounding)
            torch.testing.assert_close(got[0][1], f[1], rtol=0, atol=1e-5)


def test_kernel_scaling_steps_stop_early_and_refuse_stale_kernels():
    x, y = _clouds(30, 30, seed=8)
    C = get_cost("sqeuclidean")(x, y)
    mask = torch.ones(2, 30, dtype=torch.bool)
    log_w = torch.full((2, 30), -np.log(30.0), dtype=torch.float64)
    eps = torch.tensor([0.5, 0.5], dtype=torch.float64)
    geom = KernelGeometry(C, mask, mask, exact_eps=eps)
    zeros = torch.zeros(2, 30, dtype=torch.float64)
    assert (
        geom.scaling_steps(log_w, log_w, zeros, zeros, eps, torch.ones(2), 5) is None
    )  # no kernel
    geom.lse_over_cols(log_w, eps)
    stop = torch.full((2,), 1e-3, dtype=torch.float64)
    f, g, _, ran, f_hat = geom.scaling_steps(log_w, log_w, zeros, zeros, eps, torch.ones(2), 500,
                                             stop)  # fmt: skip
    assert 2 <= int(ran.max()) < 500
    # f̂ = F(g) of the state it stopped at, from the product its last reading made
    want = -0.5 * torch.logsumexp((log_w + g / 0.5)[:, None, :] - C / 0.5, dim=2)
    torch.testing.assert_close(f_hat, want, rtol=1e-10, atol=1e-10)
    # The state it stopped at meets the error bound, measured on the plan itself.
    P = torch.exp(log_w[:, :, None] + log_w[:, None, :] + (f[:, :, None] + g[:, None, :] - C) / 0.5)
    err = (P.sum(2) - log_w.exp()).abs().sum(1) + (P.sum(1) - log_w.exp()).abs().sum(1)
    assert bool((err <= 1e-3).all()) and bool((err > 1e-7).any())
    # Potentials far from the absorbed ones: out of the kernel's reach, refused.
    far = zeros + 100.0
    assert geom.scaling_steps(log_w, log_w, far, zeros, eps, torch.ones(2), 5) is None


def _plan_error(C, log_w, f, g, eps):
    P = torch.exp(log_w[:, :, None] + log_w[:, None, :] + (f[:, :, None] + g[:, None, :] - C) / eps)
    return (P.sum(2) - log_w.exp()).abs().sum(1) + (P.sum(1) - log_w.exp()).abs().sum(1)


def test_kernel_scaling_steps_freeze_each_final_problem_where_it_meets_its_bound():
    """At the target ε a burst freezes each problem as its error reaches the bound (its
    iteration count is its own), the others go on, and the burst ends with the last one:
    the frozen state is exactly the one a burst of that many iterations leaves."""
    x, y = _clouds(30, 30, seed=9)
    C = get_cost("sqeuclidean")(x, y)
    C[1] *= 4.0  # the second problem converges more slowly
    mask = torch.ones(2, 30, dtype=torch.bool)
    log_w = torch.full((2, 30), -np.log(30.0), dtype=torch.float64)
    eps = torch.tensor([0.3, 0.3], dtype=torch.float64)
    zeros = torch.zeros(2, 30, dtype=torch.float64)
    stop = torch.full((2,), 1e-6, dtype=torch.float64)
    final = torch.ones(2, dtype=torch.bool)

    def fresh() -> KernelGeometry:
        geom = KernelGeometry(C, mask, mask, exact_eps=eps)
        geom.lse_over_cols(log_w, eps)
        return geom

    f, g, _, ran, _ = fresh().scaling_steps(log_w, log_w, zeros, zeros, eps, torch.ones(2), 500,
                                         stop, final)  # fmt: skip
    first, last = ran.tolist()
    assert 2 <= first < last < 500
    err = _plan_error(C, log_w, f, g, 0.3)
    assert bool((err <= 1e-6).all())
    # Each problem's state is the one its own count of plain iterations gives.
    for k, count in enumerate((first, last)):
        f_k, g_k, _, done, _ = fresh().scaling_steps(log_w, log_w, zeros, zeros, eps, torch.ones(2),
                                                  count)  # fmt: skip
        assert done.tolist() == [count, count]
        torch.testing.assert_close(f[k], f_k[k], rtol=0, atol=1e-12)
        torch.testing.assert_close(g[k], g_k[k], rtol=0, atol=1e-12)
    # Without ``final`` nobody is frozen: the first problem runs on with the second.
    _, _, _, both, _ = fresh().scaling_steps(log_w, log_w, zeros, zeros, eps, torch.ones(2), 500,
                                          stop)  # fmt: skip
    assert both.tolist() == [last, last]


def test_kernel_geometry_squares_through_halved_eps_and_rebuilds_at_the_target():
    """Annealing stages that halve ε square the kernel (no rebuild) and still give exact
    log-sum-exps; the target ε always gets a fresh kernel."""
    x, y = _clouds(40, 30, seed=5)
    C = get_cost("sqeuclidean")(x, y)  # float64: squaring adds no visible rounding
    mask_x = torch.ones(2, 40, dtype=torch.bool)
    mask_y = torch.ones(2, 30, dtype=torch.bool)
    mask_y[1, 25:] = False
    target = torch.tensor([0.02, 0.05], dtype=torch.float64)
    geom = KernelGeometry(C, mask_x, mask_y, exact_eps=target)
    g = torch.Generator().manual_seed(2)
    pot = 0.1 * torch.randn(2, 30, generator=g, dtype=torch.float64)  # a dual potential g_j
    log_b = torch.full((2, 30), -np.log(30.0), dtype=torch.float64)
    log_b[1, 25:] = -torch.inf
    for eps_values, squared in [((0.16, 0.4), False), ((0.08, 0.2), True), ((0.04, 0.1), True),
                                ((0.02, 0.05), False)]:  # fmt: skip
        eps = torch.tensor(eps_values, dtype=torch.float64)
        h = log_b + pot / eps[:, None]
        want = torch.logsumexp(h[:, None, :] - C / eps[:, None, None], dim=2)
        builds = geom.rebuilds
        torch.testing.assert_close(geom.lse_over_cols(h, eps), want, rtol=1e-10, atol=1e-10)
        assert (geom.rebuilds == builds) == squared
        hx = torch.randn(2, 40, generator=g, dtype=torch.float64) - 3.0
        want_rows = torch.logsumexp(hx[:, :, None] - C / eps[:, None, None], dim=1)
        got_rows = geom.lse_over_rows(hx, eps)
        torch.testing.assert_close(got_rows[0], want_rows[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got_rows[1, :25], want_rows[1, :25], rtol=1e-10, atol=1e-10)


def test_kernel_geometry_large_single_problem_split_in_slabs():
    """A lone problem's products run over row slabs (n not a multiple of their count)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 301, 3, generator=g, dtype=torch.float64)
    y = torch.rand(1, 257, 3, generator=g, dtype=torch.float64)
    C = get_cost("sqeuclidean")(x, y)
    ones_x, ones_y = torch.ones(1, 301, dtype=torch.bool), torch.ones(1, 257, dtype=torch.bool)
    geom = KernelGeometry(C, ones_x, ones_y)
    assert geom._splits > 1
    eps = torch.tensor([0.05], dtype=torch.float64)
    hy = torch.randn(1, 257, generator=g, dtype=torch.float64)
    geom.lse_over_cols(hy, eps)  # builds the kernel around hy
    hy2 = hy + torch.rand(1, 257, generator=g, dtype=torch.float64)
    want_cols = torch.logsumexp(hy2[:, None, :] - C / eps, dim=2)
    torch.testing.assert_close(geom.lse_over_cols(hy2, eps), want_cols, rtol=1e-12, atol=1e-12)
    hx = geom.alpha + torch.rand(1, 301, generator=g, dtype=torch.float64)  # near the kernel
    want_rows = torch.logsumexp(hx[:, :, None] - C / eps, dim=1)
    torch.testing.assert_close(geom.lse_over_rows(hx, eps), want_rows, rtol=1e-12, atol=1e-12)
    assert geom.rebuilds == 1  # both answers came from the kernel


@pytest.mark.parametrize(("name", "p"), COSTS)
def test_online_and_dense_solves_agree(name, p):
    rng = np.random.default_rng(4)
    x, y = rng.random((400, 3)) + 0.1, rng.random((350, 3)) + 0.2
    a, b = rng.random(400) + 0.1, rng.random(350) + 0.1
    kw = dict(eps=0.1, cost=name, p=p, dtype="float64", tol=1e-8)
    dense = otcli.solve(x, y, a, b, geometry="dense", **kw)
    online = otcli.solve(x, y, a, b, geometry="online", **kw)
    assert (dense.geometry, online.geometry) == ("dense", "online")
    assert online.cost == pytest.approx(dense.cost, rel=1e-6)
    assert online.objective == pytest.approx(dense.objective, rel=1e-6)
    assert online.converged and dense.converged


def test_small_memory_budget_runs_online_and_matches_pot():
    rng = np.random.default_rng(5)
    x, y = rng.random((300, 2)), rng.random((250, 2))
    # C and Cᵀ in float64 would take 2 × 300 × 250 × 8 = 1.2 MB: a 100 kB budget forces online.
    r = otcli.solve(x, y, eps=0.02, dtype="float64", tol=1e-9, memory=100_000)
    assert r.geometry == "online"
    expected = ot.sinkhorn2(np.full(300, 1 / 300), np.full(250, 1 / 250), ot.dist(x, y), 0.02,
                            method="sinkhorn_log", numItermax=100000, stopThr=1e-12)  # fmt: skip
    assert r.cost == pytest.approx(expected, rel=1e-6)
    assert otcli.solve(x, y, eps=0.02, dtype="float64").geometry == "dense"


def test_batch_of_different_sizes_online_equals_one_by_one():
    rng = np.random.default_rng(6)
    xs = [rng.random((n, 3)) for n in (5, 80, 31)]
    ys = [rng.random((m, 3)) for m in (60, 2, 31)]
    batched = otcli.solve(xs, ys, eps=0.05, dtype="float64", geometry="online")
    for r, x, y in zip(batched, xs, ys, strict=True):
        single = otcli.solve(x, y, eps=0.05, dtype="float64", geometry="dense")
        # Each stops on its own once within tol (float64's), at its own iteration: the
        # costs agree to the largest cost (≤ 3 in the unit cube) times the marginal errors.
        bound = 3 * (r.marginal_error + single.marginal_error)
        assert abs(r.cost - single.cost) <= bound and bound < 1e-6


def test_online_float32_small_eps_converges_to_pot():
    """The default large-cloud path: float32, squared Euclidean (the fused float64 product on
    CPU), small ε. It must meet its tolerance on the plan it returns and match POT."""
    rng = np.random.default_rng(8)
    x, y = rng.random((300, 3)), rng.random((260, 3)) + 0.05
    r = otcli.solve(x, y, eps=5e-3, geometry="online")
    dense = otcli.solve(x, y, eps=5e-3, geometry="dense")
    assert r.geometry == "online" and r.converged, (r.marginal_error, r.iterations)
    a, b = np.full(300, 1 / 300), np.full(260, 1 / 260)
    M = ot.dist(x, y)
    P = ot.sinkhorn(a, b, M, 5e-3, method="sinkhorn_log", stopThr=1e-9, numItermax=100000)
    assert r.cost == pytest.approx(float((P * M).sum()), rel=1e-5)
    assert r.cost == pytest.approx(dense.cost, rel=1e-5)
    plan = r.plan()
    assert np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum() <= r.tol


def test_dense_refused_over_budget():
    x = np.zeros((10, 2))
    with pytest.raises(otcli.OtcliError, match=r"dense needs 1\.6 KiB for C and Cᵀ"):
        otcli.solve(x, x + 1, geometry="dense", memory=1000, dtype="float64")


@pytest.fixture
def pair_files(tmp_path):
    rng = np.random.default_rng(7)
    np.save(tmp_path / "a.npy", rng.random((40, 3)))
    np.save(tmp_path / "b.npy", rng.random((30, 3)))
    return tmp_path / "a.npy", tmp_path / "b.npy"


def test_cli_geometry_and_memory(capfd, pair_files):
    results = {}
    for args in (["--geometry", "dense"], ["--geometry", "online"], ["--memory", "2K"]):
        code, out, err = otdist(capfd, *pair_files, "--json", *args)
        assert code == 0, err
        got = json.loads(out)
        results[" ".join(args)] = (got["geometry"], got["cost"])
    assert results["--geometry dense"][0] == "dense"
    assert results["--geometry online"][0] == "online"
    assert results["--memory 2K"][0] == "online"
    # Online is bit-for-bit the log-domain plan; the CPU's dense path uses kernel products,
    # equal to rounding (float32 here).
    assert results["--geometry online"][1] == results["--memory 2K"][1]
    assert results["--geometry dense"][1] == pytest.approx(results["--memory 2K"][1], rel=1e-5)


def test_cli_npy_coupling_refused_over_budget(capfd, pair_files, tmp_path):
    out = tmp_path / "P.npy"
    code, _, err = otdist(capfd, *pair_files, "--memory", "1K", "--coupling", out)
    assert code == 2
    assert err == (
        f"Error: --coupling: {out}: a dense 40×30 float64 matrix needs 9.4 KiB, over the memory "
        "budget of 1.0 KiB; write .parquet or .csv (long format i, j, value of the entries above "
        "--coupling-threshold) instead\n"
    )
    assert not out.exists()


def test_cli_coupling_topk(capfd, pair_files, tmp_path):
    out = tmp_path / "P.csv"
    code, _, err = otdist(capfd, *pair_files, "--coupling", out, "--coupling-topk", 3,
                          "--coupling-threshold", 0, "--dtype", "float64")  # fmt: skip
    assert code == 0, err
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    i, j, v = table[:, 0].astype(int), table[:, 1].astype(int), table[:, 2]
    assert np.bincount(i, minlength=40).tolist() == [3] * 40
    # Oracle: the 3 largest entries of each row of POT's plan for the same problem.
    x, y = np.load(pair_files[0]), np.load(pair_files[1])
    P = ot.sinkhorn(np.full(40, 1 / 40), np.full(30, 1 / 30), ot.dist(x, y), 0.1,
                    method="sinkhorn_log", stopThr=1e-12, numItermax=100000)  # fmt: skip
    top = np.sort(np.argsort(-P, axis=1)[:, :3], axis=1)
    got = np.sort(j.reshape(40, 3), axis=1)
    np.testing.assert_array_equal(got, top)
    np.testing.assert_allclose(v, P[i, j], rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "Error: --memory: bad size 'lots'; use bytes or a number with K, M, G or T\n"),
        (["--coupling-topk", "0", "--coupling", "P.csv"], "Error: --coupling-topk: must be ≥ 1, got 0\n"),
        (["--coupling-topk", "2", "--coupling", "P.npy"], "Error: --coupling-topk: applies to .parquet, .csv and .tsv, not .npy\n"),
    ],
)  # fmt: skip
def test_cli_geometry_option_errors(capfd, pair_files, args, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = otdist(capfd, *pair_files, *args)
    assert (code, out, err) == (2, "", message)
    assert not (tmp_path / "P.npy").exists()
    assert not (tmp_path / "P.csv").exists()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_path_survives_where_plain_kernel_sinkhorn_underflows(dtype):
    """Second cloud shifted by +1 at ε = 1e-3: exp(−C/ε) underflows and POT's kernel
    ``sinkhorn`` returns ~1e-45; the stabilised kernel must match POT's log-domain answer."""
    rng = np.random.default_rng(8)
    x, y = rng.random((60, 3)), rng.random((60, 3)) + 1.0
    u = np.full(60, 1 / 60)
    M = ot.dist(x, y)
    assert ot.sinkhorn2(u, u, M, 1e-3, method="sinkhorn", warn=False) < 1e-3  # POT's breaks
    # POT's log-domain solver needs >50,000 iterations here; its ε-scaling solver converges.
    plan = ot.bregman.sinkhorn_epsilon_scaling(u, u, M, 1e-3, numItermax=20000, stopThr=1e-12,
                                               warn=False)  # fmt: skip
    assert np.abs(plan.sum(1) - u).sum() + np.abs(plan.sum(0) - u).sum() < 1e-4
    expected = float((plan * M).sum())
    r = otcli.solve(x, y, eps=1e-3, dtype=dtype, max_iter=3000)
    assert r.geometry == "dense"
    assert np.isfinite(r.cost)
    assert r.cost == pytest.approx(expected, rel=1e-5)
    assert r.cost == pytest.approx(ot.emd2(u, u, M), rel=1e-4)  # ε small against the costs

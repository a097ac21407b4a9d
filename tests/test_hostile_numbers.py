"""Hostile numbers (issue 16, items 3, 16, 17, 18): values and options at the edges of float64.

Huge but finite coordinates, tiny or huge option values, weights whose sum overflows, and
plans that are not transport plans must end in a clear refusal (exit 2), a solver failure
(exit 1) or a right answer: never an OverflowError, never a wrong number with exit 0.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import ot
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import otcli
from conftest import otdist
from otcli.cloud import make_cloud
from otcli.errors import SolverError
from otcli.solver import eps_schedule

pytestmark = pytest.mark.usefixtures("single_thread")


def csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def json_run(capfd: pytest.CaptureFixture[str], *args: object) -> dict[str, object]:
    code, out, err = otdist(capfd, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def one_error(err: str, where: object) -> str:
    assert err.startswith(f"Error: {where}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --- item 3: huge but finite values ----------------------------------------------------------


def test_coordinates_whose_costs_overflow_float32(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """1e20 squared overflows float32: refused with the way out, which then works."""
    big = csv(tmp_path / "big.csv", "x\n1e20\n0\n")
    code, out, err = otdist(capfd, big, big)
    assert code == 2 and out == ""
    one_error(err, big)
    assert "beyond what float32 holds safely" in err and "use --dtype float64" in err
    # Costs 0 and 1e40 fit float64; the exact optimum is the identity plan, ⟨P, C⟩ = 0.
    assert json_run(capfd, big, big, "--exact")["cost"] == 0.0
    # At ε = 0.05 × the mean cost 5e39 the 2×2 plan has P₁₂/P₁₁ = exp(−C₁₂/2ε) = e⁻⁴⁰.
    fields = json_run(capfd, big, big, "--dtype", "float64", "--eps-rel", "0.05")
    assert fields["cost"] == pytest.approx(1e40 / (1 + math.exp(40)), rel=1e-9)
    assert fields["marginal_error"] <= fields["tol"]


def _uint64(path: Path) -> Path:
    np.save(path, np.array([[2**64 - 1], [0]], dtype=np.uint64))
    return path


def _decimal(path: Path) -> Path:
    col = pa.array([Decimal("1e30"), Decimal(0), Decimal(3)], pa.decimal128(38, 0))
    pq.write_table(pa.table({"x": col}), path)
    return path


@pytest.mark.parametrize(
    ("name", "make"), [("u.npy", _uint64), ("d.parquet", _decimal)], ids=["uint64", "decimal"]
)
def test_huge_values_from_every_format(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, name: str, make: object
) -> None:
    path = make(tmp_path / name)  # type: ignore[operator]
    code, _, err = otdist(capfd, path, path)
    assert code == 2
    one_error(err, path)
    assert "use --dtype float64" in err


@pytest.mark.parametrize("text", ["x\n1e308\n-1e308\n", "x\n1e200\n0\n", "x,y\n1e160,0\n0,1e160\n"])
def test_costs_that_overflow_float64_are_refused(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = csv(tmp_path / "huge.csv", text)
    for dtype in ("float32", "float64"):
        code, _, err = otdist(capfd, path, path, "--dtype", dtype)
        assert code == 2
        one_error(err, path)
        assert "rescale the coordinates" in err and "--dtype float64" not in err


def test_cosine_norms_that_overflow_float32(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """|x|² = 1e40 overflows float32: every cosine cost came out 1 (cost 1, true 0)."""
    path = csv(tmp_path / "c.csv", "x,y\n1e20,0\n0,1e20\n")
    code, _, err = otdist(capfd, path, path, "--cost", "cosine")
    assert code == 2
    one_error(err, path)
    assert "use --dtype float64" in err
    # C = [[0, 1], [1, 0]] at ε = 0.1: P₁₂/P₁₁ = e⁻¹⁰, so ⟨P, C⟩ = 1/(1 + e¹⁰).
    fields = json_run(capfd, path, path, "--cost", "cosine", "--dtype", "float64")
    assert fields["cost"] == pytest.approx(1 / (1 + math.exp(10)), rel=1e-6)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--eps", "5e-324"], "--eps: ε = 4.94066e-324 is too small to compute with (1/ε overflows); use ε ≥ 1e-300"),
        (["--eps", "1e-310"], "--eps: ε = 1e-310 is too small to compute with (1/ε overflows); use ε ≥ 1e-300"),
        (["--eps-rel", "1e-320"], "--eps-rel: ε = 9.99989e-321 is too small to compute with (1/ε overflows); use ε ≥ 1e-300"),
        (["--tol", "1e300"], "--tol: must be at most 1, got 1e+300: a marginal error of 1 already leaves half the mass misplaced"),
        (["--memory", "inf"], "--memory: bad size 'inf'; use bytes or a number with K, M, G or T"),
        (["--memory", "1e400"], "--memory: bad size '1e400'; use bytes or a number with K, M, G or T"),
        (["--memory", "-nan"], "--memory: bad size '-nan'; use bytes or a number with K, M, G or T"),
        (["--memory", "1e30"], "--memory: must be at most 1 EiB (2^60 bytes), got 1e+30 bytes"),
    ],
)  # fmt: skip
def test_extreme_option_values(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], expected: str
) -> None:
    a = csv(tmp_path / "a.csv", "x,y\n0,0\n1,1\n")
    code, out, err = otdist(capfd, a, a, *args)
    assert (code, out, err) == (2, "", f"Error: {expected}\n")


@pytest.mark.parametrize(
    "args",
    [
        # 10¹³ annealing stages: an 8 TB schedule before (RuntimeError, or the memory gone).
        ["--max-iter", "1000000000000", "--scaling", "0.999999999999"],
        # W_p = cost^(1/p) with 1/p = 1e300: OverflowError before; now W_p is inf (null).
        ["--cost", "pnorm", "--p", "1e-300", "--eps", "10"],
    ],
    ids=["scaling-near-1", "tiny-p"],
)
def test_extreme_options_that_still_solve(
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    monkeypatch.setattr("otcli.solver.MAX_ANNEALING_STAGES", 50)  # 10⁴: slow
    a = csv(tmp_path / "a.csv", "x,y\n0,0\n1,0.5\n2,2\n")
    fields = json_run(capfd, a, a, *args)
    assert math.isfinite(fields["cost"]) and fields["marginal_error"] <= 1  # type: ignore[arg-type]


def test_eps_schedule_counts_stages_in_logs() -> None:
    """C_max / ε = 1e330 overflows float64; the schedule is still finite and capped: it
    starts ANNEALING_START × ε above the target (64ε: 6 halvings), not at C_max."""
    f64 = torch.float64
    sched = eps_schedule(
        torch.tensor([1e30], dtype=f64), torch.tensor([1e-300], dtype=f64), 0.5, 50
    )
    assert sched.shape == (6, 1) and torch.isfinite(sched).all()
    assert sched[0, 0] == 64e-300 and sched[-1, 0] == 64e-300 * 0.5**5
    assert eps_schedule(torch.tensor([1e30], dtype=f64), torch.tensor([1.0], dtype=f64), 0.5, 3)[
        :, 0
    ].tolist() == [64.0, 32.0, 16.0]
    # A factor just below 1 would need 10^13 stages: no more than the loop can run.
    sched = eps_schedule(torch.tensor([1e6]), torch.tensor([1e-6], dtype=f64), 1 - 1e-12, 7)
    assert sched.shape == (7, 1)
    exact = eps_schedule(torch.tensor([4.0]), torch.tensor([1.0], dtype=f64), 0.5)
    assert exact[:, 0].tolist() == [4.0, 2.0]
    with pytest.raises(SolverError, match="non-finite"):
        eps_schedule(torch.tensor([math.inf]), torch.tensor([1.0], dtype=f64), 0.5)


# --- item 16: a plan with marginal error above 1 is a failure ---------------------------------


def test_tiny_eps_on_the_moons_fails_instead_of_a_wrong_cost(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, moons: tuple[np.ndarray, np.ndarray]
) -> None:
    """--eps 1e-30: cost 26.19 (true 1.746) with marginal error 28 and exit 0 before."""
    paths = []
    for name, pts in zip(("outer.npy", "inner.npy"), moons, strict=True):
        np.save(tmp_path / name, pts)
        paths.append(tmp_path / name)
    code, out, err = otdist(capfd, *paths, "--eps", "1e-30", "--json")
    assert code == 1 and out == "", err
    lines = err.splitlines()
    assert lines[-1].startswith(f"Error: {paths[0]} vs {paths[1]}: no transport plan found")
    assert "--eps-rel 0.05" in lines[-1] and "Traceback" not in err


def test_clouds_far_apart_fail_instead_of_a_wrong_cost(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, rng: np.random.Generator
) -> None:
    """Clouds 1e8 apart: cost 6e21 (true 3e16), marginal error 4e5 and exit 0 before."""
    x = rng.normal(size=(20, 3))
    shift = np.full(3, 1e8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x + shift)
    paths = tmp_path / "x.npy", tmp_path / "y.npy"
    code, out, err = otdist(capfd, *paths, "--json")
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"Error: {paths[0]} vs {paths[1]}: no transport plan")
    # The way out it names: for a translation the exact optimum is |t|² (the identity plan).
    exact = json_run(capfd, *paths, "--exact")["cost"]
    assert exact == pytest.approx(float(shift @ shift), rel=1e-12)


# --- item 18: a float64 failure does not suggest float64 ---------------------------------------


def test_float64_failure_suggests_what_can_help(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, rng: np.random.Generator
) -> None:
    """Coordinates about 1e18 in float64: the message said "try --dtype float64" before."""
    np.save(tmp_path / "x.npy", rng.normal(size=(20, 3)) * 1e18)
    np.save(tmp_path / "y.npy", rng.normal(size=(25, 3)) * 1e18 + 1e18)
    code, out, err = otdist(capfd, tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64")
    assert code == 1 and out == ""
    error = err.splitlines()[-1]
    assert error.startswith("Error: ") and "--dtype float64" not in error
    assert "--eps-rel 0.05" in error and "--exact" in error


# --- item 17: weights whose sum overflows -----------------------------------------------------


@pytest.mark.filterwarnings("error")
def test_weights_whose_sum_overflows_are_normalised() -> None:
    cloud = make_cloud(np.zeros((3, 1)), [1e308, 1e308, 1e308])
    np.testing.assert_array_equal(cloud.weights, np.full(3, 1 / 3))
    cloud = make_cloud(np.zeros((2, 1)), [1.7e308, 0.85e308])
    np.testing.assert_allclose(cloud.weights, [2 / 3, 1 / 3], rtol=1e-15)


def test_huge_weights_give_the_same_cost_as_their_ratios(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Cost 0.0 (true ≈ 9) and a raw numpy warning on stderr before."""
    huge = csv(tmp_path / "huge.csv", "x,w\n0,1e308\n1,1e308\n2,1e308\n")
    ones = csv(tmp_path / "ones.csv", "x,w\n0,1\n1,1\n2,1\n")
    far = csv(tmp_path / "far.csv", "x,w\n3,1\n4,1\n5,1\n")
    options = ("--weights", "w", "--quiet", "--eps", "1", "--dtype", "float64")
    code, out_huge, err = otdist(capfd, huge, far, *options)
    assert code == 0 and err == ""
    code, out_ones, err = otdist(capfd, ones, far, *options)
    assert code == 0 and err == ""
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[3.0], [4.0], [5.0]])
    cost = (x - y.T) ** 2
    plan = ot.sinkhorn(np.full(3, 1 / 3), np.full(3, 1 / 3), cost, 1.0, stopThr=1e-14)
    assert out_huge == out_ones
    assert float(out_huge) == pytest.approx(float((plan * cost).sum()), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "cost", ["sqeuclidean", "euclidean", "cityblock", "pnorm:3", "pnorm:0.5", "pnorm:1.5"]
)
def test_the_quick_range_bound_never_passes_a_pair_the_probe_refuses(
    monkeypatch: pytest.MonkeyPatch, dtype: str, cost: str
) -> None:
    """check_cost_range skips its torch probe where a box bound says the costs are far from
    both ends of the dtype's range; at every scale from 1e-30 to 1e300 the outcome is the
    probe's own."""
    import otcli.checks
    from otcli.costs import get_cost
    from otcli.errors import InputError

    name, _, p = cost.partition(":")
    cost_fn = get_cost(name, float(p)) if p else get_cost(name)
    rng = np.random.default_rng(7)
    skipped = 0
    for exponent in range(-30, 301, 3):
        pts = rng.standard_normal((2, 5, 3)) * 10.0**exponent
        x, y = (make_cloud(q, source=s) for q, s in zip(pts, "xy", strict=True))
        fast = otcli.checks.far_below  # the bound, then the probe on its own
        with monkeypatch.context() as m:
            m.setattr(otcli.checks, "far_below", lambda *a: False)
            try:
                otcli.checks.check_cost_range(x, y, cost_fn, dtype)
                probe_ok = True
            except InputError:
                probe_ok = False
        lo = np.minimum(pts[0].min(0), pts[1].min(0))
        hi = np.maximum(pts[0].max(0), pts[1].max(0))
        info = torch.finfo(getattr(torch, dtype))
        if fast(lo, hi, cost_fn.power, info.max * otcli.checks.COST_HEADROOM, info.tiny * 1024):
            skipped += 1
            assert probe_ok, (exponent, cost, dtype)
    assert skipped > 5  # the bound does decide the ordinary scales


def test_costs_too_small_for_float32_are_refused_not_reported_as_zero(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Coordinates of 1e-25: every float32 cost underflowed to 0 and otdist printed cost 0
    with exit 0. Now exit 2 with the fix; float64 solves it (cost as POT's on the data)."""
    rng = np.random.default_rng(7)
    x, y = rng.random((20, 3)) * 1e-25, (rng.random((25, 3)) + 0.5) * 1e-25
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    code, out, err = otdist(capfd, tmp_path / "x.npy", tmp_path / "y.npy", "--eps", "6e-52")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
    assert "lose their digits in float32" in err and "use --dtype float64" in err
    fields = json_run(capfd, tmp_path / "x.npy", tmp_path / "y.npy", "--eps", "6e-52",
                      "--dtype", "float64")  # fmt: skip
    M = ot.dist(x, y)
    want = ot.sinkhorn2(np.full(20, 1 / 20), np.full(25, 1 / 25), M / 1e-50, 6e-52 / 1e-50,
                        method="sinkhorn_log", stopThr=1e-12, numItermax=100000) * 1e-50  # fmt: skip
    assert fields["cost"] == pytest.approx(float(want), rel=1e-4)
    # at every scale down to where float64 itself gives up: solved or refused, never 0
    for scale in (1e-12, 1e-17, 1e-18, 1e-19, 1e-21, 1e-40, 1e-150, 1e-200):
        for dtype in ("float32", "float64"):
            try:
                r = otcli.solve(x / 1e-25 * scale, y / 1e-25 * scale, eps_rel=0.05, dtype=dtype)
                message = ""
            except otcli.OtcliError as exc:
                message = str(exc)
            if message:
                assert "lose their digits" in message or "vanish" in message or "ε" in message
            else:
                assert r.cost / scale**2 == pytest.approx(0.90683952, rel=1e-6)


# --- the objective and divergence at any ε and reach --------------------------------------------


@pytest.mark.parametrize("eps", [1e-3, 1e-1, 1e1, 1e3, 1e6, 1e8, 1e10, 1e12])
def test_objective_and_divergence_at_any_eps(moons, eps) -> None:
    """OT_ε = ⟨P, C⟩ + ε KL(P‖a⊗b) ≥ ⟨P, C⟩ at every ε (at 1e6 it was below, at 1e10 −2756);
    against POT's log-domain objective where POT runs, and against the large-ε limits where
    ⟨P, C⟩ and OT_ε tend to ⟨a⊗b, C⟩ and S_ε to ⟨a⊗b, C⟩ − ½⟨a⊗a, C⟩ − ½⟨b⊗b, C⟩."""
    import otcli

    x, y = moons
    res = otcli.divergence(x, y, eps=eps, dtype="float64")
    xy = res.xy
    assert xy.objective >= xy.cost * (1 - 1e-12)
    cxy = ((x[:, None] - y[None]) ** 2).sum(-1)
    if 0.1 <= eps <= 10:  # where POT's log-domain solver converges on the moons
        ot = pytest.importorskip("ot")
        a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
        plan = ot.sinkhorn(a, b, cxy, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=200_000)
        pos = plan > 0
        kl = (plan[pos] * np.log(plan[pos] / np.outer(a, b)[pos])).sum()
        assert xy.objective == pytest.approx((plan * cxy).sum() + eps * kl, rel=1e-6)
    if eps >= 1e6:
        mean = lambda p, q: ((p[:, None] - q[None]) ** 2).sum(-1).mean()  # noqa: E731
        assert xy.cost == pytest.approx(mean(x, y), rel=1e-6)
        assert xy.objective == pytest.approx(mean(x, y), rel=2e-4)
        limit = mean(x, y) - mean(x, x) / 2 - mean(y, y) / 2
        assert res.divergence == pytest.approx(limit, rel=2e-3)


@pytest.mark.parametrize("reach", [0.3, 1.0, 10.0, 1e3, 1e5, 1e10, 1e154])
def test_unbalanced_objective_never_above_the_balanced_one(moons, reach) -> None:
    """Relaxing the marginals can only lower OT_ε; at a large reach it is the balanced value
    (a reach of 1e5 gave 1.971 above the balanced 1.896, 1e154 gave 7.4e296)."""
    import otcli

    x, y = moons
    balanced = otcli.solve(x, y, eps=0.1, dtype="float64")
    relaxed = otcli.solve(x, y, eps=0.1, dtype="float64", reach=reach)
    assert relaxed.objective <= balanced.objective + 1e-6
    if reach >= 1e3:
        assert relaxed.objective == pytest.approx(balanced.objective, rel=1e-5)


@pytest.mark.parametrize("eps", [1e10, 1e15, 1e30])
def test_float32_objective_at_huge_eps_stays_at_its_limit(moons, eps) -> None:
    """In float32 the plan's marginal error (~1e-6) times ε = 1e15 made the objective 381
    for a true 20.07: it is bounded by ⟨a⊗b, C⟩, the independent coupling's value."""
    import otcli

    x, y = moons
    res = otcli.divergence(x, y, eps=eps)  # float32
    mean = lambda p, q: ((p[:, None] - q[None]) ** 2).sum(-1).mean()  # noqa: E731
    assert res.xy.objective == pytest.approx(mean(x, y), rel=1e-5)
    limit = mean(x, y) - mean(x, x) / 2 - mean(y, y) / 2
    assert res.divergence == pytest.approx(limit, rel=1e-4)

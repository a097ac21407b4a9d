"""Free-support Sinkhorn barycenters: ``otcli.barycenter`` and ``otdist barycenter``.

Oracles: POT's free-support barycenters (``ot.bregman.free_support_sinkhorn_barycenter``,
``ot.lp.free_support_barycenter``), both evaluated with the same OT_ε computed from POT's
converged log-domain ``ot.sinkhorn`` plan; POT's plan for the barycentric projection;
closed forms (one cloud, translated copies: S_ε(X + s, X) = |s|², Gaussians' mean);
scikit-learn's iris for data nobody here wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import otcli
from conftest import otdist
from otcli.barycenters import _barycentric_projection, _union, kmeans_plus_plus

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parent.parent
MOONS_A = ROOT / "sample_data" / "moons_a.csv"
MOONS_B = ROOT / "sample_data" / "moons_b.csv"


def _moons() -> np.ndarray:
    return otcli.read_cloud(str(MOONS_A)).points


def _worst_match(z: np.ndarray, x: np.ndarray) -> float:
    """The largest distance between z's and x's points under their best pairing (the two
    clouds as sets: the barycenter's points come in no particular order)."""
    d = ((z[:, None] - x[None]) ** 2).sum(-1)
    i, j = linear_sum_assignment(d)
    return float(np.sqrt(d[i, j].max()))


def _pot_ot_eps(z: np.ndarray, y: np.ndarray, eps: float) -> float:
    """OT_ε(μ_z, ν_y) = ⟨P, C⟩ + ε KL(P‖a⊗b), uniform masses, from POT's converged
    log-domain plan in float64."""
    ot = pytest.importorskip("ot")
    a, b = np.full(len(z), 1 / len(z)), np.full(len(y), 1 / len(y))
    cost = ot.dist(z, y)
    plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=100_000, stopThr=1e-12)
    pos = plan > 0
    kl = float((plan[pos] * np.log(plan[pos] / np.outer(a, b)[pos])).sum())
    return float((plan * cost).sum()) + eps * kl


# --- against POT --------------------------------------------------------------------------------


def test_objective_no_worse_than_pots_free_support_barycenters():
    """Iris's three classes (4-D, 50 points each), weights 0.5/0.3/0.2, K = 20, ε = 0.1:
    ours, POT's Sinkhorn barycenter and POT's exact (LP) barycenter, all from the same
    k-means++ support, scored by one OT_ε from POT's converged plans."""
    ot = pytest.importorskip("ot")
    from sklearn.datasets import load_iris

    data, target = load_iris(return_X_y=True)
    clouds = [data[target == k] for k in range(3)]
    w, eps, count = np.array([0.5, 0.3, 0.2]), 0.1, 20

    def score(z: np.ndarray) -> float:
        return sum(wk * _pot_ot_eps(z, c, eps) for wk, c in zip(w, clouds, strict=True))

    ours = otcli.barycenter(clouds, w, points=count, eps=eps)
    union, mass = _union([otcli.make_cloud(c) for c in clouds], w)
    start = kmeans_plus_plus(union, mass, count, np.random.default_rng(0))
    masses = [np.full(50, 1 / 50)] * 3
    pot_sinkhorn = ot.bregman.free_support_sinkhorn_barycenter(
        clouds, masses, start, eps, weights=w, numItermax=100, numInnerItermax=10_000,
        stopThr=1e-10,
    )  # fmt: skip
    pot_exact = ot.lp.free_support_barycenter(clouds, masses, start, weights=w, numItermax=100)
    got = score(ours.points)
    assert got <= 1.01 * score(pot_sinkhorn)
    assert got <= 1.01 * score(pot_exact)
    assert got < 0.6 * score(start)  # it moved: the start is far worse
    # The objective it reports is the one POT's plans give at its points.
    assert ours.objective == pytest.approx(got, rel=1e-5)
    assert ours.converged and ours.iterations == len(ours.movements) == len(ours.history) - 1
    assert all(
        b <= a + 1e-6 * abs(a) for a, b in zip(ours.history[:-1], ours.history[1:], strict=True)
    )


def test_barycentric_projection_is_pots_plan_times_y_over_a():
    """T(x_i) = (P y)_i / a_i from POT's converged log-domain plan, to 1e-4 of the spread."""
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(55, 3)) * 0.7 + 1.0
    b = rng.uniform(0.5, 2.0, 55)
    r = otcli.solve(x, y, None, b, eps=0.05, dtype="float64")
    bn = b / b.sum()
    plan = ot.sinkhorn(
        np.full(40, 1 / 40), bn, ot.dist(x, y), 0.05, method="sinkhorn_log",
        numItermax=100_000, stopThr=1e-13,
    )  # fmt: skip
    expected = plan @ y * 40
    np.testing.assert_allclose(_barycentric_projection(r), expected, atol=1e-4 * y.std(), rtol=0)


# --- closed forms -------------------------------------------------------------------------------


def test_one_cloud_with_k_equal_n_at_small_eps_is_that_cloud():
    x = _moons()
    r = otcli.barycenter([x], points=len(x), eps=1e-3)
    assert _worst_match(r.points, x) < 1e-6
    assert r.converged


def test_debiased_barycenter_of_one_cloud_from_elsewhere_is_that_cloud():
    """S_ε(μ, ν) = 0 only for μ = ν: started from a noisy copy, the support finds the cloud."""
    x = _moons()
    start = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
    assert _worst_match(start, x) > 0.05
    r = otcli.barycenter([x], init=start, eps=0.01, divergence=True, outer_tol=1e-5)
    assert _worst_match(r.points, x) < 1e-4
    assert abs(r.objective) < 1e-6


def test_two_translated_copies_meet_half_way():
    """X and X + t, equal weights: for squared Euclidean costs OT_ε(Z + s, X) = OT_ε(Z, X)
    + 2s·(z̄ − x̄) + |s|², so the debiased barycenter is X + t/2, where S = |t|²/4."""
    x = _moons()
    shift = np.array([3.0, -1.0])
    r = otcli.barycenter([x, x + shift], points=len(x), eps=0.01, divergence=True, outer_tol=1e-5)
    assert _worst_match(r.points, x + shift / 2) < 1e-4
    assert r.objective == pytest.approx(shift @ shift / 4, rel=1e-5)
    # The biased one is shrunk by the entropy but centred at the half-way mean all the same.
    biased = otcli.barycenter([x, x + shift], points=len(x), eps=0.01)
    np.testing.assert_allclose(biased.points.mean(0), x.mean(0) + shift / 2, atol=1e-6)


def test_barycenter_of_gaussians_has_the_averaged_mean_and_covariance():
    """Two Gaussians with one covariance: the W₂ barycenter is the Gaussian with the
    w-averaged mean and that covariance. The support's mean is Σ_k w_k x̄_k to the solves'
    marginal error (Σ_i a_i T_k(z_i) = Σ_j b_j y_j); the covariance within 5%."""
    rng = np.random.default_rng(3)
    a = rng.normal([0.0, 0.0], 0.5, (150, 2))
    b = rng.normal([4.0, 2.0], 0.5, (150, 2))
    r = otcli.barycenter([a, b], [0.25, 0.75], points=60, eps=0.02, divergence=True)
    np.testing.assert_allclose(r.points.mean(0), 0.25 * a.mean(0) + 0.75 * b.mean(0), atol=1e-4)
    cov = 0.25 * np.cov(a.T, bias=True) + 0.75 * np.cov(b.T, bias=True)
    np.testing.assert_allclose(np.cov(r.points.T, bias=True), cov, atol=0.05 * np.trace(cov) / 2)


def test_weights_one_and_zero_give_the_first_cloud():
    x = _moons()
    y = otcli.read_cloud(str(MOONS_B)).points
    r = otcli.barycenter([x, y], [1.0, 0.0], points=len(x), eps=1e-3)
    assert _worst_match(r.points, x) < 1e-6
    np.testing.assert_array_equal(r.cloud_weights, [1.0, 0.0])
    # The zero-weight cloud's solve is still reported, but counts for nothing.
    assert r.objective == pytest.approx(r.results[0].objective, rel=1e-12)
    assert r.results[1].objective > 10 * r.results[0].objective


def test_one_support_point_is_the_weighted_mean_of_every_cloud():
    """K = 1: the one plan of each cloud is b_k itself, so the objective is
    Σ_k w_k Σ_j b_kj |z − y_kj|² + constants, least at z = Σ_k w_k ȳ_k (masses b_k given
    per point); the self term of one point is 0, so the debiased answer is the same."""
    rng = np.random.default_rng(7)
    clouds = [rng.normal(size=(20, 3)) + k for k in range(3)]
    masses = [rng.uniform(0, 1, 20) for _ in range(3)]
    w = np.array([0.2, 0.3, 0.5])
    expected = sum(wk * (b / b.sum()) @ c for wk, b, c in zip(w, masses, clouds, strict=True))
    for divergence in (False, True):
        r = otcli.barycenter(
            clouds, w * 7, points=1, masses=masses, eps=0.1, divergence=divergence, dtype="float64"
        )
        np.testing.assert_allclose(r.points[0], expected, atol=1e-8)


def test_batched_solves_equal_one_at_a_time():
    """Every cloud is solved against the support in one batched call; the per-cloud results
    at the returned points are what otcli.solve gives for each pair alone, and the whole
    run with one pair per batched solve (max_batch 1) gives the same barycenter."""
    x, y = _moons(), otcli.read_cloud(str(MOONS_B)).points
    r = otcli.barycenter([x, y, x[::2]], [1, 2, 1], points=12, eps=0.05, dtype="float64")
    for res, cloud in zip(r.results, [x, y, x[::2]], strict=True):
        alone = otcli.solve(r.points, cloud, eps=0.05, dtype="float64")
        assert res.objective == pytest.approx(alone.objective, rel=1e-7)
    config = otcli.make_config(eps=0.05, dtype="float64").with_(max_batch=1)
    one = otcli.barycenter([x, y, x[::2]], [1, 2, 1], points=12, config=config)
    np.testing.assert_allclose(one.points, r.points, atol=1e-6)
    assert one.objective == pytest.approx(r.objective, rel=1e-7)


def test_the_seed_picks_the_start_and_the_answer_is_reproducible():
    x, y = _moons(), otcli.read_cloud(str(MOONS_B)).points
    first = otcli.barycenter([x, y], points=6, eps=0.05, outer_iter=0)
    again = otcli.barycenter([x, y], points=6, eps=0.05, outer_iter=0)
    other = otcli.barycenter([x, y], points=6, eps=0.05, outer_iter=0, seed=1)
    np.testing.assert_array_equal(first.points, again.points)
    assert not np.array_equal(first.points, other.points)
    assert first.iterations == 0 and not first.converged and len(first.history) == 1


def test_kmeans_plus_plus_picks_distinct_points_first_then_repeats():
    x = _moons()
    mass = np.full(len(x), 1 / len(x))
    every = kmeans_plus_plus(x, mass, len(x), np.random.default_rng(0))
    assert sorted(map(tuple, every)) == sorted(map(tuple, x))
    more = kmeans_plus_plus(x, mass, len(x) + 5, np.random.default_rng(0))
    assert {tuple(p) for p in more} == {tuple(p) for p in x}
    massless = kmeans_plus_plus(x, np.r_[np.zeros(10), np.ones(5)], 5, np.random.default_rng(0))
    assert sorted(map(tuple, massless)) == sorted(map(tuple, x[10:]))


def test_eps_rel_is_fixed_once_from_the_start():
    x = _moons()
    r = otcli.barycenter([x, x + 1.0], points=8, eps_rel=0.05)
    start = otcli.barycenter([x, x + 1.0], points=8, eps_rel=0.05, outer_iter=0)
    scales = [((start.points[:, None] - c[None]) ** 2).sum(-1).mean() for c in (x, x + 1.0)]
    assert r.eps == pytest.approx(0.05 * np.mean(scales), rel=1e-9)
    assert {res.eps for res in r.results} == {r.eps}


def test_result_repr_and_fields():
    x = _moons()
    r = otcli.barycenter([x, x + 1.0], points=5, eps=0.05, divergence=True)
    assert repr(r).startswith("BarycenterResult(points=5, dim=2, clouds=2, divergence=")
    assert r.points.shape == (5, 2) and not r.points.flags.writeable
    np.testing.assert_array_equal(r.weights, np.full(5, 0.2))
    assert r.columns == ("x", "y") or r.columns == ("0", "1")
    # A DivergenceResult per cloud, sharing the barycenter's own term.
    assert r.results[0].xx is r.results[1].xx
    expected = sum(0.5 * res.divergence for res in r.results)
    assert r.objective == pytest.approx(expected, rel=1e-12)


def test_the_function_survives_importing_its_module():
    import otcli.barycenters

    assert callable(otcli.barycenter) and otcli.barycenter.__name__ == "barycenter"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x: otcli.barycenter([x, x[:, :1]], points=3), otcli.InputError,
         "clouds[1]: points have 1 coordinates but clouds[0] has 2; every cloud of a "
         "barycenter needs the same dimension"),
        (lambda x: otcli.barycenter([x, x], [1.0], points=3), otcli.OptionError,
         "weights: 1 weight(s) for 2 clouds; give one per cloud"),
        (lambda x: otcli.barycenter([x, x], [1.0, -1.0], points=3), otcli.OptionError,
         "weights: weight -1 of cloud 2 is negative; weights are ≥ 0"),
        (lambda x: otcli.barycenter([x, x], [0, 0], points=3), otcli.OptionError,
         "weights: all weights are zero; at least one cloud needs a positive weight"),
        (lambda x: otcli.barycenter([x], points=0), otcli.OptionError,
         "points: must be a positive integer, got 0"),
        (lambda x: otcli.barycenter([x]), otcli.OptionError,
         "points: give the number of support points K (e.g. 100)"),
        (lambda x: otcli.barycenter([x], points=3, cost="euclidean"), otcli.OptionError,
         "cost: a barycenter's support update z = Σ_k w_k T_k(z) minimises the objective for "
         "the sqeuclidean cost only, not euclidean; use cost='sqeuclidean'"),
        (lambda x: otcli.barycenter([x], points=3, reach=1.0), otcli.OptionError,
         "reach: a barycenter is computed with balanced OT; drop reach / rho"),
        (lambda x: otcli.barycenter([x], points=3, epsilon=1.0), otcli.OptionError,
         "epsilon: barycenter takes otcli.solve's keywords: check_every, cost, device, dtype, "
         "eps_rel, geometry, max_iter, memory, p, reach, reach_a, reach_b, rho, rho_a, "
         "rho_b, scaling, threads, tol"),
        (lambda x: otcli.barycenter([], points=3), otcli.InputError,
         "clouds: give a non-empty list of clouds, one (n, d) array each"),
        (lambda x: otcli.barycenter([x], points=3, outer_iter=-1), otcli.OptionError,
         "outer_iter: must be an integer ≥ 0, got -1"),
    ],
)  # fmt: skip
def test_library_errors_name_the_keyword(call, error, message):
    with pytest.raises(error) as info:
        call(_moons())
    assert str(info.value) == message


# --- the command --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".npy"])
def test_cli_writes_the_librarys_points(capfd, tmp_path, suffix):
    out = tmp_path / f"bary{suffix}"
    code, stdout, err = otdist(
        capfd, "barycenter", MOONS_A, MOONS_B, "-o", out, "--points", 7, "--eps", 0.05,
        "--weights-of-files", "1,3", "--json",
    )  # fmt: skip
    assert code == 0, err
    clouds = [otcli.read_cloud(str(f)) for f in (MOONS_A, MOONS_B)]
    lib = otcli.barycenter(clouds, [1, 3], points=7, eps=0.05, threads="auto")
    back = otcli.read_cloud(str(out))
    np.testing.assert_array_equal(back.points, lib.points)  # exactly: the floats round-trip
    assert back.columns == (("0", "1") if suffix == ".npy" else ("x", "y"))
    got = json.loads(stdout)
    assert got["points"] == 7 and got["dim"] == 2 and got["weights"] == [0.25, 0.75]
    assert got["objective"] == pytest.approx(lib.objective, rel=1e-12)
    assert got["iterations"] == lib.iterations and got["converged"] is True
    assert got["columns"] == ["x", "y"] and got["files"] == [str(MOONS_A), str(MOONS_B)]
    assert sum(w * v for w, v in zip(got["weights"], got["cloud_objectives"], strict=True)) == (
        pytest.approx(got["objective"], rel=1e-12)
    )
    lines = err.splitlines()
    assert len(lines) == lib.iterations + 1
    assert lines[0] == f"iteration 0: objective {lib.history[0]:.7g} (initial support, k-means++)"
    last = lib.iterations
    assert lines[-1] == (
        f"iteration {last}: objective {lib.history[-1]:.7g}, movement {lib.movements[-1]:.2e}"
    )


def test_cli_summary_and_no_progress(capfd, tmp_path):
    out = tmp_path / "b.csv"
    code, stdout, err = otdist(
        capfd, "barycenter", MOONS_A, MOONS_B, "-o", out, "-k", 5, "--eps", 0.05,
        "--divergence", "--no-progress",
    )  # fmt: skip
    assert (code, err) == (0, "")
    keys = [line.split()[0] for line in stdout.splitlines()]
    assert keys == ["objective", "clouds", "iterations", "points", "columns", "device"]
    assert "Σ_k w_k S_ε(bary, X_k), debiased, ε = 0.05" in stdout
    assert f"5 in 2-D, written to {out}" in stdout


def test_cli_files_from_and_column_names_that_differ(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("u,v\n0,0\n1,0\n0,1\n")
    (tmp_path / "list.txt").write_text(f"# the moons\n{MOONS_B}\n")
    code, _, err = otdist(
        capfd, "barycenter", "p.csv", "--files-from", "list.txt", "-o", "b.parquet",
        "--points", 3, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert otcli.read_cloud("b.parquet").columns == ("0", "1")  # u,v against x,y


def test_cli_outer_iter_zero_writes_the_start_and_says_so(capfd, tmp_path):
    out = tmp_path / "b.npy"
    code, _, err = otdist(
        capfd, "barycenter", MOONS_A, MOONS_B, "-o", out, "--points", 5, "--outer-iter", 0,
        "--no-progress",
    )  # fmt: skip
    assert (code, err) == (
        0,
        f"Warning: --outer-iter 0: {out} holds the k-means++ start, not moved\n",
    )
    clouds = [otcli.read_cloud(str(f)) for f in (MOONS_A, MOONS_B)]
    union, mass = _union(clouds, np.array([0.5, 0.5]))
    np.testing.assert_array_equal(
        np.load(out), kmeans_plus_plus(union, mass, 5, np.random.default_rng(0))
    )


def test_cli_warns_when_the_last_solves_miss_their_tolerance(capfd, tmp_path):
    code, out, err = otdist(
        capfd, "barycenter", MOONS_A, MOONS_B, "-o", tmp_path / "b.npy", "--points", 5,
        "--max-iter", 2, "--outer-iter", 2, "--no-progress", "--json",
    )  # fmt: skip
    assert code == 0
    got = json.loads(out)
    assert got["solves_converged"] is False and got["marginal_error"] > got["tol"] == 1e-5
    assert (
        f"Warning: the final Sinkhorn solves did not all converge: marginal error up to "
        f"{got['marginal_error']:.2e}, above --tol 1e-05; raise --max-iter or --eps\n"
    ) in err


def test_cli_not_converged_warns(capfd, tmp_path):
    code, _, err = otdist(
        capfd, "barycenter", MOONS_A, MOONS_B, "-o", tmp_path / "b.npy", "--points", 5,
        "--outer-iter", 1, "--outer-tol", 0, "--no-progress",
    )  # fmt: skip
    assert code == 0
    assert err.startswith("Warning: not converged: the support still moved ")
    assert err.endswith(
        "of the clouds' scale after --outer-iter 1 iterations (--outer-tol 0); raise "
        "--outer-iter or --outer-tol\n"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights-of-files", "1"], "--weights-of-files: 1 weight(s) for 2 clouds; give one "
         "per cloud"),
        (["--weights-of-files", "1,-2"], "--weights-of-files: weight -2 of cloud 2 is negative; "
         "weights are ≥ 0"),
        (["--weights-of-files", "0,0"], "--weights-of-files: all weights are zero; at least one "
         "cloud needs a positive weight"),
        (["--weights-of-files", "1,x"], "--weights-of-files: 'x' in '1,x' is not a number; give "
         "one number per file, e.g. 1,1,2"),
        (["--points", "0"], "--points: must be a positive integer, got 0"),
        (["--outer-tol", "-1"], "--outer-tol: must be a finite number ≥ 0, got -1.0"),
    ],
)  # fmt: skip
def test_cli_bad_options_are_one_error_line_and_no_output(capfd, tmp_path, extra, message):
    out = tmp_path / "b.csv"
    args = ["barycenter", MOONS_A, MOONS_B, "-o", out, "--points", 3, *extra]
    if "--points" in extra:
        args = ["barycenter", MOONS_A, MOONS_B, "-o", out, *extra]
    assert otdist(capfd, *args) == (2, "", f"Error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_clouds_of_different_dimensions(capfd, tmp_path):
    flat = tmp_path / "flat.csv"
    flat.write_text("x\n0\n1\n2\n")
    out = tmp_path / "b.csv"
    got = otdist(capfd, "barycenter", MOONS_A, flat, "-o", out, "--points", 3)
    assert got == (2, "", f"Error: {flat}: points have 1 coordinates but {MOONS_A} has 2; every "
                   "cloud of a barycenter needs the same dimension\n")  # fmt: skip
    assert not out.exists()


def test_cli_output_rules(capfd, tmp_path):
    out = tmp_path / "b.csv"
    out.write_text("keep me\n")
    args = ["barycenter", MOONS_A, MOONS_B, "--points", 3, "--no-progress"]
    assert otdist(capfd, *args, "-o", out) == (
        2, "", f"Error: -o: '{out}' exists; use --overwrite to replace it\n",
    )  # fmt: skip
    assert out.read_text() == "keep me\n"
    copy = tmp_path / "a.csv"
    copy.write_bytes(MOONS_A.read_bytes())
    got = otdist(capfd, "barycenter", copy, MOONS_B, "--points", 3, "-o", copy, "--overwrite")
    assert got == (2, "", f"Error: -o: '{copy}' is the input file '{copy}'; an input is never "
                   "overwritten: write the output under another name\n")  # fmt: skip
    assert copy.read_bytes() == MOONS_A.read_bytes()
    got = otdist(capfd, *args, "-o", tmp_path / "b.json")
    assert got == (2, "", f"Error: -o: '{tmp_path / 'b.json'}' has unsupported file type "
                   "'.json'; use one of .csv, .tsv, .parquet, .npy\n")  # fmt: skip
    code, _, err = otdist(capfd, *args, "-o", out, "--overwrite")
    assert code == 0, err
    assert otcli.read_cloud(str(out)).points.shape == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]  # no temp files


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--points", "3"], "-o: give the output file: -o bary.csv, .tsv, .parquet or .npy"),
        (["-o", "b.csv"], "--points: give the number of support points K, e.g. --points 100"),
        (["-o", "b.csv", "--points", "3", "missing.csv"], "missing.csv: no such file; check "
         "the path"),
    ],
)  # fmt: skip
def test_cli_missing_pieces(capfd, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert otdist(capfd, "barycenter", *args) == (2, "", f"Error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_help_examples_run(capfd, monkeypatch, tmp_path):
    from test_cli_help import _run_examples, help_text

    text = help_text(capfd, "barycenter")
    assert "<bool>" not in text and "[required]" in text
    outputs = _run_examples(capfd, monkeypatch, tmp_path, ("barycenter",))
    quarter = json.loads(outputs[1])
    assert quarter["weights"] == [0.75, 0.25] and quarter["divergence"] is True
    assert np.load(tmp_path / "quarter.npy").shape == (15, 2)
    assert otcli.read_cloud(str(tmp_path / "bary.csv")).columns == ("x", "y")


def test_cli_never_writes_over_its_file_list(capfd, tmp_path):
    listing = tmp_path / "list.csv"  # a list whose name an output could take
    listing.write_text(f"{MOONS_A}\n{MOONS_B}\n")
    before = listing.read_text()
    got = otdist(capfd, "barycenter", "--files-from", listing, "-o", listing, "--points", 3,
                 "--overwrite")  # fmt: skip
    assert got == (2, "", f"Error: -o: '{listing}' is the input file '{listing}'; an input is "
                   "never overwritten: write the output under another name\n")  # fmt: skip
    assert listing.read_text() == before

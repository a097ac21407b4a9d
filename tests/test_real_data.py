"""Right on the data users bring first: scikit-learn's bundled datasets, written with pandas.

Unscaled columns put the costs anywhere from 1 to 1e6, so an absolute ε that suits one file
is hopeless on the next. These tests pin what otdist does there: a relative ε that follows
the data's scale, a warning before solving when ε is too small for Sinkhorn, and never a
converged plan whose cost is below the exact optimum.
"""

from __future__ import annotations

import json

import numpy as np
import ot
import pytest

import otcli
from conftest import otdist

datasets = pytest.importorskip("sklearn.datasets")
pd = pytest.importorskip("pandas")


def _class_files(tmp_path, loader, first, second, **to_csv):
    """Two classes of a bundled dataset as CSV files written by pandas."""
    bunch = loader(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    paths = []
    for label in (first, second):
        path = tmp_path / f"{loader.__name__}_{label}.csv"
        frame[bunch.target == label].to_csv(path, **to_csv)
        paths.append(path)
    points = [frame[bunch.target == label].to_numpy(float) for label in (first, second)]
    return paths, points


def _emd2(x, y):
    return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), ot.dist(x, y))


@pytest.fixture
def wine(tmp_path):
    return _class_files(tmp_path, datasets.load_wine, 0, 1, index=False)


def test_wine_at_absolute_eps_warns_before_solving_and_is_not_converged(capfd, wine):
    (a, b), (x, y) = wine
    code, out, err = otdist(capfd, a, b, "--json")
    assert code == 0
    got = json.loads(out)
    lines = err.splitlines()
    mean = ot.dist(x, y).mean()
    assert lines[0].startswith(f"Warning: ε = 0.1 is {0.1 / mean:.1e} of the mean cost ")
    assert "--eps-rel 0.05" in lines[0] and "--exact" in lines[0]
    assert got["converged"] is False
    assert lines[-1].startswith("Warning: not converged: ") and "--eps-rel 0.05" in lines[-1]
    assert got["eps_rel"] == pytest.approx(0.1 / mean, rel=1e-6)


def test_wine_at_relative_eps_converges_above_the_exact_optimum(capfd, wine):
    (a, b), (x, y) = wine
    code, out, err = otdist(capfd, a, b, "--eps-rel", "0.05", "--json")
    assert code == 0, err
    assert err == ""
    got = json.loads(out)
    mean = ot.dist(x, y).mean()
    assert got["converged"] is True
    assert got["eps"] == pytest.approx(0.05 * mean, rel=1e-7)  # mean of the float32 C
    assert got["eps_rel"] == pytest.approx(0.05, rel=1e-12)
    assert got["cost_scale"] == pytest.approx(mean, rel=1e-7)
    # ⟨P, C⟩ of a feasible plan cannot be below the exact optimum (up to the marginal error).
    exact = _emd2(x, y)
    assert got["cost"] >= exact * (1 - got["marginal_error"])
    # The same ε through POT's log-domain solver gives the same plan cost.
    M = ot.dist(x, y)
    P = ot.sinkhorn(
        np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M, got["eps"],
        method="sinkhorn_log", stopThr=1e-10, numItermax=100000,
    )  # fmt: skip
    assert got["cost"] == pytest.approx(float((P * M).sum()), rel=1e-5)  # to --tol


def test_relative_eps_follows_the_units():
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 3)), rng.random((50, 3)) + 0.2
    small = otcli.solve(x, y, eps_rel=0.05, device="cpu")
    large = otcli.solve(1000 * x, 1000 * y, eps_rel=0.05, device="cpu")
    assert small.converged and large.converged
    assert large.eps == pytest.approx(1e6 * small.eps, rel=1e-6)  # float32 C, both
    assert large.cost == pytest.approx(1e6 * small.cost, rel=1e-5)
    assert small.eps_rel == pytest.approx(0.05, rel=1e-12)


def test_eps_and_eps_rel_together_are_refused(capfd, wine):
    (a, b), _ = wine
    code, out, err = otdist(capfd, a, b, "--eps", "1", "--eps-rel", "0.05")
    assert (code, out) == (2, "")
    assert err == "Error: --eps-rel: give --eps (absolute) or --eps-rel (relative), not both\n"


def test_batch_relative_eps_is_resolved_per_pair_and_shared_by_self_terms(capfd, tmp_path):
    paths, points = _class_files(tmp_path, datasets.load_iris, 0, 1, index=False)
    (tmp_path / "m.csv").write_text(f"a,b\n{paths[0].name},{paths[1].name}\n")
    out = tmp_path / "r.jsonl"
    code, _, err = otdist(
        capfd, "batch", tmp_path / "m.csv", "-o", out, "--eps-rel", "0.05", "--divergence"
    )
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["eps"] == pytest.approx(0.05 * ot.dist(*points).mean(), rel=1e-7)
    # The divergence equals the library's, whose self terms take the cross pair's ε.
    ref = otcli.divergence(*points, eps=row["eps"], device="cpu")
    assert row["divergence"] == pytest.approx(ref.divergence, rel=1e-6)


def test_all_45_digit_class_pairs_converge_with_the_defaults():
    """Digits at ε = 10: pair 4 vs 6 needs ~1,350 iterations (POT's plain Sinkhorn ~8,000);
    the default limit lets it finish, and the batch still matches POT pair by pair."""
    X, y = datasets.load_digits(return_X_y=True)
    classes = [X[y == c] for c in range(10)]
    pairs = [(classes[i], classes[j]) for i in range(10) for j in range(i + 1, 10)]
    rs = otcli.solve([p[0] for p in pairs], [p[1] for p in pairs], eps=10.0, device="cpu")
    assert all(r.converged for r in rs), [r.marginal_error for r in rs if not r.converged]
    for (x, z), r in list(zip(pairs, rs, strict=True))[::11]:
        M = ot.dist(x, z)
        P = ot.sinkhorn(np.full(len(x), 1 / len(x)), np.full(len(z), 1 / len(z)), M, 10.0,
                        method="sinkhorn_log", stopThr=1e-9, numItermax=200000)  # fmt: skip
        assert r.cost == pytest.approx(float((P * M).sum()), rel=1e-5)

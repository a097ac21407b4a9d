"""--exact: the unregularised optimum, against POT's exact ot.emd2 (to 1e-9)."""

from __future__ import annotations

import json
import sys

import numpy as np
import ot
import pytest

from conftest import otdist


def _write(path, points, weights=None):
    if weights is None:
        np.save(path, points)
    else:
        np.savez(path, points=points, weights=weights)
    return path


def test_equal_uniform_clouds_are_an_assignment(capfd, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 3)), rng.random((60, 3)) + 0.3
    a, b = _write(tmp_path / "a.npy", x), _write(tmp_path / "b.npy", y)
    code, out, err = otdist(capfd, a, b, "--exact", "--json", "--coupling", tmp_path / "P.npy")
    assert code == 0, err
    got = json.loads(out)
    u = np.full(60, 1 / 60)
    exact = ot.emd2(u, u, ot.dist(x, y))
    assert got["cost"] == pytest.approx(exact, rel=1e-9)
    assert got["engine"] == "assignment" and got["converged"] is True
    assert got["w_p"] == pytest.approx(np.sqrt(exact), rel=1e-9) and got["p"] == 2.0
    P = np.load(tmp_path / "P.npy")
    np.testing.assert_allclose(P.sum(0), u, atol=1e-15)
    np.testing.assert_allclose(P.sum(1), u, atol=1e-15)
    assert float((P * ot.dist(x, y)).sum()) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "cityblock"])
def test_weighted_clouds_of_other_sizes_take_the_network_simplex(capfd, tmp_path, cost):
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 2)), rng.random((37, 2))
    wa, wb = rng.random(50) + 0.1, rng.random(37) + 0.1
    a = _write(tmp_path / "a.npz", x, wa)
    b = _write(tmp_path / "b.npz", y, wb)
    code, out, err = otdist(capfd, a, b, "--exact", "--json", "--cost", cost)
    assert code == 0, err
    got = json.loads(out)
    metric = {"sqeuclidean": "sqeuclidean", "euclidean": "euclidean", "cityblock": "cityblock"}
    exact = ot.emd2(wa / wa.sum(), wb / wb.sum(), ot.dist(x, y, metric=metric[cost]))
    assert got["engine"] == "network-simplex"
    assert got["cost"] == pytest.approx(exact, rel=1e-9)
    assert got["marginal_error"] < 1e-12
    p = 2.0 if cost == "sqeuclidean" else 1.0
    assert got["w_p"] == pytest.approx(exact ** (1 / p), rel=1e-9)


def test_text_summary_says_exact(capfd):
    code, out, _ = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--exact")
    assert code == 0
    assert "exact optimum" in out and "W_2" in out and "assignment" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "0.1"], "Error: --exact: solves without ε; drop --eps\n"),
        (["--eps-rel", "0.1"], "Error: --exact: solves without ε; drop --eps-rel\n"),
        (["--divergence"], "Error: --exact: solves without ε; drop --divergence\n"),
    ],
)
def test_exact_refuses_entropic_options(capfd, extra, message):
    code, out, err = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv",
                            "--exact", *extra)  # fmt: skip
    assert (code, out, err) == (2, "", message)


def test_exact_above_the_size_limit_is_refused(capfd, tmp_path, monkeypatch):
    import otcli.exact

    monkeypatch.setattr(otcli.exact, "MAX_EXACT_ENTRIES", 100)
    a = _write(tmp_path / "a.npy", np.zeros((11, 2)))
    code, _, err = otdist(capfd, a, a, "--exact")
    assert code == 2
    assert err.startswith("Error: --exact: 11 × 11 points is over the exact solver's limit of 100")


def test_exact_without_pot_says_what_to_install(capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)
    code, _, err = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--exact")
    assert code == 2
    assert err == (
        "Error: --exact: needs POT's network simplex, an optional extra: "
        "pip install 'otcli[exact]'\n"
    )

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


# --- --exact in batch and pairwise -----------------------------------------------------------


def test_batch_and_pairwise_exact_equal_emd2(capfd, tmp_path):
    """Every pair's unregularised optimum, as ot.emd2 gives it on the same float64 costs
    (equal uniform clouds: an assignment; others: network simplex); eps 0 in the rows; a bad
    pair fails alone."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    clouds = [rng.random((n, 2)) + k for k, n in enumerate((12, 12, 20, 7))]
    paths = [_write(tmp_path / f"c{k}.npy", c) for k, c in enumerate(clouds)]
    bad = tmp_path / "bad.npy"
    np.save(bad, rng.random((5, 3)))
    pairs = [(0, 1), (0, 2), (2, 3), (3, 3)]
    rows = "\n".join(f"{paths[i].name},{paths[j].name}" for i, j in pairs)
    (tmp_path / "m.csv").write_text(f"a,b\n{rows}\nc0.npy,bad.npy\n")
    code, _, err = otdist(
        capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.parquet", "--exact"
    )
    assert code == 1 and "1 of 5 pairs failed" in err
    got = pq.read_table(tmp_path / "r.parquet").to_pylist()

    def emd2(i, j):
        x, y = clouds[i], clouds[j]
        cmat = ((x[:, None] - y[None]) ** 2).sum(-1)
        return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cmat)

    for row, (i, j) in zip(got, pairs, strict=False):
        assert row["status"] == "ok" and row["eps"] == 0.0 and row["converged"]
        assert row["cost"] == pytest.approx(emd2(i, j), rel=1e-9, abs=1e-12)
    assert got[-1]["status"] == "error" and "3 coordinates" in got[-1]["error"]
    code, _, err = otdist(capfd, "pairwise", *paths, "-o", tmp_path / "w.npy", "--exact")
    assert code == 0, err
    w = np.load(tmp_path / "w.npy")
    for i in range(4):
        for j in range(4):
            assert w[i, j] == pytest.approx(emd2(i, j), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("extra", "message"), [
    (("--eps", "0.1"), "Error: --exact: solves without ε; drop --eps\n"),
    (("--divergence",), "Error: --exact: solves without ε: no divergence (its self terms are 0); drop --divergence\n"),
])  # fmt: skip
def test_batch_exact_refuses_what_it_cannot_do(capfd, tmp_path, extra, message):
    a = _write(tmp_path / "a.npy", np.zeros((3, 2)))
    (tmp_path / "m.csv").write_text(f"a,b\n{a.name},{a.name}\n")
    code, out, err = otdist(
        capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv", "--exact", *extra
    )
    assert (code, out, err) == (2, "", message)
    assert not (tmp_path / "r.csv").exists()

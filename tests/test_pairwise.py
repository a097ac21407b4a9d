"""``otdist pairwise``: every unordered pair once, as a symmetric matrix or a long table.

Oracles: single-pair solves of the same clouds (``otcli.solve``), the seed's shifted line
(divergence W₂² = k²), and the matrix's own symmetry.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import otcli
from conftest import otdist


@pytest.fixture
def clouds(tmp_path: Path) -> list[Path]:
    """Four 3-D clouds of different sizes, in three formats."""
    rng = np.random.default_rng(2)
    paths = []
    for k, n in enumerate((9, 30, 17, 44)):
        pts = rng.random((n, 3)) + 0.3 * k
        path = tmp_path / f"c{k}.npy"
        np.save(path, pts)
        paths.append(path)
    return paths


def test_matrix_is_symmetric_and_matches_single_pairs(capfd, tmp_path, clouds):
    code, out, err = otdist(capfd, "pairwise", *clouds, "-o", tmp_path / "d.npy", "--eps", 0.05)
    assert (code, out) == (0, ""), err
    mat = np.load(tmp_path / "d.npy")
    assert mat.shape == (4, 4) and np.array_equal(mat, mat.T)
    pts = [np.load(p) for p in clouds]
    for i in range(4):
        for j in range(i, 4):
            single = otcli.solve(pts[i], pts[j], eps=0.05, device="cpu")
            assert mat[i, j] == pytest.approx(single.cost, rel=2e-5), (i, j)
            # The symmetric problem gives the same value: computing it once is enough.
            assert otcli.solve(pts[j], pts[i], eps=0.05).cost == pytest.approx(mat[i, j], rel=1e-4)
    assert np.all(np.diag(mat) > 0)  # the entropic self-cost ⟨P, C⟩ is not zero


def test_csv_matrix_has_labels_and_parquet_is_long(capfd, tmp_path, clouds):
    assert otdist(capfd, "pairwise", *clouds, "-o", tmp_path / "d.npy")[0] == 0
    mat = np.load(tmp_path / "d.npy")
    assert otdist(capfd, "pairwise", *clouds, "-o", tmp_path / "d.csv")[0] == 0
    with open(tmp_path / "d.csv", newline="") as fh:
        table = list(csv.reader(fh))
    labels = [str(p) for p in clouds]
    assert table[0] == ["file", *labels]
    assert [row[0] for row in table[1:]] == labels
    assert np.allclose(np.array([[float(v) for v in row[1:]] for row in table[1:]]), mat, rtol=1e-6)
    assert otdist(capfd, "pairwise", *clouds, "-o", tmp_path / "d.parquet")[0] == 0
    rows = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert [(r["i"], r["j"]) for r in rows] == [(i, j) for i in range(4) for j in range(i, 4)]
    for r in rows:
        assert r["status"] == "ok" and r["converged"] and r["marginal_error"] <= 1e-5
        assert r["cost"] == pytest.approx(mat[r["i"], r["j"]], rel=1e-6)


def test_divergence_matrix(capfd, tmp_path):
    line = np.array([[i, 0.0] for i in range(5)])
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"l{k}.npy")
        np.save(paths[-1], line + np.array([0.0, k]))
    (tmp_path / "list.txt").write_text("# the seed's line, shifted\n" + "\n".join(
        p.name for p in paths) + "\n")  # fmt: skip
    code, _, err = otdist(capfd, "pairwise", "--files-from", tmp_path / "list.txt",
                          "-o", tmp_path / "s.npy", "--divergence")  # fmt: skip
    assert code == 0, err
    s = np.load(tmp_path / "s.npy")
    assert np.array_equal(np.diag(s), np.zeros(3)) and np.array_equal(s, s.T)
    expected = np.array([[0, 1, 4], [1, 0, 1], [4, 1, 0]])  # debiased: W₂² = shift²
    assert np.allclose(s, expected, atol=1e-3)


def test_a_bad_file_fails_only_its_pairs(capfd, tmp_path, clouds):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,z\n1,2,nan\n")
    out = tmp_path / "d.parquet"
    code, _, err = otdist(capfd, "pairwise", clouds[0], bad, clouds[1], "-o", out)
    assert code == 1
    with pytest.raises(otcli.OtcliError) as info:  # what a single-pair run would print
        otcli.read_cloud(bad)
    message = str(info.value)
    assert f"Warning: 3 of 6 pairs failed (first: {message})" in err
    rows = {(r["i"], r["j"]): r for r in pq.read_table(out).to_pylist()}
    for key in [(0, 1), (1, 1), (1, 2)]:
        assert rows[key]["status"] == "error" and rows[key]["error"] == message
    assert all(rows[k]["status"] == "ok" for k in [(0, 0), (0, 2), (2, 2)])
    assert otdist(capfd, "pairwise", clouds[0], bad, clouds[1], "-o", tmp_path / "d.npy")[0] == 1
    mat = np.load(tmp_path / "d.npy")
    assert math.isnan(mat[0, 1]) and math.isnan(mat[1, 0]) and not math.isnan(mat[0, 2])


def test_usage_errors(capfd, tmp_path, clouds):
    code, _, err = otdist(capfd, "pairwise", clouds[0], "-o", tmp_path / "d.npy")
    assert (code, err) == (2, "Error: FILE: got 1 file(s); pairwise needs at least two\n")
    code, _, err = otdist(capfd, "pairwise", *clouds, "-o", tmp_path / "d.jsonl")
    assert code == 2
    assert err == (f"Error: -o: '{tmp_path / 'd.jsonl'}' has unsupported file type '.jsonl'; "
                   "use one of .npy, .csv, .parquet\n")  # fmt: skip
    code, _, err = otdist(capfd, "pairwise", *clouds)
    assert (code, err) == (2, "Error: -o: give the output file: -o matrix.npy, .csv or .parquet\n")

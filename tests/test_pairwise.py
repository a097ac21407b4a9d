"""``otdist pairwise``: every unordered pair once, as a symmetric matrix or a long table.

Oracles: single-pair solves of the same clouds (``otcli.solve``), the seed's shifted line
(divergence W₂² = k²), and the matrix's own symmetry.
"""

from __future__ import annotations

import csv
import math
import os
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


def test_divergence_matrix(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the list's relative paths are taken from here
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


def test_divergence_at_a_relative_eps(capfd, tmp_path, clouds):
    """--divergence --eps-rel: each pair's ε is 0.05 of its own mean cost, and its self terms
    are solved at that ε (the diagonal's own ε is another): every entry equals
    ``otcli.divergence`` of the pair alone, which the single-pair command also prints."""
    out = tmp_path / "s.parquet"
    code, _, err = otdist(capfd, "pairwise", *clouds, "-o", out, "--divergence", "--eps-rel", 0.05,
                          "--dtype", "float64")  # fmt: skip
    assert code == 0, err
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 10
    for r in rows:
        x, y = np.load(clouds[r["i"]]), np.load(clouds[r["j"]])
        if r["i"] == r["j"]:
            assert r["divergence"] == 0.0
            continue
        alone = otcli.divergence(x, y, eps_rel=0.05, dtype="float64")
        assert r["eps"] == pytest.approx(alone.xy.eps, rel=1e-12)
        assert r["divergence"] == pytest.approx(alone.divergence, rel=1e-6, abs=1e-9)
        assert r["cost"] == pytest.approx(alone.xy.cost, rel=1e-6)


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


# --- hostile runs (issue 16) ------------------------------------------------------------------


def test_files_from_paths_are_relative_to_the_working_directory(capfd, tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    rng = np.random.default_rng(4)
    for k in range(3):
        np.save(tmp_path / "d" / f"c{k}.npy", rng.random((8 + k, 2)))
    (tmp_path / "d" / "list.txt").write_text(
        "d/c0.npy\nd/c1.npy\nd/c2.npy\n"
    )  # find d > d/list.txt
    monkeypatch.chdir(tmp_path)
    code, _, err = otdist(capfd, "pairwise", "--files-from", "d/list.txt", "-o", "m.npy")
    assert code == 0, err  # was: every pair failed late, an all-NaN matrix, exit 1
    mat = np.load(tmp_path / "m.npy")
    assert mat.shape == (3, 3) and np.isfinite(mat).all()


def test_a_missing_file_stops_pairwise_before_any_work(capfd, tmp_path, clouds, monkeypatch):
    listing = tmp_path / "list.txt"
    listing.write_text("c0.npy\nc1.npy\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "d.npy"
    code, _, err = otdist(capfd, "pairwise", "--files-from", listing, "-o", out)
    assert code == 2
    assert err == (
        f"Error: {listing}: line 1: 'c0.npy': no such file (relative paths in a file list are "
        f"taken from the current directory); it exists beside the list, as '{tmp_path}/c0.npy': "
        "write that path\n"
    )
    code, _, err = otdist(capfd, "pairwise", clouds[0], tmp_path / "gone.npy", "gone2.npy",
                          "-o", out)  # fmt: skip
    assert code == 2
    assert (
        err
        == f"Error: {tmp_path / 'gone.npy'}: no such file; check the path (and 1 more missing)\n"
    )
    assert not out.exists()


def test_pairwise_output_follows_the_overwrite_policy(capfd, tmp_path, clouds):
    out = tmp_path / "d.npy"
    out.write_bytes(b"keep me")
    code, _, err = otdist(capfd, "pairwise", *clouds, "-o", out)
    assert (code, err) == (2, f"Error: -o: '{out}' exists; use --overwrite to replace it\n")
    assert out.read_bytes() == b"keep me"  # was: replaced silently
    assert otdist(capfd, "pairwise", *clouds, "-o", out, "--overwrite")[0] == 0
    assert np.load(out).shape == (4, 4)
    victim = tmp_path / "v.csv"
    victim.write_text("x,y,z\n0,0,0\n1,1,1\n")
    code, _, err = otdist(capfd, "pairwise", *clouds, victim, "-o", victim, "--overwrite")
    assert code == 2 and err.startswith(f"Error: -o: '{victim}' is the input file '{victim}'")
    assert victim.read_text() == "x,y,z\n0,0,0\n1,1,1\n"


def test_any_exception_of_one_pair_is_its_nan_entry(capfd, tmp_path, clouds, monkeypatch):
    import otcli.api

    real = otcli.api.solve_clouds

    def overflow(xs, ys, *args, **kw):
        if any(
            x.source.endswith("c1.npy") or y.source.endswith("c1.npy")
            for x, y in zip(xs, ys, strict=True)
        ):
            raise OverflowError("cannot convert float infinity to integer")
        return real(xs, ys, *args, **kw)

    monkeypatch.setattr(otcli.api, "solve_clouds", overflow)
    out = tmp_path / "d.parquet"
    code, _, err = otdist(capfd, "pairwise", *clouds[:3], "-o", out)
    assert code == 1 and "Traceback" not in err  # was: the OverflowError, no output
    rows = {(r["i"], r["j"]): r for r in pq.read_table(out).to_pylist()}
    assert [k for k, r in rows.items() if r["status"] == "error"] == [(0, 1), (1, 1), (1, 2)]
    assert rows[(1, 1)]["error"] == (
        f"{clouds[1]} vs {clouds[1]}: the pair could not be solved (OverflowError: cannot "
        "convert float infinity to integer)"
    )


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_matrix_outputs_warn_without_naming_columns_they_lack(capfd, tmp_path, clouds, suffix):
    out = tmp_path / f"d{suffix}"
    code, _, err = otdist(capfd, "pairwise", *clouds[:2], "-o", out, "--max-iter", 2)
    assert code == 0
    assert err == (
        "Warning: 3 of 3 pairs did not converge to --tol; a .parquet output has a row per pair "
        "with its converged and marginal_error\n"
    )  # was: "see the converged and marginal_error columns", which a matrix does not have


def test_non_utf8_input_names_are_written_as_valid_utf8(capfdbinary, tmp_path, clouds):
    odd = tmp_path / "c\udcff.npy"  # the file name's byte 0xFF, as Python hands it over
    np.save(odd, np.load(clouds[0]))
    from otcli.cli import run

    for name in ("d.csv", "d.parquet", "d\udcff.npy"):  # was: UnicodeEncodeError
        assert run(["pairwise", str(odd), str(clouds[1]), "-o", str(tmp_path / name)]) == 0
    labels = (tmp_path / "d.csv").read_bytes().decode("utf-8").splitlines()[0].split(",")
    assert labels == ["file", f"{tmp_path}/c\\xff.npy", str(clouds[1])]
    rows = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert rows[0]["a"] == f"{tmp_path}/c\\xff.npy"
    assert b"d\xff.npy" in os.listdir(os.fsencode(tmp_path))
    capfdbinary.readouterr()
    assert run(["pairwise", str(odd), str(tmp_path / "gone\udcff.npy"), "-o", "e.npy"]) == 2
    err = capfdbinary.readouterr().err.decode("utf-8")  # strict
    assert err == f"Error: {tmp_path}/gone\\xff.npy: no such file; check the path\n"

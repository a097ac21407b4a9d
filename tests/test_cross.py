"""``otdist pairwise A... --against B...``: the rectangular |A|×|B| matrix, resumable.

Oracles: single-pair runs of the same files (``otcli.solve`` and ``otdist A B``), POT's
converged ``ot.sinkhorn2`` on one entry, and a fresh run for every resumed one. Data: the
iris flowers (scikit-learn's bundled copy), one file per species and half.
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
from otcli.batch.cross import run_cross
from otcli.cli.app import spread_lists
from otcli.config import make_config


@pytest.fixture
def files(tmp_path: Path) -> tuple[list[str], list[str]]:
    """A: three generated-like clouds (the first half of each species, in three formats);
    B: two reference clouds (the second halves of two species)."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    a, b = [], []
    for k, suffix in zip(range(3), (".npy", ".csv", ".npy"), strict=True):
        pts = x[y == k][:25]
        path = tmp_path / f"gen{k}{suffix}"
        if suffix == ".npy":
            np.save(path, pts)
        else:
            np.savetxt(path, pts, delimiter=",", header="a,b,c,d", comments="")
        a.append(str(path))
    for k in (1, 2):
        path = tmp_path / f"ref{k}.npy"
        np.save(path, x[y == k][25:])
        b.append(str(path))
    return a, b


def _clouds(paths: list[str]) -> list[np.ndarray]:
    return [np.load(p) if p.endswith(".npy") else np.loadtxt(p, delimiter=",", skiprows=1)
            for p in paths]  # fmt: skip


def test_matrix_matches_single_pairs_and_pot(capfd, tmp_path, files):
    a, b = files
    out = tmp_path / "m.npy"
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", out, "--eps", 0.5)
    assert code == 0, err
    mat = np.load(out)
    assert mat.shape == (3, 2) and mat.dtype == np.float64
    xs, ys = _clouds(a), _clouds(b)
    for i in range(3):
        for j in range(2):
            single = otcli.solve(xs[i], ys[j], eps=0.5)
            assert mat[i, j] == pytest.approx(single.cost, rel=2e-5), (i, j)
    # One entry against POT's converged Sinkhorn (float64, log domain): the plan's ⟨P, C⟩.
    ot = pytest.importorskip("ot")
    cost = ot.dist(xs[0], ys[1])
    plan = ot.sinkhorn(ot.unif(25), ot.unif(25), cost, 0.5, method="sinkhorn_log",
                       numItermax=100_000, stopThr=1e-12)  # fmt: skip
    assert mat[0, 1] == pytest.approx(float((plan * cost).sum()), rel=1e-4)
    # And the command for one pair prints the same figure.
    code, text, _ = otdist(capfd, a[2], b[0], "--eps", 0.5, "--json")
    assert code == 0
    import json

    assert json.loads(text)["cost"] == pytest.approx(mat[2, 0], rel=2e-5)


def test_csv_labels_and_long_parquet(capfd, tmp_path, files):
    a, b = files
    assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", tmp_path / "m.npy")[0] == 0
    mat = np.load(tmp_path / "m.npy")
    assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", tmp_path / "m.csv")[0] == 0
    with open(tmp_path / "m.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["file", *b]
    assert [row[0] for row in table[1:]] == a
    values = np.array([[float(v) for v in row[1:]] for row in table[1:]])
    assert np.allclose(values, mat, rtol=1e-6)
    assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", tmp_path / "m.parquet")[0] == 0
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [(r["i"], r["j"]) for r in rows] == [(i, j) for i in range(3) for j in range(2)]
    for r in rows:
        assert (r["a"], r["b"], r["status"]) == (a[r["i"]], b[r["j"]], "ok")
        assert r["cost"] == pytest.approx(mat[r["i"], r["j"]], rel=1e-6)
        assert r["converged"] and r["marginal_error"] < 1e-5


def test_divergence_matches_the_pair_command(capfd, tmp_path, files):
    a, b = files
    out = tmp_path / "d.parquet"
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", out, "--divergence")
    assert code == 0, err
    rows = pq.read_table(out).to_pylist()
    xs, ys = _clouds(a), _clouds(b)
    for r in rows:
        single = otcli.divergence(xs[r["i"]], ys[r["j"]], eps=0.1)
        assert r["divergence"] == pytest.approx(single.divergence, rel=1e-4, abs=1e-6)
    # Species 1 against itself (other halves) is closer than species 0 against species 1.
    d = {(r["i"], r["j"]): r["divergence"] for r in rows}
    assert d[(1, 0)] < d[(0, 0)] and d[(2, 1)] < d[(0, 1)]


def test_list_option_spreading():
    """``--against`` takes every word up to the next option; repeating it is the same."""
    assert spread_lists(["pairwise", "x", "--against", "p", "q", "-o", "m.npy"]) == [
        "pairwise", "x", "--against", "p", "--against", "q", "-o", "m.npy",
    ]  # fmt: skip
    assert spread_lists(["pairwise", "x", "--against", "p", "--", "-q"]) == [
        "pairwise", "x", "--against", "p", "--", "-q",
    ]  # fmt: skip
    assert spread_lists(["batch", "m.csv", "--against", "p", "q"]) == [
        "batch", "m.csv", "--against", "p", "q",
    ]  # fmt: skip


@pytest.mark.parametrize("after", [[], ["-o", "m.npy"], ["--divergence", "-o", "m.npy"]])
def test_against_with_no_file_after_it(capfd, files, after):
    a, _ = files
    code, out, err = otdist(capfd, "pairwise", a[0], "--against", *after)
    assert (code, out) == (2, "")
    assert err == (
        "Error: --against: give at least one file after it (or a LIST with --against-from)\n"
    )


def test_lists_from_files(capfd, tmp_path, files):
    a, b = files
    (tmp_path / "a.txt").write_text("\n".join(a[1:]) + "\n")
    (tmp_path / "b.csv").write_text(b[1] + "\n")
    out = tmp_path / "m.csv"
    code, _, err = otdist(
        capfd, "pairwise", a[0], "--files-from", tmp_path / "a.txt",
        "--against", b[0], "--against-from", tmp_path / "b.csv", "-o", out,
    )  # fmt: skip
    assert code == 0, err
    with open(out, newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["file", *b] and [row[0] for row in table[1:]] == a
    # A list is an input: never overwritten.
    code, _, err = otdist(
        capfd, "pairwise", *a, "--against-from", tmp_path / "b.csv",
        "-o", tmp_path / "b.csv", "--overwrite",
    )  # fmt: skip
    assert code == 2 and "input" in err
    assert (tmp_path / "b.csv").read_text() == b[1] + "\n"


def test_failed_pairs_are_nan_with_status(capfd, tmp_path, files):
    a, b = files
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,oops\n")
    code, _, err = otdist(capfd, "pairwise", *a, "--against", b[0], bad, "-o", tmp_path / "m.npy")
    assert code == 1 and "3 of 6 pairs failed" in err
    mat = np.load(tmp_path / "m.npy")
    assert np.isnan(mat[:, 1]).all() and np.isfinite(mat[:, 0]).all()
    code, _, _ = otdist(capfd, "pairwise", *a, "--against", b[0], bad, "-o", tmp_path / "m.parquet")
    assert code == 1
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    failed = [r for r in rows if r["status"] == "error"]
    assert [r["j"] for r in failed] == [1, 1, 1]
    assert all("bad.csv" in r["error"] and r["cost"] is None for r in failed)
    # 4-D iris against a 2-D cloud: that pair's error, the others solved.
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((5, 2)))
    code, _, _ = otdist(capfd, "pairwise", a[0], "--against", b[0], flat, "-o", tmp_path / "d.npy")
    assert code == 1
    assert np.isfinite(np.load(tmp_path / "d.npy")[0, 0])


class _Stop(Exception):
    pass


def test_resume_after_interruption_solves_only_the_rest(tmp_path, files):
    a, b = files
    config = make_config(eps=0.2, max_batch=1)  # one pair per bucket: rows journaled one by one
    out = tmp_path / "m.parquet"
    seen: list[int] = []

    def stop_after_two(total: int, done: int):
        def hook(finished: int, failed: int) -> None:
            seen.append(finished)
            if sum(seen) >= 2:
                raise _Stop

        return hook

    with pytest.raises(_Stop):
        run_cross(a, b, out, config, progress=stop_after_two, workers=1)
    assert not out.exists()  # nothing but the journal until the end
    starts: list[tuple[int, int]] = []
    summary = run_cross(
        a, b, out, config, resume=True, progress=lambda t, d: starts.append((t, d)) or None
    )
    assert starts == [(6, 2)] and summary.skipped == 2 and summary.ok == 6
    fresh = tmp_path / "fresh.parquet"
    run_cross(a, b, fresh, config)
    got, want = pq.read_table(out).to_pylist(), pq.read_table(fresh).to_pylist()
    for r, s in zip(got, want, strict=True):
        assert (r["i"], r["j"], r["a"], r["b"]) == (s["i"], s["j"], s["a"], s["b"])
        assert r["cost"] == pytest.approx(s["cost"], rel=1e-6)


def test_resume_extends_a_finished_table_with_longer_lists(capfd, tmp_path, files):
    a, b = files
    out = tmp_path / "m.parquet"
    assert otdist(capfd, "pairwise", *a[:2], "--against", b[0], "-o", out)[0] == 0
    before = {(r["a"], r["b"]): r["cost"] for r in pq.read_table(out).to_pylist()}
    starts: list[tuple[int, int]] = []
    run_cross(
        a, b, out, make_config(eps=0.1), resume=True,
        progress=lambda t, d: starts.append((t, d)) or None,
    )  # fmt: skip
    assert starts == [(6, 2)]  # the two pairs of the first run are kept, not solved again
    rows = pq.read_table(out).to_pylist()
    assert [(r["i"], r["j"]) for r in rows] == [(i, j) for i in range(3) for j in range(2)]
    for r in rows:
        if (r["a"], r["b"]) in before:
            assert r["cost"] == before[(r["a"], r["b"])]
    # Other options than the finished table's: refused, naming the option.
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", out, "--resume",
                          "--eps", 0.3)  # fmt: skip
    assert code == 2 and "--eps" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "p.png"], "--plot: draws a square matrix"),
        (["--against-from", "missing.txt"], "missing.txt"),
    ],
)
def test_refused_options(capfd, tmp_path, files, extra, message):
    a, b = files
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", tmp_path / "m.npy", *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.npy").exists()


def test_finished_matrix_is_not_resumed_or_replaced(capfd, tmp_path, files):
    a, b = files
    out = tmp_path / "m.npy"
    assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", out)[0] == 0
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", out)
    assert code == 2 and "--overwrite" in err and "--resume" not in err
    code, _, err = otdist(capfd, "pairwise", *a, "--against", *b, "-o", out, "--resume")
    assert code == 2 and "finished matrix" in err
    code, _, err = otdist(capfd, "pairwise", *a, "-o", tmp_path / "sq.npy", "--resume")
    assert code == 2 and "--against" in err
    assert not math.isnan(np.load(out)[0, 0])


def test_show_reads_the_rectangular_outputs(capfd, tmp_path, files):
    a, b = files
    for suffix in (".csv", ".parquet"):
        assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", tmp_path / f"m{suffix}")[0] == 0
    code, out, err = otdist(capfd, "show", tmp_path / "m.csv")
    assert code == 0, err
    assert "labelled .csv" in out and "3 × 2" in out
    code, out, err = otdist(capfd, "show", tmp_path / "m.parquet")
    assert code == 0, err
    assert "pairwise --against output" in out and "6: 6 ok, 0 failed" in out


def test_a_run_removes_the_temporary_file_a_killed_run_left(capfd, tmp_path, files):
    from otcli.io.writers import temp_path

    a, b = files
    out = tmp_path / "m.parquet"
    left = temp_path(out)  # as atomic_write names it: what a kill -9 mid-write leaves
    left.write_bytes(b"half a table")
    mine = tmp_path / ".m.parquet.keep"  # a user's file that only looks alike
    mine.write_text("mine")
    assert otdist(capfd, "pairwise", *a, "--against", *b, "-o", out, "--resume")[0] == 0
    assert not left.exists() and mine.exists()
    assert len(pq.read_table(out)) == 6


def test_show_tells_the_empty_entries_of_failed_pairs(capfd, tmp_path, files):
    a, b = files
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,oops\n")
    out = tmp_path / "m.csv"
    assert otdist(capfd, "pairwise", *a, "--against", b[0], bad, "-o", out)[0] == 1
    code, text, err = otdist(capfd, "show", out)
    assert code == 0, err
    assert "6 stored, 3 nonzero, sparsity 0.0% of 6, 3 empty (NaN" in text

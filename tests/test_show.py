"""``otdist show``: every figure it prints equals numpy's on the same file.

Files are the ones earlier runs write (``--coupling``, ``--cost-matrix``, ``batch -o``,
``pairwise -o``); the oracle reads them back independently (numpy, pyarrow) and recomputes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from conftest import otdist
from otcli import plot
from otcli.io.stored import read_stored

pytestmark = pytest.mark.usefixtures("single_thread")


def write_csv(path: Path, points: np.ndarray) -> Path:
    rows = [",".join(repr(float(v)) for v in row) for row in points]
    path.write_text("\n".join(["x,y", *rows]) + "\n")
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(4)
    return (write_csv(tmp_path / "a.csv", rng.random((13, 2))),
            write_csv(tmp_path / "b.csv", rng.random((9, 2)) + 0.3))  # fmt: skip


def show_json(capfd, path: Path, *args: object) -> dict:
    code, out, err = otdist(capfd, "show", path, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def long_entries(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    return table["i"].to_numpy(), table["j"].to_numpy(), table["value"].to_numpy()


def assert_matches(got: dict, M: np.ndarray, nonzero: int, top: int = 10) -> None:
    """The summary of ``M`` (absent long entries as zeros) against numpy."""
    n, m = M.shape
    assert (got["n"], got["m"]) == (n, m)
    assert got["nonzero"] == nonzero
    assert got["sparsity"] == pytest.approx(1 - nonzero / M.size)
    for key, want in (("total", M.sum()), ("min", M.min()), ("max", M.max()),
                      ("row_min", M.sum(1).min()), ("row_max", M.sum(1).max()),
                      ("col_min", M.sum(0).min()), ("col_max", M.sum(0).max())):  # fmt: skip
        assert got[key] == pytest.approx(want, rel=1e-12, abs=1e-300), key
    order = np.argsort(-M, axis=None, kind="stable")[:top]
    want_top = [
        [int(i), int(j), float(M[i, j])]
        for i, j in zip(*np.unravel_index(order, M.shape), strict=True)
    ]
    assert got["top"] == want_top


def test_dense_coupling(capfd, tmp_path, pair):
    code, _, err = otdist(capfd, *pair, "--coupling", tmp_path / "P.npy", "--dtype", "float64")
    assert code == 0, err
    P = np.load(tmp_path / "P.npy")
    got = show_json(capfd, tmp_path / "P.npy")
    assert got["coupling"] is True and got["exact_shape"] is True and got["stored"] == P.size
    assert_matches(got, P, int(np.count_nonzero(P)))
    code, out, _ = otdist(capfd, "show", tmp_path / "P.npy", "--top", 3)
    assert code == 0
    assert "13 × 9" in out and "a coupling" in out and "strongest links" in out
    i, j, v = got["top"][0]
    assert [f"{i}", f"{j}", f"{v:.7g}"] in [line.split()[:3] for line in out.splitlines()]
    assert "sparsity 0.0%" in out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_long_coupling_and_cost(capfd, tmp_path, pair, suffix):
    pc, cm = tmp_path / f"P{suffix}", tmp_path / f"C{suffix}"
    code, _, err = otdist(capfd, *pair, "--coupling", pc, "--cost-matrix", cm,
                          "--coupling-threshold", 1e-6)  # fmt: skip
    assert code == 0, err
    for path, coupling in ((pc, True), (cm, False)):
        ii, jj, vv = long_entries(path)
        M = np.zeros((ii.max() + 1, jj.max() + 1))
        M[ii, jj] = vv
        got = show_json(capfd, path, "--top", 5)
        # otdist's Parquet metadata says n and m; CSV cannot
        assert got["stored"] == len(vv) and got["exact_shape"] is (suffix == ".parquet")
        assert_matches(got, M, int(np.count_nonzero(vv)), top=5)
        # the threshold drops under 1e-4 of the mass: it still reads as a coupling
        assert got["coupling"] is coupling


def test_show_plot_of_a_matrix_spans_its_range(capfd, tmp_path, pair):
    code, _, err = otdist(capfd, *pair, "--cost-matrix", tmp_path / "C.parquet")
    assert code == 0, err
    stored = read_stored(tmp_path / "C.parquet")
    fig = plot.stored_figure(stored)
    im = fig.findobj(match=lambda a: a.get_gid() == "matrix")[0]
    ii, jj, vv = long_entries(tmp_path / "C.parquet")
    C = np.zeros((13, 9))
    C[ii, jj] = vv
    # rows and columns reordered (correspondence analysis): C's rows and columns, permuted
    shown = np.asarray(im.get_array())
    rp = [int(np.flatnonzero(np.isclose(np.sort(C, 1), np.sort(r), rtol=1e-12).all(1))[0])
          for r in shown]  # fmt: skip
    cp = [int(np.flatnonzero(np.isclose(np.sort(C, 0).T, np.sort(c), rtol=1e-12).all(1))[0])
          for c in shown.T]  # fmt: skip
    assert sorted(rp) == list(range(13)) and sorted(cp) == list(range(9))
    np.testing.assert_allclose(shown, C[np.ix_(rp, cp)], rtol=1e-12)
    assert (im.colorbar.vmin, im.colorbar.vmax) == (C.min(), C.max())
    im = plot.matrix_figure(stored, reorder=False).findobj(match=lambda a: a.get_gid() == "matrix")[
        0
    ]
    np.testing.assert_allclose(np.asarray(im.get_array()), C, rtol=1e-12)  # file order
    code, _, err = otdist(capfd, "show", tmp_path / "C.parquet", "--plot", tmp_path / "C.pdf")
    assert code == 0, err
    assert (tmp_path / "C.pdf").read_bytes().startswith(b"%PDF-")


def test_batch_output(capfd, tmp_path, pair):
    (tmp_path / "m.csv").write_text(
        "id,a,b,eps\np,a.csv,b.csv,0.1\nq,b.csv,a.csv,0.05\nr,a.csv,gone.csv,0.1\n"
    )
    code, _, _ = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.jsonl")
    assert code == 1
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"]
    got = show_json(capfd, tmp_path / "r.jsonl")
    assert (got["rows"], got["ok"], got["failed"], got["kind"]) == (3, 2, 1, "batch")
    assert got["not_converged"] == sum(not r["converged"] for r in ok)
    costs = [r["cost"] for r in ok]
    assert got["cost"] == [min(costs), float(np.median(costs)), max(costs)]
    assert got["eps"] == [0.05, 0.1]
    assert got["errors"] == [["r", rows[2]["error"]]]
    code, out, err = otdist(capfd, "show", tmp_path / "r.jsonl", "--plot", tmp_path / "h.png")
    assert code == 0, err
    assert "3: 2 ok, 1 failed" in out and "gone.csv" in out
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_pairwise_outputs_are_drawn_with_their_mds(capfd, tmp_path, pair, suffix):
    c = write_csv(tmp_path / "c.csv", np.random.default_rng(0).random((7, 2)) - 0.5)
    out = tmp_path / f"D{suffix}"
    code, _, err = otdist(capfd, "pairwise", *pair, c, "-o", out)
    assert code == 0, err
    stored = read_stored(out)
    fig = plot.stored_figure(stored)
    assert len(fig.findobj(match=lambda a: a.get_gid() == "mds")[0].get_offsets()) == 3
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["a.csv", "b.csv", "c.csv"]
    code, text, err = otdist(capfd, "show", out, "--plot", tmp_path / "D.svg")
    assert code == 0, err
    assert (tmp_path / "D.svg").exists()
    if suffix == ".parquet":
        assert "6: 6 ok, 0 failed" in text  # 3 files: 6 pairs i ≤ j
    else:
        assert "3 × 3" in text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.txt", b"1", "unknown file type '.txt'; otdist show reads"),
        ("gone.npy", None, "no such file; check the path"),
        ("bad.npy", b"not numpy", "is not a NumPy .npy file (wrong magic bytes)"),
        ("t.csv", b"p,q\n1,2\n", "is neither a matrix (columns i, j, value) nor a batch or pairwise output (columns cost, status); found columns p, q"),
        ("neg.csv", b"i,j,value\n-1,0,0.5\n", "column i must hold row/column indices (integers ≥ 0)"),
    ],
)  # fmt: skip
def test_bad_files(capfd, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = otdist(capfd, "show", path)
    assert (code, out) == (2, "")
    assert err.startswith(f"Error: {path}: {message}") and err.count("\n") == 1


def test_pickled_and_3d_arrays_are_refused(capfd, tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 2)))
    code, _, err = otdist(capfd, "show", tmp_path / "o.npy")
    assert code == 2 and "never unpickles" in err
    code, _, err = otdist(capfd, "show", tmp_path / "c.npy")
    assert (
        code == 2
        and err == f"Error: {tmp_path / 'c.npy'}: holds a 3-D array; a matrix is 2-D (n × m)\n"
    )


def test_show_help(capfd):
    code, out, _ = otdist(capfd, "show", "--help")
    assert code == 0 and "--plot" in out and "FILE" in out


# --- files that broke show (issue 27) -------------------------------------------------------


def test_a_batch_whose_pairs_all_failed_is_valid_json_and_plain_text(capfd, tmp_path):
    """otdist's own output of a batch with no ok pair: --json raised "Out of range float
    values are not JSON compliant" (the NaN ranges) and the text said "nan … nan"."""
    (tmp_path / "m.csv").write_text("id,a,b\np,gone.csv,x.csv\nq,lost.csv,x.csv\n")
    code, _, _ = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.jsonl")
    assert code == 1
    got = show_json(capfd, tmp_path / "r.jsonl")
    assert (got["rows"], got["ok"], got["failed"]) == (2, 0, 2)
    assert got["cost"] == got["iterations"] == [None, None, None]
    code, out, err = otdist(capfd, "show", tmp_path / "r.jsonl")
    assert (code, err) == (0, "")
    assert "nan" not in out
    lines = {line.split()[0]: line.split(None, 1)[1].strip() for line in out.splitlines()}
    assert lines["cost"] == lines["iterations"] == "-"


def test_nan_and_infinite_values_in_a_result_table(capfd, tmp_path):
    """A .jsonl row with NaN and Infinity (Python's json writes them): null in JSON; the
    finite rows still give the ranges."""
    (tmp_path / "r.jsonl").write_text(
        '{"id": "a", "status": "ok", "cost": NaN, "iterations": Infinity, "eps": 0.1}\n'
        '{"id": "b", "status": "ok", "cost": 2.5, "iterations": 7, "eps": 0.1}\n'
        '{"id": "c", "status": "ok", "cost": 1.5, "iterations": 9, "eps": 0.2}\n'
    )
    got = show_json(capfd, tmp_path / "r.jsonl")
    assert got["cost"] == [1.5, 2.0, 2.5] and got["iterations"] == [7, 8, 9]
    (tmp_path / "n.jsonl").write_text('{"id": "a", "status": "ok", "cost": NaN, "eps": NaN}\n')
    got = show_json(capfd, tmp_path / "n.jsonl")
    assert got["cost"] == [None, None, None] and got["eps"] == []


def test_long_matrix_with_a_huge_index(capfd, tmp_path):
    """Row 2^62 made the row sums a 2^62-entry array (numpy's "array is too big"); the sums
    now run over the rows present. Index 2^63 (uint64) was a negative minlength: refused.
    The heat map, which bins every row, refuses such a matrix by name."""
    pa = pytest.importorskip("pyarrow")
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"i": [2**62, 0], "j": [0, 1], "value": [0.75, 0.25]}), big)
    got = show_json(capfd, big)
    assert (got["n"], got["m"], got["stored"], got["total"]) == (2**62 + 1, 2, 2, 1.0)
    assert (got["row_min"], got["row_max"], got["col_min"], got["col_max"]) == (
        0.0, 0.75, 0.25, 0.75,
    )  # fmt: skip
    assert got["top"] == [[2**62, 0, 0.75], [0, 1, 0.25]]
    code, out, err = otdist(capfd, "show", big, "--plot", tmp_path / "big.png")
    assert (code, out) == (2, "")
    assert err == (
        f"Error: {big}: a heat map of a 4,611,686,018,427,387,905 × 2 matrix bins every row "
        "and column in memory; it draws at most 67,108,864 a side (the summary itself has no "
        "limit)\n"
    )
    assert not (tmp_path / "big.png").exists()
    huge = tmp_path / "huge.parquet"
    table = pa.table({"i": pa.array([2**63], pa.uint64()), "j": [0], "value": [1.0]})
    pq.write_table(table, huge)
    code, out, err = otdist(capfd, "show", huge)
    assert (code, out) == (2, "")
    assert err == (
        f"Error: {huge}: column i holds the index 9223372036854775808, beyond the largest a "
        "matrix can have (9223372036854775806 = 2^63 − 2)\n"
    )


def test_deeply_nested_jsonl_is_an_error_not_a_recursion_error(capfd, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"cost": 1, "status": "ok", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    code, out, err = otdist(capfd, "show", path)
    assert (code, out) == (2, "")
    assert err == (
        f"Error: {path}: line 1 is JSON nested too deeply to read; the file is damaged: rerun "
        "with --overwrite\n"
    )


def test_plot_follows_the_overwrite_policy(capfd, tmp_path):
    pytest.importorskip("matplotlib")
    np.save(tmp_path / "P.npy", np.full((3, 4), 1 / 12))
    pic = tmp_path / "pic.png"
    pic.write_bytes(b"mine")
    code, out, err = otdist(capfd, "show", tmp_path / "P.npy", "--plot", pic)
    assert (code, out) == (2, "")
    assert err == f"Error: --plot: {str(pic)!r} exists; use --overwrite to replace it\n"
    assert pic.read_bytes() == b"mine"
    code, out, err = otdist(capfd, "show", tmp_path / "P.npy", "--plot", pic, "--overwrite")
    assert code == 0, err
    assert pic.read_bytes().startswith(b"\x89PNG")


def test_plot_never_replaces_the_file_shown(capfd, tmp_path):
    shown = tmp_path / "P.png.npy"
    np.save(shown, np.full((3, 4), 1 / 12))
    link = tmp_path / "P.png"
    link.symlink_to(shown)
    before = shown.read_bytes()
    code, out, err = otdist(capfd, "show", shown, "--plot", link, "--overwrite")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"Error: --plot: {str(link)!r} is the input file")
    assert shown.read_bytes() == before


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_show_draws_a_divergence_matrix_as_pairwise_plot_does(
    capfd, tmp_path, pair, monkeypatch, suffix
):
    """One MDS rule (√value) in ``pairwise --plot`` and ``show``; a labelled CSV cannot say
    whether it holds cost or divergence, so it is drawn as "value" (was: "cost", and the
    two maps of the same data differed: show embedded S, pairwise √S)."""
    pytest.importorskip("matplotlib")
    c = write_csv(tmp_path / "c.csv", np.random.default_rng(2).random((7, 2)) + 1.5)
    out = tmp_path / f"D{suffix}"
    figures = []
    real = plot.pairwise_file_figure
    monkeypatch.setattr(plot, "pairwise_file_figure",
                        lambda *a, **k: figures.append(real(*a, **k)) or figures[-1])  # fmt: skip
    code, _, err = otdist(capfd, "pairwise", *pair, c, "-o", out, "--divergence",
                          "--plot", tmp_path / "p.png")  # fmt: skip
    assert code == 0, err
    shown = plot.stored_figure(read_stored(out))
    maps = [f.findobj(match=lambda a: a.get_gid() == "mds")[0].get_offsets() for f in
            (figures[-1], shown)]  # fmt: skip
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-12)
    what = "value" if suffix == ".csv" else "divergence"
    titles = " ".join(ax.get_title() for ax in shown.axes)
    assert f"pairwise {what}, 3 files" in titles and f"classical MDS of √{what}" in titles
    assert "cost" not in titles


def test_a_long_coupling_is_placed_by_i_j_and_reordered_to_show_its_band(capfd, tmp_path):
    """A coupling in long format, its points in an arbitrary order and its rows shuffled in
    the file: drawn by (i, j) and reordered by correspondence analysis, the band it is made
    of shows (in file order it looked like noise). Oracle: the band matrix we built."""
    rng = np.random.default_rng(7)
    n = 200
    t = np.arange(n)
    band = np.exp(-(((t[:, None] - t[None]) / 6.0) ** 2))  # a smooth monotone transport
    band /= band.sum()
    pi, pj = rng.permutation(n), rng.permutation(n)  # point k of the band is row pi[k]
    ii, jj = np.nonzero(band > 1e-12)
    order = rng.permutation(ii.size)
    rows = ["i,j,value"] + [f"{pi[i]},{pj[j]},{float(band[i, j])!r}" for i, j in
                            zip(ii[order], jj[order], strict=True)]  # fmt: skip
    path = tmp_path / "P.csv"
    path.write_text("\n".join(rows) + "\n")
    stored = read_stored(path)

    def near_diagonal(fig) -> float:
        im = fig.findobj(match=lambda a: a.get_gid() == "matrix")[0]
        cells = np.ma.filled(np.asarray(im.get_array()), 0.0) * 1.0
        k = len(cells)
        close = np.abs(np.arange(k)[:, None] - np.arange(k)[None]) <= 3
        anti = np.abs(np.arange(k)[:, None] + np.arange(k)[None] - (k - 1)) <= 3
        return max(cells[close].sum(), cells[anti].sum()) / cells.sum()

    from otcli.plot.many import matrix_figure, seriation

    # the keys put each point of the band back in its place (up to the direction)
    u, v = seriation(stored)
    inverse = np.argsort(pi)
    rank = np.argsort(np.argsort(u))[pi]  # the rank of band point k
    assert abs(np.corrcoef(rank, t)[0, 1]) > 0.99
    assert abs(np.corrcoef(np.argsort(np.argsort(v))[pj], t)[0, 1]) > 0.99
    assert inverse.size == n
    assert near_diagonal(matrix_figure(stored, cells=40)) > 0.9
    assert near_diagonal(matrix_figure(stored, cells=40, reorder=False)) < 0.2  # file order
    fig = matrix_figure(stored, cells=40)
    assert "reordered" in fig.axes[0].get_title() and "reordered" in fig.axes[0].get_xlabel()
    label = fig.axes[1].get_ylabel()
    assert label == "mean of value over\nblocks of 5 × 5\n(log scale, floor max/1,000)"
    code, _, err = otdist(capfd, "show", path, "--plot", tmp_path / "P.png", "--plot-dpi", 30)
    assert code == 0, err
    from PIL import Image

    with Image.open(tmp_path / "P.png") as png:
        assert png.size == (210, 165)  # 7 × 5.5 inches at 30 dpi
        assert png.info["dpi"] == pytest.approx((30, 30), abs=0.01)

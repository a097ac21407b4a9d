"""Columns a user can see: pandas index columns, ranges, --exclude, --id, and stdin by content.

Files are written the way pandas writes them (``DataFrame.to_csv()`` with its index, a frame
read back and written again, ``to_parquet()`` of a filtered frame), and every number is checked
against the same data handed to POT or numpy without the column that should not count.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np
import ot
import pytest

import otcli
from conftest import otdist
from otcli.errors import InputError

pd = pytest.importorskip("pandas")
datasets = pytest.importorskip("sklearn.datasets")

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
CELLS_A, CELLS_B = SAMPLE / "cells_a.tsv", SAMPLE / "cells_b.tsv"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _iris(
    tmp_path: Path, classes: tuple[int, int] = (1, 2), *, target: bool = False, **to_csv: object
) -> tuple[list[Path], list]:
    """Two iris classes as CSV files written by pandas (default: with its index)."""
    bunch = datasets.load_iris(as_frame=True)
    frame = bunch.frame if target else bunch.frame.drop(columns="target")
    paths, points = [], []
    for label in classes:
        part = frame[bunch.target == label]
        path = tmp_path / f"iris_{label}.csv"
        part.to_csv(path, **to_csv)
        paths.append(path)
        points.append(part[IRIS_COLUMNS].to_numpy(float))
    return paths, points


def _sinkhorn_cost(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """⟨P, C⟩ of POT's converged log-domain Sinkhorn plan, uniform weights."""
    M = ot.dist(x, y)
    P = ot.sinkhorn(
        np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M, eps,
        method="sinkhorn_log", stopThr=1e-12, numItermax=100000,
    )  # fmt: skip
    return float((P * M).sum())


# --- a pandas index column --------------------------------------------------------------------


def test_pandas_index_of_iris_is_dropped_with_a_note(capfd, tmp_path):
    (a, b), (x, y) = _iris(tmp_path)  # to_csv() default: index 50..99 and 100..149, no header
    code, out, err = otdist(capfd, a, b, "--eps", "0.1", "--json")
    assert code == 0, err
    got = json.loads(out)
    # Without the fix the index is a coordinate: cost ≈ 50² + 2.9 = 2504 "in 5-D".
    assert got["dim"] == 4 and got["columns"] == IRIS_COLUMNS
    assert got["cost"] == pytest.approx(_sinkhorn_cost(x, y, 0.1), rel=1e-4)
    assert got["cost"] == pytest.approx(2.9022, abs=5e-4)
    assert err.splitlines() == [
        f"Note: {a}: dropped column 0 (a pandas index: empty header, values 50..99); "
        "use --columns to keep it",
        f"Note: {b}: dropped column 0 (a pandas index: empty header, values 100..149); "
        "use --columns to keep it",
    ]


def test_index_read_back_as_unnamed_0_is_dropped(tmp_path):
    (path, _), (x, _) = _iris(tmp_path, (0, 1))
    pd.read_csv(path).to_csv(path, index=False)  # the index now has the header 'Unnamed: 0'
    cloud = otcli.read_cloud(path)
    assert cloud.columns == tuple(IRIS_COLUMNS)
    np.testing.assert_array_equal(cloud.points, x)
    assert cloud.notes == (
        "dropped column 0 (a pandas index: header 'Unnamed: 0', values 0..49); "
        "use --columns to keep it",
    )


def test_shuffled_index_and_parquet_index_are_dropped(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((30, 3)), columns=["x", "y", "z"])
    part = frame.sample(frac=0.5, random_state=1)  # index: 15 distinct integers, shuffled
    part.to_csv(tmp_path / "s.csv")
    part.to_parquet(tmp_path / "s.parquet")  # a non-range index is stored as a column
    for name in ("s.csv", "s.parquet"):
        cloud = otcli.read_cloud(tmp_path / name)
        assert cloud.columns == ("x", "y", "z"), name
        np.testing.assert_array_equal(cloud.points, part.to_numpy())
        (note,) = cloud.notes
        assert note.startswith("dropped column ")
        # CSV: told by its values; Parquet: by the file's pandas metadata
        assert ("15 distinct integers in " if name == "s.csv" else "the pandas index") in note


def test_index_like_columns_that_are_data_are_kept(tmp_path):
    # An empty header over non-integers is data; so is a headerless first column 0..n−1.
    (tmp_path / "a.csv").write_text(",x\n0.5,1\n1.5,2\n2.5,3\n")
    (tmp_path / "b.csv").write_text("0,7\n1,8\n2,9\n")
    for name, columns in (("a.csv", ("", "x")), ("b.csv", ("0", "1"))):
        cloud = otcli.read_cloud(tmp_path / name)
        assert cloud.columns == columns and cloud.notes == () and cloud.dim == 2


def test_columns_keeps_the_index(tmp_path):
    (a, _), _ = _iris(tmp_path, (0, 1))
    cloud = otcli.read_cloud(a, columns=["0-4"])
    assert cloud.columns == ("", *IRIS_COLUMNS) and cloud.notes == ()
    np.testing.assert_array_equal(cloud.points[:, 0], np.arange(50))


def test_label_column_is_left_out_with_a_note_and_columns_keeps_it(capfd, tmp_path):
    (a, b), (x, y) = _iris(tmp_path, target=True, index=False)
    code, out, err = otdist(capfd, a, b, "--eps", "0.1", "--json")
    assert code == 0
    assert err.splitlines()[0] == (
        f"Note: {a}: left out column 'target' (named like a class label, not a coordinate); "
        "use --columns to keep it"
    )
    got = json.loads(out)
    assert got["columns"] == IRIS_COLUMNS
    assert got["cost"] == pytest.approx(_sinkhorn_cost(x, y, 0.1), rel=1e-4)
    code, out, err = otdist(capfd, a, b, "--columns", "0-4", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["columns"] == [*IRIS_COLUMNS, "target"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_text_columns_are_left_out_with_a_note(capfd, tmp_path, suffix):
    """A species name beside the measurements: left out (as pandas writes it, in every
    format), the cost that of the numeric columns alone; --columns naming it is an error."""
    pd = pytest.importorskip("pandas")
    _, (x, y) = _iris(tmp_path, index=False)
    paths = []
    for name, pts in (("a", x), ("b", y)):
        frame = pd.DataFrame(pts, columns=IRIS_COLUMNS)
        frame.insert(
            2, "species", ["setosa", "versicolor"] * (len(pts) // 2) + ["x"] * (len(pts) % 2)
        )
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
        paths.append(path)
    code, out, err = otdist(capfd, *paths, "--eps", "0.1", "--json")
    assert code == 0
    assert f"Note: {paths[0]}: left out column 'species' (" in err
    assert "coordinates are the numeric columns; use --columns to choose them" in err
    got = json.loads(out)
    assert got["columns"] == IRIS_COLUMNS
    assert got["cost"] == pytest.approx(_sinkhorn_cost(x, y, 0.1), rel=1e-4)
    code, _, err = otdist(capfd, *paths, "--columns", "species")
    assert code == 2 and "species" in err


def test_a_numeric_column_with_a_stray_word_is_still_an_error(capfd, tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,oops\n2,3\n4,5\n")
    (tmp_path / "b.csv").write_text("x,y\n1,2\n2,3\n")
    code, out, err = otdist(capfd, tmp_path / "a.csv", tmp_path / "b.csv")
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"Error: {tmp_path / 'a.csv'}: line 2, column 'y': 'oops' is not a number; use --columns "
        "to pick only the numeric columns, or --exclude to leave out label columns (--id for a "
        "column of point ids)"
    )


# --- ranges and --exclude, every reader -------------------------------------------------------


@pytest.fixture
def table(tmp_path):
    """The same 6-column table as CSV (header x0..x5), Parquet and NPY."""
    values = np.random.default_rng(2).random((20, 6))
    frame = pd.DataFrame(values, columns=[f"x{k}" for k in range(6)])
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    np.save(tmp_path / "t.npy", values)
    return tmp_path, values


CASES = {  # options → the columns they pick
    "closed range": ({"columns": ["1-3"]}, [1, 2, 3]),
    "open range": ({"columns": ["4-"]}, [4, 5]),
    "mixed": ({"columns": ["0", "2-3", "5"]}, [0, 2, 3, 5]),
    "repeats once": ({"columns": ["1-2", "2"]}, [1, 2]),
    "exclude": ({"exclude": ["0", "5"]}, [1, 2, 3, 4]),
    "exclude a range": ({"exclude": ["2-"]}, [0, 1]),
    "both": ({"columns": ["1-"], "exclude": ["3"]}, [1, 2, 4, 5]),
    "range skips weights": ({"columns": ["0-3"], "weights": "2"}, [0, 1, 3]),
}


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
@pytest.mark.parametrize("case", CASES)
def test_ranges_and_exclude(table, suffix, case):
    folder, values = table
    options, picked = CASES[case]
    cloud = otcli.read_cloud(folder / f"t{suffix}", **options)
    np.testing.assert_array_equal(cloud.points, values[:, picked])
    names = [f"x{k}" if suffix != ".npy" else str(k) for k in picked]
    assert cloud.columns == tuple(names)
    if "weights" in options:
        np.testing.assert_allclose(cloud.weights, values[:, 2] / values[:, 2].sum())


def test_names_and_ranges_mix(table):
    folder, values = table
    cloud = otcli.read_cloud(folder / "t.csv", columns=["x5", "1-2"], exclude=["x2"])
    np.testing.assert_array_equal(cloud.points, values[:, [5, 1]])


BAD = {
    "backwards": ({"columns": ["3-1"]}, "column range '3-1' runs backwards; write it as 1-3"),
    "past the end": (
        {"columns": ["4-6"]},
        "column range '4-6' goes past the last column; x0, x1, x2, x3, x4, x5 "
        "(or 0-based indices 0-5)",
    ),
    "unknown exclude": (
        {"exclude": ["target"]},
        "no column to --exclude 'target'; available: x0, x1, x2, x3, x4, x5 "
        "(or 0-based indices 0-5)",
    ),
    "nothing left": ({"exclude": ["0-"]}, "--exclude leaves no coordinate columns; exclude fewer"),
    "id as coordinate": (
        {"columns": ["x0", "x1"], "id_column": "x1"},
        "column 'x1' is the --id column; it cannot also be a coordinate",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_column_options_name_the_file_and_the_fix(table, case):
    folder, _ = table
    options, message = BAD[case]
    path = folder / "t.csv"
    with pytest.raises(InputError) as info:
        otcli.read_cloud(path, **options)
    assert str(info.value) == f"{path}: {message}"


def test_exclude_and_ranges_on_the_command_line(capfd, table):
    folder, _ = table
    a = folder / "t.csv"
    code, out, err = otdist(capfd, a, folder / "t.npy", "--columns", "0-2", "--json")
    assert code == 0, err
    assert json.loads(out)["columns"] == ["x0", "x1", "x2"]
    assert json.loads(out)["columns_b"] == ["0", "1", "2"]
    code, out, err = otdist(capfd, a, a, "--exclude", "x1,3-")
    assert code == 0, err
    assert "columns     x0, x2\n" in out
    code, out, err = otdist(capfd, a, a, "--exclude", "0-")
    assert (code, out) == (2, "")
    assert err == f"Error: {a}: --exclude leaves no coordinate columns; exclude fewer\n"


def test_text_summary_lists_columns_and_shortens_long_lists(capfd, tmp_path):
    from otcli import render

    code, out, err = otdist(capfd, CELLS_A, CELLS_B, "--id", "id")
    assert code == 0, err
    assert "columns     pc1, pc2, pc3, pc4, pc5\n" in out
    many = [f"pixel_{k}" for k in range(64)]
    line = render._column_list(many)
    assert line == "pixel_0, pixel_1, pixel_2, pixel_3, pixel_4, pixel_5, …, pixel_63 (64 columns)"


# --- standard input by content ----------------------------------------------------------------


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _json(capfd, *args):
    code, out, err = otdist(capfd, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kind", ["parquet", "gzip csv", "npy", "npz"])
def test_stdin_is_read_by_its_content(capfd, monkeypatch, tmp_path, table, kind):
    folder, values = table
    reference = _json(capfd, folder / "t.npy", folder / "t.csv")
    if kind == "parquet":
        data = (folder / "t.parquet").read_bytes()
    elif kind == "gzip csv":
        data = gzip.compress((folder / "t.csv").read_bytes())
    elif kind == "npy":
        data = (folder / "t.npy").read_bytes()
    else:
        buffer = io.BytesIO()
        np.savez(buffer, points=values, weights=np.ones(len(values)))
        data = buffer.getvalue()
    _stdin(monkeypatch, data)
    got = _json(capfd, "-", folder / "t.csv")
    assert (got["n"], got["dim"]) == (20, 6)
    assert got["cost"] == pytest.approx(reference["cost"], rel=1e-12)


def test_stdin_binary_in_no_known_format_is_refused_with_the_list(capfd, monkeypatch, tmp_path):
    (tmp_path / "b.csv").write_text("1,2\n")
    _stdin(monkeypatch, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, out, err = otdist(capfd, "-", tmp_path / "b.csv")
    assert (code, out) == (2, "")
    assert err == (
        "Error: <stdin>: is binary data in no format standard input takes (it starts with bytes "
        "89 50 4e 47 0d 0a 1a 0a); stdin takes CSV or TSV text (UTF-8, optionally gzipped), "
        "Parquet, NPY or NPZ, told apart by their first bytes; give other files by path\n"
    )


def test_stdin_gzip_tsv_with_ids(capfd, monkeypatch, tmp_path):
    reference = _json(capfd, CELLS_A, CELLS_B, "--id", "id")
    _stdin(monkeypatch, gzip.compress(CELLS_A.read_bytes()))
    coupling = tmp_path / "P.csv"
    got = _json(capfd, "-", CELLS_B, "--id", "id", "--coupling", coupling)
    assert got["cost"] == reference["cost"] and got["columns"] == reference["columns"]
    P = pd.read_csv(coupling)
    a = pd.read_csv(CELLS_A, sep="\t")["id"].to_numpy()
    assert (P["i_id"].to_numpy() == a[P["i"]]).all()


# --- point ids in couplings -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv"])
def test_id_puts_the_files_point_ids_in_the_coupling(capfd, tmp_path, suffix):
    coupling = tmp_path / f"P{suffix}"
    code, out, err = otdist(capfd, CELLS_A, CELLS_B, "--id", "id", "--coupling", coupling, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["columns"] == ["pc1", "pc2", "pc3", "pc4", "pc5"]
    a = pd.read_csv(CELLS_A, sep="\t", dtype={"id": str})
    b = pd.read_csv(CELLS_B, sep="\t", dtype={"id": str})
    if suffix == ".parquet":
        P = pd.read_parquet(coupling)
    else:
        P = pd.read_csv(coupling, sep="\t" if suffix == ".tsv" else ",")
    assert list(P.columns) == ["i", "j", "value", "i_id", "j_id"]
    assert len(P) > len(a)  # an entropic plan: many entries
    assert (P["i_id"].to_numpy() == a["id"].to_numpy()[P["i"]]).all()
    assert (P["j_id"].to_numpy() == b["id"].to_numpy()[P["j"]]).all()
    # Joined back by id, the plan moves each file's points: ⟨P, C⟩ is the reported cost.
    joined = P.merge(a, left_on="i_id", right_on="id").merge(
        b, left_on="j_id", right_on="id", suffixes=("_a", "_b")
    )
    pcs = [f"pc{k}" for k in range(1, 6)]
    diff = joined[[f"{c}_a" for c in pcs]].to_numpy() - joined[[f"{c}_b" for c in pcs]].to_numpy()
    assert float((joined["value"] * (diff**2).sum(1)).sum()) == pytest.approx(got["cost"], rel=1e-5)


def test_id_with_a_dense_coupling_is_refused_before_solving(capfd, tmp_path):
    coupling = tmp_path / "P.npy"
    code, out, err = otdist(capfd, CELLS_A, CELLS_B, "--id", "id", "--coupling", coupling)
    assert (code, out) == (2, "")
    assert err == (
        f"Error: --id: {coupling}: a dense .npy coupling has no room for point ids; write "
        ".parquet, .csv or .tsv (long format i, j, value, i_id, j_id)\n"
    )
    assert not coupling.exists()


def test_batch_coupling_dir_carries_ids(capfd, tmp_path):
    (tmp_path / "m.csv").write_text(f"id,a,b\nab,{CELLS_A},{CELLS_B}\n")
    out, cdir = tmp_path / "r.jsonl", tmp_path / "P"
    cdir.mkdir()
    code, _, err = otdist(
        capfd, "batch", tmp_path / "m.csv", "-o", out, "--id", "id",
        "--coupling-dir", cdir, "--coupling-format", "parquet",
    )  # fmt: skip
    assert code == 0, err
    P = pd.read_parquet(cdir / "ab.parquet")
    a = pd.read_csv(CELLS_A, sep="\t")["id"].to_numpy()
    b = pd.read_csv(CELLS_B, sep="\t")["id"].to_numpy()
    assert (P["i_id"].to_numpy() == a[P["i"]]).all() and (P["j_id"].to_numpy() == b[P["j"]]).all()
    code, _, err = otdist(
        capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r2.jsonl", "--id", "id",
        "--coupling-dir", cdir,
    )  # fmt: skip
    assert code == 2
    assert err == (
        "Error: --id: point ids go in long-format couplings: add --coupling-format parquet\n"
    )


def test_id_column_from_parquet_and_npy_as_text(tmp_path):
    frame = pd.DataFrame({"cell": [10, 11, 12], "x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 1.0]})
    frame.to_parquet(tmp_path / "c.parquet", index=False)
    np.save(tmp_path / "c.npy", frame.to_numpy(float))
    for name, id_column, columns in (("c.parquet", "cell", ("x", "y")), ("c.npy", "0", ("1", "2"))):
        cloud = otcli.read_cloud(tmp_path / name, id_column=id_column)
        assert list(cloud.ids) == ["10", "11", "12"], name
        assert cloud.columns == columns
        np.testing.assert_array_equal(cloud.points, frame[["x", "y"]].to_numpy())


def test_clouds_from_arrays_label_columns_by_index():
    from otcli.cloud import make_cloud

    c = make_cloud(np.zeros((3, 2)))
    assert c.columns == ("0", "1") and c.ids.size == 0 and c.notes == ()
    with pytest.raises(InputError, match="3 column labels for 2 coordinates"):
        make_cloud(np.zeros((3, 2)), columns=["a", "b", "c"])

"""Readers give the same cloud from every format; bad files fail with a message naming the
file, the place and the fix; writers stream blocks and leave nothing behind when they fail."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import otcli.io as otio
from otcli.cloud import Cloud
from otcli.errors import InputError, OptionError
from otcli.io import atomic_write, check_output_path, read_cloud, write_matrix

POINTS = np.array([[0.5, -1.0, 2.0], [1.5, 3.25, -0.125], [2.0, 0.0, 1e-3], [-4.0, 5.5, 6.0]])
MASSES = np.array([1.0, 2.0, 3.0, 4.0])
TABLE = np.column_stack([POINTS, MASSES])  # columns x, y, z, w
NAMES = ["x", "y", "z", "w"]


# --- helpers -------------------------------------------------------------------------------


def text_table(sep: str = ",", *, header: bool = True, values: np.ndarray = TABLE) -> str:
    """``values`` as delimited text, floats written exactly (repr round-trips)."""
    lines = [sep.join(NAMES[: values.shape[1]])] if header else []
    lines += [sep.join(repr(float(v)) for v in row) for row in values]
    return "\n".join(lines) + "\n"


def write(path: Path, content: str | bytes | Callable[[Path], object]) -> Path:
    """Create ``path`` from text, bytes, or a function that writes it."""
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content(path)
    return path


def assert_cloud(cloud: Cloud, points: np.ndarray, masses: np.ndarray | None, source: str) -> None:
    """The one check every reader test makes: exact points, normalised weights, source."""
    expected_w = np.full(len(points), 1 / len(points)) if masses is None else masses / masses.sum()
    assert cloud.points.dtype == np.float64
    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_allclose(cloud.weights, expected_w, rtol=1e-15)
    assert cloud.source == source


def assert_refused(path: Path | str, *phrases: str, **kwargs: object) -> None:
    """``read_cloud`` raises InputError for ``path`` whose message holds every phrase."""
    with pytest.raises(InputError) as info:
        read_cloud(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.where == str(path)
    assert message.startswith(f"{path}: ")
    for phrase in phrases:
        assert phrase.lower() in message.lower(), message


def parquet(columns: dict[str, object]) -> Callable[[Path], None]:
    return lambda path: pq.write_table(pa.table(columns), path)


def npsave(array: object, **kwargs: object) -> Callable[[Path], None]:
    return lambda path: np.save(path, array, **kwargs)  # type: ignore[arg-type]


def npsavez(**arrays_: object) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays_)  # type: ignore[arg-type]


# --- every format gives the same cloud -------------------------------------------------------


def _txt(path: Path) -> None:
    rows = "".join("  " + " \t ".join(repr(float(v)) for v in row) + "  # ok\n" for row in TABLE)
    path.write_text(f"# made by hand\n\nx   y\tz w\n{rows}\n")


FORMATS = {
    "csv": ("c.csv", text_table(","), {"weights": "w"}),
    "csv-headerless": ("c.csv", text_table(",", header=False), {"weights": "3"}),
    "csv-upper-case": ("C.CSV", text_table(","), {"weights": "w"}),
    "csv.gz": ("c.csv.gz", gzip.compress(text_table(",").encode()), {"weights": "w"}),
    "tsv": ("t.tsv", text_table("\t"), {"weights": "w"}),
    "txt": ("t.txt", _txt, {"weights": "w"}),
    "parquet": ("p.parquet", parquet(dict(zip(NAMES, TABLE.T, strict=True))), {"weights": "w"}),
    "parquet-int": (
        "p.parquet",
        parquet({"x": POINTS[:, 0], "y": POINTS[:, 1], "z": POINTS[:, 2], "w": [1, 2, 3, 4]}),
        {"weights": "w"},
    ),
    "npy": ("a.npy", npsave(TABLE), {"weights": 3}),
    "npz": ("a.npz", npsavez(points=POINTS, weights=MASSES), {}),
    "npz-weights-by-name": (
        "a.npz",
        npsavez(points=POINTS, weights=MASSES),
        {"weights": "weights"},
    ),
    "npz-column-weights": ("a.npz", npsavez(points=POINTS, weights=MASSES[:, None]), {}),
    "npz-single-array": ("a.npz", npsavez(cloud=TABLE), {"weights": "3"}),
}


@pytest.mark.parametrize(("name", "content", "kwargs"), FORMATS.values(), ids=FORMATS.keys())
def test_every_format_reads_the_same_cloud(
    tmp_path: Path, name: str, content: object, kwargs: dict[str, object]
) -> None:
    path = write(tmp_path / name, content)  # type: ignore[arg-type]
    assert_cloud(read_cloud(path, **kwargs), POINTS, MASSES, str(path))  # type: ignore[arg-type]


def test_stdin_reads_csv() -> None:
    stdin = io.BytesIO(text_table(",").encode())
    assert_cloud(read_cloud("-", weights="w", stdin=stdin), POINTS, MASSES, "<stdin>")


def test_without_weights_masses_are_uniform(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", text_table(",", values=POINTS))
    assert_cloud(read_cloud(path), POINTS, None, str(path))


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("c.csv", ["z", "x"]),
        ("c.csv", ["2", "0"]),
        ("c.csv", [2, 0]),
        ("c.tsv", [" z", 0]),
        ("a.npy", [2, 0]),
        ("a.npz", ["2", "0"]),
        ("p.parquet", ["z", 0]),
    ],
)
def test_columns_by_name_and_index(tmp_path: Path, name: str, columns: list[object]) -> None:
    fmt = {"c.csv": "csv", "c.tsv": "tsv", "a.npy": "npy", "a.npz": "npz", "p.parquet": "parquet"}
    _, content, _ = FORMATS[fmt[name]]
    path = write(tmp_path / name, content)  # type: ignore[arg-type]
    cloud = read_cloud(path, columns=columns)  # type: ignore[arg-type]
    masses = MASSES if name == "a.npz" else None  # the archive's own weights array
    assert_cloud(cloud, POINTS[:, [2, 0]], masses, str(path))


def test_npz_weights_argument_takes_a_column_of_points(tmp_path: Path) -> None:
    path = write(tmp_path / "a.npz", npsavez(points=TABLE, weights=np.ones(4)))
    assert_cloud(read_cloud(path, weights=3), POINTS, MASSES, str(path))


def test_one_dimensional_npy_is_points_on_a_line(tmp_path: Path) -> None:
    path = write(tmp_path / "line.npy", npsave(np.array([3, 1, 2], dtype=np.int32)))
    assert_cloud(read_cloud(path), np.array([[3.0], [1.0], [2.0]]), None, str(path))


@pytest.mark.parametrize(
    ("name", "content", "columns", "expected"),
    [
        ("one-point.csv", "x,y\n1,2\n", None, [[1, 2]]),
        ("headerless.csv", "1,2\n3,4\n", None, [[1, 2], [3, 4]]),
        (
            "comments-first.csv",
            "# made today\n\n  \nx,y\n1,2\n# note\n3,4\n",
            None,
            [[1, 2], [3, 4]],
        ),
        ("numeric-name.csv", "x,2019\n1,2\n", None, [[1, 2]]),
        # pandas' to_csv() index column (empty header, 0..n-1) is dropped: test_io_columns
        ("empty-index-name.csv", ",x\n0,5\n1,6\n", None, [[5], [6]]),
        ("bom-crlf.csv", "\ufeffx,y\r\n1,2\r\n", None, [[1, 2]]),
        ("quoted.csv", 'x,y\n"1"," 2 "\n', None, [[1, 2]]),
        ("number-forms.csv", "1e3,-.5\n+2.,INF\n", [0], [[1e3], [2.0]]),
        ("labels-no-header.csv", "1,2,cat\n3,4,dog\n", [0, 1], [[1, 2], [3, 4]]),
        ("labels-header.csv", "name,x\ncat,1\ndog,2\n", ["x"], [[1], [2]]),
        ("duplicate-by-index.csv", "x,x\n1,2\n", [1], [[2]]),
        ("spaces.txt", "1 2\n\n3\t 4 # c\n", None, [[1, 2], [3, 4]]),
        ("header.txt", "#!\n  a  b\n1 2\n", ["b"], [[2]]),
    ],
)
def test_header_detection(
    tmp_path: Path, name: str, content: str, columns: list[object] | None, expected: list
) -> None:
    path = write(tmp_path / name, content)
    cloud = read_cloud(path, columns=columns)  # type: ignore[arg-type]
    assert_cloud(cloud, np.array(expected, dtype=float), None, str(path))


@settings(max_examples=25, deadline=None)
@given(
    values=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 4)),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    fmt=st.sampled_from([("r.csv", ","), ("r.tsv", "\t"), ("r.txt", "  ")]),
    header=st.booleans(),
)
def test_text_round_trip_is_exact(
    tmp_path_factory: pytest.TempPathFactory, values: np.ndarray, fmt: tuple, header: bool
) -> None:
    path = tmp_path_factory.mktemp("rt") / fmt[0]
    write(path, text_table(fmt[1], header=header, values=values))
    assert_cloud(read_cloud(path), values, None, str(path))


# --- bad input: InputError naming the file, the place and the fix ---------------------------

BAD_INPUT = {
    "empty": ("e.csv", "", {}, ["the file is empty"]),
    "blank": ("e.csv", "\n  \n", {}, ["empty"]),
    "only-comments": ("c.txt", "# nothing here\n\n", {}, ["no data"]),
    "header-only": ("h.csv", "x,y\n", {}, ["header line", "no data rows"]),
    "label-column": (
        "l.csv",
        "x,y,label\n1,2,a\n",
        {"columns": ["x", "y", "label"]},  # by default a text column is left out
        ["line 2", "column 'label'", "'a' is not a number", "--columns"],
    ),
    "bad-cell": ("b.csv", "x,y\n1,2\n3,oops\n", {}, ["line 3", "column 'y'", "'oops'"]),
    "bad-cell-headerless": ("b.tsv", "1\t2\n3\t?\n", {}, ["line 2", "column 1 (0-based)", "'?'"]),
    "wrong-separator": ("s.csv", "x;y\n1;2\n", {}, ["'1;2'", "comma-separated"]),
    "empty-cell": ("c.csv", "x,y\n1,2\n\n3,\n", {}, ["line 4", "column 'y'", "empty"]),
    "nan": ("n.csv", "x,y\n1,nan\n", {}, ["line 2", "column 'y'", "not a finite number"]),
    "inf-txt": ("n.txt", "# c\n1 2\n-inf 3\n", {}, ["line 3", "column 0", "'-inf'", "finite"]),
    "nan-weight": ("w.csv", "x,w\n1,1\n2,NaN\n", {"weights": "w"}, ["line 3", "column 'w'"]),
    "ragged-short": ("r.csv", "x,y\n1,2\n3\n", {}, ["line 3 has 1 field", "(line 1) has 2"]),
    "ragged-long": ("r.txt", "1 2\n3 4 5\n", {}, ["line 2 has 3 fields", "first row"]),
    "binary": ("g.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, ["binary"]),
    "not-utf8": ("u.csv", b"\xff\xfe\xfa,b\n1,2\n", {}, ["line 1", "not utf-8"]),
    "bad-gzip": ("g.csv.gz", b"plain text, not gzip", {}, ["not a valid gzip file"]),
    "unknown-extension": ("d.xlsx", "x\n1\n", {}, ["'.xlsx'", ".csv", ".parquet", ".npz"]),
    "no-extension": ("data", "x\n1\n", {}, ["no file extension", ".tsv"]),
    "unknown-column": ("c.csv", "x,y\n1,2\n", {"columns": ["q"]}, ["no column 'q'", "x, y"]),
    "index-out-of-range": ("c.csv", "1,2\n", {"columns": [2]}, ["no column 2", "indices 0-1"]),
    "unknown-weights": ("c.csv", "x,y\n1,2\n", {"weights": "m"}, ["no weights column 'm'"]),
    "no-columns": ("c.csv", "x,y\n1,2\n", {"columns": []}, ["no columns selected"]),
    "only-weights": ("c.csv", "w\n1\n", {"weights": "w"}, ["no coordinates"]),
    "duplicate-name": ("c.csv", "x,x\n1,2\n", {"columns": ["x"]}, ["appears 2 times", "index"]),
    "negative-weight": ("w.csv", "x,w\n1,1\n2,-1\n", {"weights": "w"}, ["negative weight"]),
    "zero-weights": ("w.csv", "x,w\n1,0\n2,0\n", {"weights": 1}, ["all weights are zero"]),
    "npy-3d": ("a.npy", npsave(np.zeros((2, 2, 2))), {}, ["shape 2×2×2", "2-D array"]),
    "npy-scalar": ("a.npy", npsave(np.float64(1.0)), {}, ["is a scalar"]),
    "npy-strings": ("a.npy", npsave(np.array([["1", "2"]])), {}, ["dtype <U1", "not a numeric"]),
    "npy-structured": ("a.npy", npsave(np.zeros(2, dtype="f8,f8")), {}, ["not a numeric"]),
    "npy-complex": ("a.npy", npsave(np.ones((2, 2), complex)), {}, ["complex"]),
    "npy-bool": ("a.npy", npsave(np.ones((2, 2), bool)), {}, ["booleans"]),
    "npy-nan": ("a.npy", npsave(np.array([[1.0], [np.nan]])), {}, ["non-finite", "point 1"]),
    "npy-empty-array": ("a.npy", npsave(np.zeros((0, 3))), {}, ["empty (0 rows)"]),
    "npy-empty-file": ("a.npy", b"", {}, ["the file is empty"]),
    "npy-garbage": ("a.npy", b"x,y\n1,2\n", {}, ["not a numpy .npy file"]),
    "npy-truncated": (
        "a.npy",
        lambda p: p.write_bytes(_npy_bytes(np.arange(100.0))[:-40]),
        {},
        ["corrupt or truncated"],
    ),
    "npz-no-points": (
        "a.npz",
        npsavez(a=POINTS, b=POINTS),
        {},
        ["no array named 'points'", "a, b"],
    ),
    "npz-only-weights": ("a.npz", npsavez(weights=MASSES), {}, ["found: weights"]),
    "npz-2d-weights": ("a.npz", npsavez(points=POINTS, weights=TABLE), {}, ["array 'weights'"]),
    "npz-wrong-count": ("a.npz", npsavez(points=POINTS, weights=MASSES[:3]), {}, ["expected 4"]),
    "npz-not-zip": ("a.npz", b"not a zip archive", {}, ["not a numpy .npz archive"]),
    "npz-is-npy": ("a.npz", lambda p: p.write_bytes(_npy_bytes(POINTS)), {}, ["rename"]),
    "parquet-string": (
        "p.parquet",
        parquet({"x": [1.0], "name": ["a"]}),
        {"columns": ["x", "name"]},  # by default a string column is left out
        ["column 'name'", "type string", "--columns"],
    ),
    # the message ended "no coordinates are left beside " (nothing named after it)
    "parquet-no-columns": (
        "p.parquet",
        parquet({}),
        {},
        ["p.parquet: has no columns, so no coordinates"],
    ),
    "parquet-bool": ("p.parquet", parquet({"x": [True]}), {}, ["type bool", "not a number"]),
    "parquet-null": (
        "p.parquet",
        parquet({"x": [1.0, None, 3.0]}),
        {},
        ["column 'x'", "1 missing value(s)", "row 1"],
    ),
    "parquet-inf": ("p.parquet", parquet({"x": [1.0, np.inf]}), {}, ["inf at row 1", "finite"]),
    "parquet-no-rows": ("p.parquet", parquet({"x": pa.array([], pa.float64())}), {}, ["no data"]),
    "parquet-garbage": ("p.parquet", b"PAR1 but not really", {}, ["not a valid parquet file"]),
    "parquet-unknown-column": (
        "p.parquet",
        parquet({"x": [1.0]}),
        {"columns": ["y"]},
        ["no column 'y'", "available: x"],
    ),
}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "phrases"), BAD_INPUT.values(), ids=BAD_INPUT.keys()
)
def test_bad_input_is_refused_with_a_clear_message(
    tmp_path: Path, name: str, content: object, kwargs: dict[str, object], phrases: list[str]
) -> None:
    path = write(tmp_path / name, content)  # type: ignore[arg-type]
    assert_refused(path, *phrases, **kwargs)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert_refused(tmp_path / "missing.csv", "no such file")
    (tmp_path / "dir.csv").mkdir()
    assert_refused(tmp_path / "dir.csv", "is a directory")
    assert_refused(tmp_path, "is a directory")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret.csv", "x\n1\n")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("otcli.io.common.open", refuse, raising=False)  # root ignores chmod 000
    assert_refused(path, "permission denied")


def test_stdin_errors_name_stdin() -> None:
    with pytest.raises(InputError, match=r"^<stdin>: line 2, column 1 \(0-based\): 'x'"):
        read_cloud("-", stdin=io.BytesIO(b"1,2\n3,x\n"))
    with pytest.raises(InputError, match=r"^<stdin>: the file is empty"):
        read_cloud("-", stdin=io.BytesIO(b""))


# --- pickles are refused, never loaded -------------------------------------------------------


class _Trap:
    """Unpickling this creates ``marker``: if the file appears, somebody unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_the_trap_springs_when_unpickled(tmp_path: Path) -> None:
    pickle.loads(pickle.dumps(_Trap(tmp_path / "sprung"))).close()
    assert (tmp_path / "sprung").exists()


@pytest.mark.parametrize(
    ("name", "save", "phrase"),
    [
        (
            "obj.npy",
            lambda p, t: np.save(p, np.array([t, 1], object), allow_pickle=True),
            "dtype=object",
        ),
        ("raw.npy", lambda p, t: p.write_bytes(pickle.dumps(t)), "pickled python data"),
        ("obj.npz", lambda p, t: np.savez(p, points=np.array([t, 1], object)), "dtype=object"),
    ],
)
def test_pickles_are_refused_without_unpickling(
    tmp_path: Path, name: str, save: Callable[[Path, _Trap], object], phrase: str
) -> None:
    marker = tmp_path / "sprung"
    save(tmp_path / name, _Trap(marker))
    assert_refused(tmp_path / name, phrase, "never unpickles")
    assert not marker.exists()


def test_import_stays_light() -> None:
    """The CLI's --help imports this module: no torch, rich or pyarrow at import time."""
    code = "import sys, otcli.io; print(sorted({'torch', 'rich', 'pyarrow'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(Path(otio.__file__).parents[2])}  # src/, above otcli/io/
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


# --- writers ---------------------------------------------------------------------------------

MATRIX = np.random.default_rng(0).random((7, 5)) * (np.arange(5) % 2)  # zeros in columns 0, 2, 4


def blocks(
    matrix: np.ndarray, rows: tuple[int, ...] = (0, 3, 4), cols: tuple[int, ...] = (0, 2)
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``matrix`` as ``(i0, j0, block)`` pieces cut before the given rows and columns."""
    r = [*rows, matrix.shape[0]]
    c = [*cols, matrix.shape[1]]
    for i0, i1 in itertools.pairwise(r):
        for j0, j1 in itertools.pairwise(c):
            yield i0, j0, matrix[i0:i1, j0:j1]


def read_long(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    delimiter = "\t" if path.suffix == ".tsv" else ","
    types = {"i": pa.int64(), "j": pa.int64(), "value": pa.float64()}  # typed if no rows
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )


def assert_only(directory: Path, *names: str) -> None:
    """Nothing else (no temporary file) is left in ``directory``."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


def test_npy_round_trip_from_blocks(tmp_path: Path) -> None:
    path = tmp_path / "coupling.npy"
    write_matrix(path, blocks(MATRIX), MATRIX.shape, threshold=0.0)
    np.testing.assert_array_equal(np.load(path), MATRIX)
    assert_only(tmp_path, "coupling.npy")


def test_npy_over_the_dense_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    with pytest.raises(OptionError, match=r"20000×30000 .* 4\.80 GB.*\.parquet"):
        write_matrix(path, iter(()), (20_000, 30_000), threshold=0.0, dense_limit_bytes=10**9)
    assert_only(tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("threshold", [0.5, 0.0, -1.0, 2.0])
def test_long_format_holds_the_entries_above_threshold(
    tmp_path: Path, suffix: str, threshold: float
) -> None:
    path = tmp_path / f"coupling{suffix}"
    write_matrix(path, blocks(MATRIX), MATRIX.shape, threshold=threshold)
    table = read_long(path)
    assert table.schema == pa.schema(
        [("i", pa.int64()), ("j", pa.int64()), ("value", pa.float64())]
    )
    got = np.column_stack([table.column(k).to_numpy() for k in ("i", "j", "value")])
    got = got[np.lexsort((got[:, 1], got[:, 0]))]
    keep = np.ones(MATRIX.shape, bool) if threshold < 0 else threshold < MATRIX
    ii, jj = np.nonzero(keep)
    np.testing.assert_array_equal(got, np.column_stack([ii, jj, MATRIX[ii, jj]]))
    if suffix != ".parquet":
        assert path.read_text().splitlines()[0] == (
            "i\tj\tvalue" if suffix == ".tsv" else "i,j,value"
        )
    assert_only(tmp_path, path.name)


def test_long_format_rows_follow_i_then_j_within_a_block(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    write_matrix(path, [(2, 1, MATRIX)], (9, 6), threshold=0.0)
    ii, jj = np.nonzero(MATRIX > 0)
    table = read_long(path)
    np.testing.assert_array_equal(table.column("i").to_numpy(), ii + 2)
    np.testing.assert_array_equal(table.column("j").to_numpy(), jj + 1)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_atomic_write_leaves_nothing_when_the_block_raises(
    tmp_path: Path, error: type[BaseException]
) -> None:
    path = tmp_path / "out.npy"
    temps: list[Path] = []

    def interrupted_write() -> None:
        with atomic_write(path) as tmp:
            temps.append(tmp)
            tmp.write_bytes(b"partial")
            raise error("stop")

    with pytest.raises(error):
        interrupted_write()
    assert temps[0].parent == tmp_path
    assert temps[0].name.startswith(".out.npy.")
    assert temps[0].name.endswith(".tmp.npy")
    assert_only(tmp_path)
    write(path, "old")
    with pytest.raises(error):
        interrupted_write()
    assert path.read_text() == "old"
    assert_only(tmp_path, "out.npy")


def test_atomic_write_renames_on_success(tmp_path: Path) -> None:
    path = write(tmp_path / "out.csv", "old")
    with atomic_write(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"
    assert path.read_text() == "new"
    assert_only(tmp_path, "out.csv")


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_write_matrix_leaves_nothing_when_blocks_fail(tmp_path: Path, suffix: str) -> None:
    def failing() -> Iterator[tuple[int, int, np.ndarray]]:
        yield 0, 0, MATRIX[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_matrix(tmp_path / f"c{suffix}", failing(), MATRIX.shape, threshold=-1.0)
    assert_only(tmp_path)


def test_check_output_path(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "ok.PARQUET", "--coupling") == tmp_path / "ok.PARQUET"
    write(tmp_path / "afile", "")
    (tmp_path / "adir.npy").mkdir()
    cases = {
        "out.xlsx": "unsupported file type '.xlsx'; use one of .npy, .csv, .tsv, .parquet",
        "out": "unsupported file type '(none)'",
        "missing/out.npy": "does not exist",
        "afile/out.npy": "is not a directory",
        "adir.npy": "is a directory",
    }
    for name, phrase in cases.items():
        with pytest.raises(OptionError) as info:
            check_output_path(tmp_path / name, "--coupling")
        assert info.value.where == "--coupling"
        assert str(tmp_path / name) in str(info.value) or "afile" in str(info.value)
        assert phrase in str(info.value)


def test_write_matrix_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"unsupported output type '\.txt'"):
        write_matrix(tmp_path / "c.txt", [(0, 0, MATRIX)], MATRIX.shape, threshold=0.0)
    assert_only(tmp_path)


def test_reading_clouds_does_not_import_pandas(tmp_path):
    """pyarrow's to_numpy loads pandas where it is installed: 160 ms of a small run."""
    import subprocess
    import sys

    pytest.importorskip("pandas")
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    np.save(tmp_path / "b.npy", np.zeros((2, 2)))
    code = (
        "import sys; from otcli.io import read_cloud; "
        f"read_cloud({str(tmp_path / 'a.csv')!r}); read_cloud({str(tmp_path / 'b.npy')!r}); "
        "print('pandas' in sys.modules)"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": src}, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"

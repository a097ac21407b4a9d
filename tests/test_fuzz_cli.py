"""The whole ``otdist A B`` contract under random input (issue 16): a Hypothesis fuzz.

Random CSV/TSV/TXT text, byte-mutated NPY/NPZ/Parquet files, tables shaped as pandas and
spreadsheets leave them (repeated column names, ``#`` cells, MultiIndex columns or metadata)
and extreme option values go through the CLI in-process. Whatever comes in: the exit code is 0, 1 or 2; a failure prints
exactly one ``Error:`` line (warnings aside) and nothing on stdout, never a traceback or a
stray library warning; a success prints finite numbers in its JSON. Each test runs a
bounded number of examples (``OTCLI_FUZZ_EXAMPLES``, default 40: a few seconds); raise it
to hunt (8,000 examples each passed when this was written).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import otdist


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


FUZZ_EXAMPLES = int(os.environ.get("OTCLI_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: What --json must hold as finite numbers after exit 0.
FINITE_FIELDS = ("cost", "objective", "eps", "marginal_error", "tol", "seconds")


def assert_contract(code: int, out: str, err: str) -> None:
    """Exit 0, 1 or 2; stderr holds ``Note:`` and ``Warning:`` lines (a reader's notes: a
    dropped index column) and, on failure, one ``Error:`` line
    (no traceback, no stray library output); success prints finite numbers in its JSON."""
    assert code in (0, 1, 2), (code, err)
    lines = err.splitlines()
    assert all(line.startswith(("Note: ", "Warning: ", "Error: ")) for line in lines), err
    errors = [line for line in lines if line.startswith("Error: ")]
    if code == 0:
        assert errors == [], err
        fields = json.loads(out)
        for key in FINITE_FIELDS:
            assert isinstance(fields[key], (int, float)) and math.isfinite(fields[key]), fields
    else:
        assert len(errors) == 1 and out == "", (out, err)


def fuzz_run(capfd: pytest.CaptureFixture[str], name: str, data: bytes, *extra: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        code, out, err = otdist(capfd, path, path, "--json", "--max-iter", "300", *extra)
    assert_contract(code, out, err)


CELLS = st.one_of(
    st.sampled_from(["0", "1", "-2.5", "1e20", "-1e308", "1e-320", "nan", "inf", "", " ", "x"]),
    st.sampled_from(["1e400", "0x10", "1_000", '"3"', '"', "#", "4 # c", "\u00e9", "1,5"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.eE+- ,\t\r\n#\"'x", max_size=12),
)
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", "\n\n", ""])


@st.composite
def text_tables(draw: st.DrawFn) -> str:
    """Mostly table-like text: rows of cells with a separator, a line end each."""
    sep = draw(st.sampled_from([",", "\t", " ", ";", "  "]))
    width = draw(st.integers(1, 3))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), max_size=6))
    header = draw(st.sampled_from(["", "x,y\n", "x\ty\tw\n", "# comment\n", "\ufeffa b\n"]))
    end = draw(LINE_ENDS)
    return header + "".join(sep.join(row) + end for row in rows)


@FUZZ
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a numpy warning would reach stderr
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".txt", ".csv.gz"]),
    content=st.one_of(text_tables(), st.text(max_size=60)),
    extra=st.sampled_from([(), ("--weights", "1"), ("--columns", "0"), ("--dtype", "float64")]),
)
def test_fuzz_text(
    capfd: pytest.CaptureFixture[str], suffix: str, content: str, extra: tuple[str, ...]
) -> None:
    data = content.encode()
    fuzz_run(capfd, f"f{suffix}", gzip.compress(data) if suffix.endswith(".gz") else data, *extra)


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    table = pa.table({"x": [0.0, 1.0, 2.5], "y": [1, 2, 3], "w": [1.0, 2.0, 0.5]})
    pq.write_table(table, buffer)
    return buffer.getvalue()


SEEDS = {
    ".npy": npy_bytes(np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])),
    ".npz": npz_bytes(points=np.array([[0.0, 1.0], [2.0, -1.0]]), weights=np.array([1.0, 3.0])),
    ".parquet": _parquet_bytes(),
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid NPY/NPZ/Parquet file with a few bytes overwritten, then perhaps cut short."""
    suffix = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[suffix])
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return suffix, bytes(data[:cut] if draw(st.booleans()) else data)


@FUZZ
@pytest.mark.filterwarnings("error::RuntimeWarning")
@given(case=mutated())
def test_fuzz_binary(capfd: pytest.CaptureFixture[str], case: tuple[str, bytes]) -> None:
    suffix, data = case
    fuzz_run(capfd, f"f{suffix}", data)


NUMBERS = st.one_of(
    st.sampled_from(["0", "-0", "1", "-1", "nan", "inf", "-inf", "1e400", "5e-324", "1e-310"]),
    st.sampled_from(["1e308", "1.7976931348623157e308", "1e-300", "0.999999999999", "2", "1e19"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
)
OPTIONS = st.sampled_from(
    ["--eps", "--eps-rel", "--tol", "--scaling", "--max-iter", "--memory", "--p"]
)


@FUZZ
@pytest.mark.filterwarnings("error::RuntimeWarning")
@given(
    options=st.lists(st.tuples(OPTIONS, NUMBERS), min_size=1, max_size=3, unique_by=lambda o: o[0]),
    cost=st.sampled_from(["sqeuclidean", "pnorm", "cosine"]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_fuzz_option_values(
    capfd: pytest.CaptureFixture[str],
    options: list[tuple[str, str]],
    cost: str,
    dtype: str,
) -> None:
    """Extreme option values on a good pair: a refusal naming the option, or finite numbers."""
    flat = [f"{name}={value}" for name, value in options]
    data = b"x,y\n0,0\n1,0.5\n2,2\n"
    fuzz_run(capfd, "f.csv", data, "--cost", cost, "--dtype", dtype, *flat)


#: Characters of output names: plain, control (newline, escape, tab), separators, wide and
#: undecodable (a lone surrogate: a byte that is not UTF-8).
NAME_CHARS = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        ".",
        "-",
        " ",
        "/",
        "\n",
        "\r",
        "\t",
        "\x1b",
        "\x7f",
        "\u2028",
        "é",
        "漢",
        "😀",
        "\udcff",
    ]
)


@FUZZ
@given(
    stem=st.lists(NAME_CHARS, min_size=1, max_size=12).map("".join),
    repeat=st.sampled_from([1, 30, 120, 600]),
    suffix=st.sampled_from([".npy", ".csv", ".parquet", ".txt", ""]),
    option=st.sampled_from(["--coupling", "--cost-matrix"]),
)
def test_fuzz_output_names(
    capfd: pytest.CaptureFixture[str], stem: str, repeat: int, suffix: str, option: str
) -> None:
    """Any output name (long, with control characters, separators or bytes that are not
    UTF-8): the contract holds, and a refusal names the option on a single line."""
    with tempfile.TemporaryDirectory() as tmp:
        cloud = Path(tmp) / "c.csv"
        cloud.write_bytes(b"x,y\n0,0\n1,0.5\n2,2\n")
        out = os.path.join(tmp, stem * repeat + suffix)
        code, stdout, err = otdist(capfd, cloud, cloud, "--json", option, out)
    assert_contract(code, stdout, err)
    if code == 2:
        assert err.startswith(f"Error: {option}: "), err


#: Column names that readers treat specially, repeated at will: duplicates, pandas' index
#: names (an empty header, ``Unnamed: 0``, ``__index_level_0__``), label and comment look-alikes.
NAMES = st.sampled_from(
    ["x", "y", "w", "id", "", "Unnamed: 0", "__index_level_0__", "level_1", "label", "#", "#N/A"]
)
SHAPED_CELLS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1.5", "3e2", "#", "#N/A", "#DIV/0!", "4 # c", "a", ""]),
    st.integers(-5, 5).map(str),
)


@st.composite
def shaped_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]], int, bool]:
    """(names, rows, index levels, two header rows): tables shaped as pandas writes them,
    with repeated names, ``#`` cells and the leading integer columns of a (Multi)Index."""
    levels = draw(st.integers(0, 2))
    names = draw(st.lists(NAMES, min_size=1, max_size=4))
    n = draw(st.integers(1, 5))
    index = [[str(k), *(["a", "b"][k % 2] for _ in range(levels - 1))][:levels] for k in range(n)]
    body = draw(st.lists(st.lists(SHAPED_CELLS, min_size=len(names), max_size=len(names)),
                         min_size=n, max_size=n))  # fmt: skip
    rows = [i + r for i, r in zip(index, body, strict=True)]
    return [""] * levels + names, rows, levels, draw(st.booleans())


def _shaped_csv(names: list[str], rows: list[list[str]], two_headers: bool) -> bytes:
    header = ",".join(names) + "\n"
    if two_headers:  # a MultiIndex of columns: a second header row of level names
        header += ",".join(f"{n}_{k % 2}" for k, n in enumerate(names)) + "\n"
    return (header + "".join(",".join(r) + "\n" for r in rows)).encode()


def _shaped_parquet(names: list[str], rows: list[list[str]], levels: int) -> bytes:
    """The columns as numbers where every cell is one, else text; the index levels named in
    the pandas metadata, as ``DataFrame.to_parquet`` records a MultiIndex."""
    names = [n or f"__index_level_{k}__" for k, n in enumerate(names)]
    arrays = []
    for k in range(len(names)):
        cells = [r[k] for r in rows]
        try:
            arrays.append(pa.array([float(c) for c in cells]))
        except ValueError:
            arrays.append(pa.array(cells))
    table = pa.Table.from_arrays(arrays, names=names)
    meta = {"index_columns": names[:levels], "columns": []}
    table = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@FUZZ
@pytest.mark.filterwarnings("error::RuntimeWarning")
@given(
    shaped=shaped_tables(),
    suffix=st.sampled_from([".csv", ".parquet"]),
    extra=st.sampled_from(
        [(), ("--columns", "x"), ("--weights", "w"), ("--id", "id"), ("--exclude", "0")]
    ),
)
def test_fuzz_repeated_names_comment_cells_and_multiindex(
    capfd: pytest.CaptureFixture[str],
    shaped: tuple[list[str], list[list[str]], int, bool],
    suffix: str,
    extra: tuple[str, ...],
) -> None:
    """Tables as pandas and spreadsheets leave them: repeated column names, ``#`` and ``#N/A``
    cells, a (Multi)Index's leading columns (CSV) or its pandas metadata (Parquet)."""
    names, rows, levels, two_headers = shaped
    if suffix == ".csv":
        data = _shaped_csv(names, rows, two_headers)
    else:
        data = _shaped_parquet(names, rows, levels)
    fuzz_run(capfd, f"f{suffix}", data, *extra)

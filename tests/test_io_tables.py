"""The batch/pairwise tables (otcli.io.tables): rows round-trip, ids stay as written, writes are
atomic, and readers name the file in every error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otcli.errors import InputError, OtcliError
from otcli.io.tables import (
    LONG_FIELDS,
    Journal,
    read_file_list,
    read_rows,
    read_table,
    row_json,
    rows_table,
    write_pairwise,
    write_rows,
)

FIELDS = ("id", "a", "b", "n", "m", "eps", "cost", "converged", "status", "error", "seconds")
SUFFIXES = [".csv", ".parquet", ".jsonl"]


def make_rows(ids: list[Any]) -> list[dict[str, Any]]:
    """Rows like batch's: one ok, the others failed (nulls), one with a NaN cost."""
    rows = []
    for k, pair_id in enumerate(ids):
        ok = k % 2 == 0
        rows.append({
            "id": pair_id, "a": f"x {k}.npy", "b": "dir/y,1.csv", "n": 5 + k,
            "m": 7 if ok else None, "eps": 0.1, "cost": 0.25 * k if ok else math.nan,
            "converged": True if ok else None, "status": "ok" if ok else "error",
            "error": None if ok else f"y{k}.csv: no such file; check the path", "seconds": 0.5,
        })  # fmt: skip
    return rows


def cleaned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a reader gives back: NaN and inf are written as nulls."""
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in rows
    ]


# --- write_rows / read_rows ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("ids", [[0, 1, 2, 3], ["p0", "p 1", "nan", "x-3"]], ids=["int", "text"])
def test_rows_round_trip(tmp_path: Path, suffix: str, ids: list[Any]) -> None:
    rows = make_rows(ids)
    out = tmp_path / f"r{suffix}"
    write_rows(out, rows, FIELDS)
    expected = [{**r, "id": str(r["id"])} for r in cleaned(rows)]  # ids are text, always
    assert read_rows(out) == expected
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5, unique=True))
def test_text_ids_stay_as_written(tmp_path: Path, suffix: str, ids: list[str]) -> None:
    out = tmp_path / f"r{suffix}"
    write_rows(out, make_rows(ids), FIELDS)
    assert [r["id"] for r in read_rows(out)] == ids


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8),
        min_size=1, max_size=5, unique=True,
    )
)  # fmt: skip
def test_csv_ids_come_back_as_the_text_written(tmp_path: Path, ids: list[str]) -> None:
    """Any text id, number-looking or null-looking ("1", "01", "1e3", "NA", "nan") included,
    reads back from a CSV output as that text: a resume matches rows by it."""
    out = tmp_path / "r.csv"
    write_rows(out, make_rows(ids), FIELDS)
    assert [r["id"] for r in read_rows(out)] == ids


def test_csv_output_keeps_text_ids_as_written_in_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_rows(out, make_rows(["007", "12", "NA"]), FIELDS)
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == [
        '"id"', '"007"', '"12"', '"NA"',
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_csv_read_rows_keeps_numeric_looking_text_ids(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"r{suffix}"
    write_rows(out, make_rows(["007", "1", "01", "1.0", "NA", "-0"]), FIELDS)
    assert [r["id"] for r in read_rows(out)] == ["007", "1", "01", "1.0", "NA", "-0"]


def test_write_rows_failure_leaves_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    write_rows(out, make_rows([0, 1]), FIELDS)
    before = out.read_bytes()
    bad = make_rows([0, 1])
    bad[1]["n"] = "not a count"
    with pytest.raises(Exception, match="not a count"):
        write_rows(out, bad, FIELDS)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


def test_write_rows_into_a_missing_folder_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "gone" / "r.csv"
    with pytest.raises(OtcliError, match=rf"^{out}: cannot write the file \("):
        write_rows(out, make_rows([0]), FIELDS)


def test_read_rows_of_a_broken_output_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    out.write_bytes(b"not parquet")
    with pytest.raises(InputError, match=rf"^{out}: cannot read the previous output to resume"):
        read_rows(out)


def test_rows_table_types() -> None:
    table = rows_table(make_rows([3, 4]), FIELDS)
    assert str(table.schema.field("id").type) == "string"  # integer ids are written as text
    assert table.column("id").to_pylist() == ["3", "4"]
    assert str(table.schema.field("converged").type) == "bool"
    assert table.column("cost").to_pylist() == [0.0, None]
    assert str(rows_table(make_rows([3, "4"]), FIELDS).schema.field("id").type) == "string"
    assert rows_table(make_rows([True, 1]), ("id",)).column("id").to_pylist() == ["True", "1"]


def test_row_json_writes_non_finite_as_null_and_keeps_unicode() -> None:
    line = row_json({"id": "é", "cost": math.inf, "objective": -math.inf, "x": math.nan, "n": 2})
    assert line == '{"id": "é", "cost": null, "objective": null, "x": null, "n": 2}'


# --- journal ---------------------------------------------------------------------------------


def test_journal_reads_back_what_it_wrote_and_drops_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.journal.jsonl"
    rows = cleaned(make_rows([0, "b"]))
    journal = Journal(path)
    journal.open({"otcli_journal": 1})
    journal.append(rows)
    journal.close()
    whole = path.read_bytes()
    with path.open("ab") as fh:
        fh.write(b'{"id": 2, "a": "x')  # a kill -9 mid-write
    assert Journal.read(path) == ({"otcli_journal": 1}, rows, len(whole))
    journal.open(None, len(whole))  # reopened: the torn bytes are cut
    journal.close()
    assert path.read_bytes() == whole


def test_journal_refuses_a_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"otcli_journal": 1}\n{"id": 0}\nnot json\n{"id": 1}\n')
    message = f"{path}: line 3 is not valid JSON; the file is damaged: rerun with --overwrite"
    with pytest.raises(InputError) as err:
        Journal.read(path)
    assert str(err.value) == message


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "3", "null"])
def test_journal_refuses_a_line_that_is_json_but_no_object(tmp_path: Path, line: str) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(f'{{"otcli_journal": 1}}\n{{"id": "0"}}\n{line}\n')
    with pytest.raises(InputError) as err:  # was: AttributeError from row.get
        Journal.read(path)
    assert str(err.value) == (
        f"{path}: line 3 is not a JSON object; the file is damaged: rerun with --overwrite"
    )


# --- manifest tables and file lists ----------------------------------------------------------


def test_read_table_keeps_ids_and_paths_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,a,b,eps\nnan,NA,007,0.5\n007, x.csv,null,\n")
    table = read_table(str(path), "manifest")
    assert table.column("id").to_pylist() == ["nan", "007"]
    assert table.column("a").to_pylist() == ["NA", " x.csv"]
    assert table.column("b").to_pylist() == ["007", "null"]
    assert table.column("eps").to_pylist() == ["0.5", ""]  # parsed per row by the manifest


@pytest.mark.parametrize(
    ("name", "make", "what"),
    [
        (
            "m.json",
            lambda p: p.write_text("{}"),
            "unknown manifest type '.json'; use .csv, .tsv or .parquet",
        ),
        ("m.csv", None, "no such file; check the path"),
        ("m.csv", lambda p: p.mkdir(), "is a directory, not a file"),
        ("m.parquet", lambda p: p.write_text("a,b\n"), "cannot read the manifest ("),
    ],
)
def test_read_table_errors_name_the_file(tmp_path: Path, name: str, make: Any, what: str) -> None:
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(InputError) as err:
        read_table(str(path), "manifest")
    assert str(err.value).startswith(f"{path}: {what}")


def test_read_file_list_skips_comments_and_takes_paths_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.csv", "d/sub/b.npy", "c.parquet"):
        (tmp_path / name).write_text("x\n1\n")
    listing = tmp_path / "d" / "files.txt"  # written by `find d ... > d/files.txt`
    listing.write_text(f"# clouds\nd/a.csv\n\n  d/sub/b.npy  \n{tmp_path / 'c.parquet'}\n")
    monkeypatch.chdir(tmp_path)
    assert read_file_list(listing) == ["d/a.csv", "d/sub/b.npy", str(tmp_path / "c.parquet")]
    with pytest.raises(InputError, match=rf"^{tmp_path / 'gone.txt'}: no such file; check"):
        read_file_list(tmp_path / "gone.txt")


def test_read_file_list_names_the_line_of_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x\n1\n")
    listing = tmp_path / "d" / "list.txt"
    listing.write_text("# relative to the list's folder: the old rule\na.csv\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        read_file_list(listing)
    assert str(err.value) == (
        f"{listing}: line 2: 'a.csv': no such file (relative paths in a file list are taken "
        f"from the current directory); it exists beside the list, as "
        f"'{tmp_path / 'd'}/a.csv': write that path"
    )


# --- pairwise output -------------------------------------------------------------------------


def pairwise_rows(files: list[str]) -> list[dict[str, Any]]:
    """Long-table rows i ≤ j: cost i + j + 1, divergence |i − j|, pair (0, 2) failed."""
    rows = []
    for i in range(len(files)):
        for j in range(i, len(files)):
            row = dict.fromkeys(LONG_FIELDS)
            ok = (i, j) != (0, 2)
            row.update(i=i, j=j, a=files[i], b=files[j], status="ok" if ok else "error")
            if ok:
                row.update(cost=float(i + j + 1), divergence=float(abs(i - j)), converged=True)
            else:
                row["error"] = "c.csv: no such file; check the path"
            rows.append(row)
    return rows


FILES = ["a.csv", "b,1.csv", "c.csv"]


@pytest.mark.parametrize(("div", "value"), [(False, "cost"), (True, "divergence")])
def test_pairwise_matrix_is_symmetric_with_nan_for_failed_pairs(
    tmp_path: Path, div: bool, value: str
) -> None:
    rows = pairwise_rows(FILES)
    write_pairwise(tmp_path / "d.npy", rows, FILES, div)
    mat = np.load(tmp_path / "d.npy")
    expected = np.full((3, 3), np.nan)
    for r in rows:
        if r["status"] == "ok":
            expected[r["i"], r["j"]] = expected[r["j"], r["i"]] = r[value]
    np.testing.assert_array_equal(mat, expected)
    assert np.isnan(mat[0, 2]) and np.isnan(mat[2, 0])


def test_pairwise_csv_has_file_labels_and_empty_failed_cells(tmp_path: Path) -> None:
    write_pairwise(tmp_path / "d.csv", pairwise_rows(FILES), FILES, False)
    assert (tmp_path / "d.csv").read_text().splitlines() == [
        'file,a.csv,"b,1.csv",c.csv',
        "a.csv,1.0,2.0,",
        '"b,1.csv",2.0,3.0,4.0',
        "c.csv,,4.0,5.0",
    ]
    table = pacsv.read_csv(tmp_path / "d.csv")  # and it parses back as a labelled matrix
    assert table.column_names == ["file", *FILES]


@pytest.mark.parametrize("div", [False, True])
def test_pairwise_parquet_is_the_long_table(tmp_path: Path, div: bool) -> None:
    rows = pairwise_rows(FILES)
    write_pairwise(tmp_path / "d.parquet", rows, FILES, div)
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.column_names == [f for f in LONG_FIELDS if div or f != "divergence"]
    assert table.to_pylist() == [{k: r[k] for k in table.column_names} for r in rows]


def test_pairwise_write_failure_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "gone" / "d.npy"
    with pytest.raises(OtcliError, match=rf"^{out}: cannot write the file \("):
        write_pairwise(out, pairwise_rows(FILES), FILES, False)


def test_jsonl_lines_are_json(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write_rows(out, make_rows([0, 1]), ("id", "cost"))
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id": "0", "cost": 0.0}, {"id": "1", "cost": None},
    ]  # fmt: skip

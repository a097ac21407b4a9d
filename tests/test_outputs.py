"""What ``otdist A B`` writes, under hostile conditions (issue 16, items 6, 14, 15).

One overwrite policy for every output file (refused if it exists unless ``--overwrite``, an
input never), file names that are not UTF-8 (written, and reported as valid UTF-8), stdout
that cannot be written, and a ``--coupling-threshold`` that is not a number. Oracles: the
files' bytes before and after, ``os.listdir`` in bytes, strict UTF-8 decoding, and the exact
error line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LINE_X, LINE_Y, otdist
from otcli.safetext import json_dumps, printable

XFF = "\udcff"  # the byte 0xFF of a file name, as Python hands it over (PEP 383)


def write_csv(path: str | Path, points: np.ndarray) -> str:
    with open(path, "w") as fh:  # open(), not Path.write_text: the name may not be UTF-8
        fh.write("x,y\n" + "".join(f"{float(p[0])!r},{float(p[1])!r}\n" for p in points))
    return os.fspath(path)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    """The seed's line and the line shifted by 1 (cost 1.0001 at ε = 0.1)."""
    return write_csv(tmp_path / "x.csv", LINE_X), write_csv(tmp_path / "y.csv", LINE_Y)


# --- item 14: one overwrite policy -----------------------------------------------------------


def test_coupling_never_replaces_an_input_even_with_overwrite(capfd, tmp_path, pair):
    a, b = pair
    before = Path(a).read_bytes()
    for extra in ([], ["--overwrite"]):
        code, out, err = otdist(capfd, a, b, "--coupling", a, *extra)
        assert (code, out) == (2, "")
        assert err == (
            f"Error: --coupling: '{a}' is the input file '{a}'; an input is never overwritten: "
            "write the output under another name\n"
        )
    link = tmp_path / "link.csv"  # another name for the same file (same inode)
    os.link(b, link)
    code, _, err = otdist(capfd, a, b, "--cost-matrix", link, "--overwrite")
    assert code == 2 and err.startswith(f"Error: --cost-matrix: '{link}' is the input file '{b}'")
    assert Path(a).read_bytes() == before


def test_existing_outputs_are_replaced_only_with_overwrite(capfd, tmp_path, pair):
    target = tmp_path / "P.npy"
    target.write_bytes(b"keep me")
    code, out, err = otdist(capfd, *pair, "--coupling", target)
    assert (code, out) == (2, "")
    assert err == f"Error: --coupling: '{target}' exists; use --overwrite to replace it\n"
    assert target.read_bytes() == b"keep me"
    code, _, err = otdist(capfd, *pair, "--coupling", target, "--overwrite")
    assert code == 0, err
    plan = np.load(target)
    assert plan.shape == (5, 5) and abs(plan.sum() - 1) < 1e-5
    code, _, err = otdist(capfd, *pair, "--coupling", tmp_path / "Q.csv",
                          "--cost-matrix", tmp_path / "Q.csv")  # fmt: skip
    assert (code, err) == (
        2,
        f"Error: --cost-matrix: '{tmp_path / 'Q.csv'}' is the same file as --coupling "
        f"'{tmp_path / 'Q.csv'}': one would replace the other; give each output its own name\n",
    )


# --- item 15: --coupling-threshold must be a number -------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_coupling_threshold_that_is_not_a_number_is_refused(capfd, tmp_path, pair, value):
    out = tmp_path / "P.csv"
    code, stdout, err = otdist(capfd, *pair, "--coupling", out, "--coupling-threshold", value)
    assert (code, stdout) == (2, "")
    shown = {"nan": "nan", "inf": "inf", "-inf": "-inf"}[value]
    assert err == f"Error: --coupling-threshold: must be a finite number, got {shown}\n"
    assert not out.exists()  # was: a header-only file for nan


# --- item 6: file names that are not UTF-8, stdout that cannot be written -----------------------


@settings(max_examples=200, deadline=None)
@given(name=st.binary(min_size=1, max_size=12))
def test_any_file_name_is_written_as_valid_utf8(name: bytes) -> None:
    """Whatever bytes a file name holds: JSON keeps them (escaped, recoverable with
    os.fsencode) and the text form is valid UTF-8 that shows them."""
    text = os.fsdecode(name)
    line = json_dumps({"a": text, "cost": math.nan})
    line.encode("utf-8")  # strict: no lone surrogate gets through
    back = json.loads(line)
    assert os.fsencode(back["a"]) == name and back["cost"] is None
    shown = printable(text)
    shown.encode("utf-8")
    if name.isascii():
        assert shown == text


def test_non_utf8_output_and_input_names(capfdbinary, tmp_path, pair):
    a = write_csv(tmp_path / f"a{XFF}.csv", LINE_X)
    coupling = tmp_path / f"P{XFF}.parquet"
    capfdbinary.readouterr()
    from otcli.cli import run

    code = run([a, pair[1], "--coupling", str(coupling), "--json"])
    out, err = capfdbinary.readouterr()
    assert code == 0, err
    text = out.decode("utf-8")  # strict: the JSON is valid UTF-8 (was: a raw 0xFF byte)
    fields = json.loads(text)
    assert fields["a"] == a and os.fsencode(fields["a"]).endswith(b"a\xff.csv")
    assert "\\udcff" in text  # the byte kept as a JSON escape, so the name round-trips
    assert round(fields["cost"], 4) == 1.0001
    assert b"P\xff.parquet" in os.listdir(os.fsencode(tmp_path))
    with open(coupling, "rb") as fh:  # pyarrow itself cannot open such a name
        assert pq.read_table(fh).column_names == ["i", "j", "value"]


def test_non_utf8_names_in_error_messages_are_valid_utf8(capfdbinary, tmp_path, pair):
    from otcli.cli import run

    capfdbinary.readouterr()
    code = run([pair[0], pair[1], "--coupling", str(tmp_path / f"P{XFF}.bmp")])
    _, err = capfdbinary.readouterr()
    assert code == 2
    line = err.decode("utf-8")  # strict
    assert line.startswith("Error: --coupling: ") and line.count("\n") == 1
    assert "P\\udcff.bmp" in line or "P\\xff.bmp" in line


def test_stdout_that_cannot_be_written_is_one_error_line(tmp_path, pair):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "otcli", *pair, "--json", "--device", "cpu"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "Error: stdout: cannot write the result (No space left on device)\n"

"""Output paths the system refuses or that collide (issue 27, items 10, 11, 12 and 19).

Names over the file system's limits, names with control characters, two outputs that are
one file, an output that is an input, a coupling folder that cannot be written and a
manifest on standard input: each one ``Error:`` line and exit 2, before any solving, and
no file written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import otdist

LONG = "x" * 300  # one name over the 255-byte limit
DEEP = "d/" * 2100 + "x"  # a path over PATH_MAX (4096 bytes)


def clouds(folder: Path) -> tuple[Path, Path]:
    a, b = folder / "a.csv", folder / "b.csv"
    a.write_text("x,y\n0,0\n1,0\n2,1\n")
    b.write_text("x,y\n0,1\n1,1\n3,1\n")
    return a, b


def manifest(folder: Path, ids: tuple[str, ...] = ("p0",)) -> Path:
    clouds(folder)
    path = folder / "pairs.csv"
    path.write_text("id,a,b\n" + "".join(f"{i},a.csv,b.csv\n" for i in ids))
    return path


def one_error(code: int, out: str, err: str, start: str) -> str:
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith(f"Error: {start}"), err
    return err


@pytest.mark.parametrize("name", [LONG + ".npy", LONG + "/P.npy", DEEP + ".npy"])
@pytest.mark.parametrize("option", ["--coupling", "--cost-matrix"])
def test_pair_outputs_with_names_over_the_limits(capfd, tmp_path, monkeypatch, option, name):
    monkeypatch.chdir(tmp_path)
    a, b = clouds(tmp_path)
    err = one_error(*otdist(capfd, a, b, option, name), f"{option}: ")
    assert "too long a" in err and len(err) < 1000  # the path is shown cut short


@pytest.mark.parametrize(
    "args",
    [
        ("--plot", LONG + ".png"),
        ("--plot", DEEP + ".png"),
    ],
)
def test_plot_with_a_name_over_the_limits(capfd, tmp_path, monkeypatch, args):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    a, b = clouds(tmp_path)
    one_error(*otdist(capfd, a, b, *args), "--plot: ")


@pytest.mark.parametrize("out", [LONG + ".csv", DEEP + ".csv"])
def test_batch_and_pairwise_outputs_over_the_limits(capfd, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    pairs = manifest(tmp_path)
    one_error(*otdist(capfd, "batch", pairs, "-o", out), "-o: ")
    one_error(*otdist(capfd, "pairwise", "a.csv", "b.csv", "-o", out), "-o: ")


@pytest.mark.parametrize("folder", [LONG, DEEP])
def test_a_coupling_folder_over_the_limits(capfd, tmp_path, monkeypatch, folder):
    monkeypatch.chdir(tmp_path)
    pairs = manifest(tmp_path)
    one_error(
        *otdist(capfd, "batch", pairs, "-o", "r.csv", "--coupling-dir", folder), "--coupling-dir: "
    )
    assert not (tmp_path / "r.csv").exists()


def test_an_id_too_long_for_a_coupling_file_is_refused_before_solving(capfd, tmp_path):
    pairs = manifest(tmp_path, ("p" * 254,))  # p...p.npy: 258 bytes
    out = tmp_path / "r.csv"
    one_error(
        *otdist(capfd, "batch", pairs, "-o", out, "--coupling-dir", tmp_path / "c"),
        "--coupling-dir: ",
    )
    assert not out.exists()


def test_a_newline_in_a_name_stays_on_the_error_line(capfd, tmp_path):
    _, b = clouds(tmp_path)
    err = one_error(*otdist(capfd, tmp_path / "no\nsuch\x1b[31m.csv", b), "")
    assert "no\\nsuch\\x1b[31m.csv: no such file" in err


def test_two_outputs_that_are_one_file_are_refused(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = clouds(tmp_path)
    (tmp_path / "link").symlink_to(".")
    err = one_error(
        *otdist(capfd, a, b, "--coupling", "P3.npy", "--cost-matrix", "link/P3.npy"),
        "--cost-matrix: 'link/P3.npy' is the same file as --coupling 'P3.npy'",
    )
    assert "give each output its own name" in err
    assert not (tmp_path / "P3.npy").exists()


def test_batch_output_inside_the_coupling_folder_under_a_pair_id(capfd, tmp_path):
    pairs = manifest(tmp_path, ("res", "other"))
    cdx = tmp_path / "cdx"
    cdx.mkdir()
    args = ("-o", cdx / "res.parquet", "--coupling-dir", cdx, "--coupling-format", "parquet")
    one_error(*otdist(capfd, "batch", pairs, *args), "--coupling-dir: ")
    assert list(cdx.iterdir()) == []


def test_pairwise_never_replaces_its_file_list(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clouds(tmp_path)
    listing = tmp_path / "list.csv"
    listing.write_text("a.csv\nb.csv\n")
    args = ("pairwise", "--files-from", "list.csv", "-o", "list.csv", "--overwrite")
    one_error(*otdist(capfd, *args), "-o: 'list.csv' is the input file 'list.csv'")
    assert listing.read_text() == "a.csv\nb.csv\n"


def test_pairwise_plot_follows_the_overwrite_policy(capfd, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    clouds(tmp_path)
    (tmp_path / "pic.png").write_bytes(b"mine")
    args = ("pairwise", "a.csv", "b.csv", "-o", "m.csv", "--plot", "pic.png")
    one_error(*otdist(capfd, *args), "--plot: 'pic.png' exists; use --overwrite")
    assert (tmp_path / "pic.png").read_bytes() == b"mine"


def test_matrix_never_writes_over_its_cost_matrix(capfd, tmp_path):
    import numpy as np

    cost = tmp_path / "C.npy"
    np.save(cost, np.arange(6.0).reshape(2, 3))
    before = cost.read_bytes()
    one_error(*otdist(capfd, "matrix", cost, "--coupling", cost), "--coupling: ")
    assert cost.read_bytes() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_coupling_folder_that_cannot_be_made_or_written(capfd, tmp_path):
    pairs = manifest(tmp_path)
    out = tmp_path / "r.csv"
    err = one_error(
        *otdist(capfd, "batch", pairs, "-o", out, "--coupling-dir", "/proc/x"), "--coupling-dir: "
    )
    assert "cannot create directory '/proc/x'" in err
    if not os.access("/proc/self", os.W_OK):  # unwritable even for root
        err = one_error(
            *otdist(capfd, "batch", pairs, "-o", out, "--coupling-dir", "/proc/self"),
            "--coupling-dir: cannot write to directory '/proc/self'",
        )
    assert not out.exists()


def test_an_unwritable_coupling_folder_is_found_before_solving(capfd, tmp_path, monkeypatch):
    pairs = manifest(tmp_path)
    cdx = tmp_path / "cdx"
    cdx.mkdir()
    real = os.access

    def access(path: object, mode: int) -> bool:  # root writes anywhere: refuse this one
        return real(path, mode) and not (Path(path) == cdx and mode & os.W_OK)

    monkeypatch.setattr(os, "access", access)
    solved = []
    monkeypatch.setattr("otcli.batch.solving.BatchRun.run", lambda self, todo: solved.append(1))
    args = ("batch", pairs, "-o", tmp_path / "r.csv", "--coupling-dir", cdx)
    one_error(*otdist(capfd, *args), f"--coupling-dir: cannot write to directory {str(cdx)!r}")
    assert solved == []


def test_a_manifest_on_standard_input_is_refused(capfd, tmp_path):
    err = one_error(*otdist(capfd, "batch", "-", "-o", tmp_path / "r.csv"), "-: ")
    assert "not standard input" in err

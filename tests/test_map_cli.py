"""``otdist map A B --apply X -o OUT``: files in, moved files out, against POT.

Oracles: POT's converged log-domain plan (moved A = (P y)_i / a_i), pandas and pyarrow
reading OUT back (readers otcli did not write), X's own cells for the carried columns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pandas as pd
import pytest

from conftest import numpy_cost, otdist

ROOT = Path(__file__).resolve().parent.parent
EPS = 0.2
SOLVE = ["--eps", EPS, "--dtype", "float64", "--tol", "1e-12"]


def _frame(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    """Points x, y between an id column and two others (text, numbers) to carry along."""
    return pd.DataFrame({
        "id": [f"p{k:03d}" for k in range(n)],
        "x": rng.normal(size=n) + shift, "y": rng.normal(size=n) * 0.7,
        "species": rng.choice(["setosa", "a, b", 'say "hi"'], size=n),
        "score": np.round(rng.random(n), 3),
    })  # fmt: skip


@pytest.fixture
def clouds(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _frame(rng, 40, 0.0), _frame(rng, 30, 2.5)
    a.to_csv(tmp_path / "A.csv", index=False)
    b.to_csv(tmp_path / "B.csv", index=False)
    return a, b


def _pot_projection(a: pd.DataFrame, b: pd.DataFrame, inverse: bool = False) -> np.ndarray:
    """(P y)_i / a_i from POT's converged log-domain plan (uniform masses)."""
    x, y = a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy()
    wa, wb = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    plan = ot.sinkhorn(wa, wb, numpy_cost(x, y, "sqeuclidean"), EPS, method="sinkhorn_log",
                       stopThr=1e-12, numItermax=200_000)  # fmt: skip
    return plan.T @ x / wb[:, None] if inverse else plan @ y / wa[:, None]


def _write(frame: pd.DataFrame, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, frame[["x", "y", "score"]].to_numpy())
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    return path


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix
    if suffix == ".npy":
        return pd.DataFrame(np.load(path, allow_pickle=False), columns=["x", "y", "score"])
    if suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)


def test_moves_a_onto_b_like_pot_and_carries_every_other_column(capfd, tmp_path, clouds):
    a, b = clouds
    out = tmp_path / "moved.csv"
    code, stdout, err = otdist(capfd, "map", tmp_path / "A.csv", tmp_path / "B.csv", "--apply",
                               tmp_path / "A.csv", "-o", out, "--columns", "x,y", "--id", "id",
                               *SOLVE)  # fmt: skip
    assert (code, err) == (0, "")
    assert stdout.startswith(f"moved   40 points of {tmp_path / 'A.csv'} A → B, written to {out}")
    got = _read(out)
    assert list(got.columns) == ["id", "x", "y", "species", "score"]
    expected = _pot_projection(a, b)
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), expected, rtol=1e-4)
    # Text exactly as written, quotes and commas included; numbers as their text.
    source = pd.read_csv(tmp_path / "A.csv", dtype=str, keep_default_na=False)
    moved = pd.read_csv(out, dtype=str, keep_default_na=False)
    for column in ("id", "species", "score"):
        assert moved[column].tolist() == source[column].tolist()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".npy"])
def test_every_format_round_trips(capfd, tmp_path, clouds, suffix):
    a, b = clouds
    x = _write(a, tmp_path / f"X{suffix}")
    out = tmp_path / f"out{suffix}"
    columns = "0,1" if suffix == ".npy" else "x,y"
    if suffix == ".npy":  # A and B as NPY too: one --columns for every file
        _write(a, tmp_path / "A.npy"), _write(b, tmp_path / "B.npy")
        pair = [tmp_path / "A.npy", tmp_path / "B.npy"]
    else:
        pair = [tmp_path / "A.csv", tmp_path / "B.csv"]
    code, _, err = otdist(capfd, "map", *pair, "--apply", x, "-o", out, "--columns", columns,
                          *SOLVE)  # fmt: skip
    assert (code, err) == (0, ""), err
    got, source = _read(out), _read(x)
    assert list(got.columns) == list(source.columns)
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), _pot_projection(a, b), rtol=1e-4)
    rest = [c for c in source.columns if c not in ("x", "y")]
    pd.testing.assert_frame_equal(got[rest], source[rest])


def test_csv_to_parquet_keeps_text_as_text(capfd, tmp_path, clouds):
    a, b = clouds
    out = tmp_path / "moved.parquet"
    code, _, err = otdist(capfd, "map", tmp_path / "A.csv", tmp_path / "B.csv", "--apply",
                          tmp_path / "B.csv", "-o", out, "--columns", "x,y", "--inverse",
                          *SOLVE)  # fmt: skip
    assert (code, err) == (0, "")
    got = pd.read_parquet(out)
    assert got["species"].tolist() == b["species"].tolist()
    assert got["id"].tolist() == b["id"].tolist()
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), _pot_projection(a, b, True), rtol=1e-4)


def test_saved_potentials_move_later_files_like_a_fresh_solve(capfd, tmp_path, clouds):
    pair = [tmp_path / "A.csv", tmp_path / "B.csv"]
    common = ["--columns", "x,y", "--id", "id"]
    saved = tmp_path / "map.npz"
    code, _, err = otdist(capfd, "map", *pair, "--apply", pair[1], "-o", tmp_path / "fresh.csv",
                          "--inverse", "--save-potentials", saved, *common)  # fmt: skip
    assert (code, err) == (0, "")
    code, out, err = otdist(capfd, "map", "--potentials", saved, "--apply", pair[1], "-o",
                            tmp_path / "later.csv", "--inverse", *common)  # fmt: skip
    assert (code, err) == (0, "")
    assert f"saved in {saved}" in out
    assert (tmp_path / "later.csv").read_bytes() == (tmp_path / "fresh.csv").read_bytes()


def _no_leftovers(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


@pytest.mark.parametrize("case", ["dimension", "nan", "missing", "garbage", "same_as_input",
                                  "exists", "text_into_npy", "potentials_and_eps"])  # fmt: skip
def test_bad_input_is_one_error_line_and_no_output(capfd, tmp_path, clouds, case):
    pair = [tmp_path / "A.csv", tmp_path / "B.csv"]
    x, out, extra = tmp_path / "X.csv", tmp_path / "out.csv", ["--columns", "x,y"]
    files = {"A.csv", "B.csv"}
    if case == "dimension":  # every numeric column by default: A has 2, X 3
        a, b = clouds
        pair = [tmp_path / "A2.csv", tmp_path / "B2.csv"]
        a[["x", "y"]].to_csv(pair[0], index=False)
        b[["x", "y"]].to_csv(pair[1], index=False)
        files |= {"A2.csv", "B2.csv"}
        extra = []
        x.write_text("x,y,z\n1,2,3\n4,5,6\n")
        message = (f"{x}: 3 coordinate columns (x, y, z) but A ({pair[0]}) has 2 coordinate "
                   "columns (x, y): the map moves points of A's space; pick the same "
                   "coordinates with --columns")  # fmt: skip
    elif case == "nan":
        x.write_text("x,y\n1,2\nnan,5\n")
        message = (
            f"{x}: line 3, column 'x': 'nan' is not a finite number; clean the data or drop the row"
        )
    elif case == "missing":
        x = tmp_path / "nope.csv"
        message = f"{x}: no such file; check the path"
    elif case == "garbage":
        x = tmp_path / "X.parquet"
        x.write_bytes(b"PAR1 not really")
        message = f"{x}: is not a valid Parquet file"
    elif case == "same_as_input":
        x, out = pair[0], pair[1]
        message = f"-o: '{pair[1]}' is the input file '{pair[1]}'; an input is never overwritten: write the output under another name"
    elif case == "exists":
        x = pair[0]
        out.write_text("keep me\n")
        files.add("out.csv")
        message = f"-o: '{out}' exists; use --overwrite to replace it"
    elif case == "text_into_npy":
        x, out = pair[0], tmp_path / "out.npy"
        message = (f"-o: '{out}': .npy holds numbers only, and column 'id' of {x} is not "
                   "numeric; write .csv, .tsv or .parquet to keep it")  # fmt: skip
    else:
        np.savez(tmp_path / "map.npz", f=np.zeros(1))
        files.add("map.npz")
        pair, extra = [], ["--potentials", tmp_path / "map.npz", "--eps", "0.5"]
        x = tmp_path / "A.csv"
        message = "--potentials: the saved map fixes the solve; drop --eps"
    if x.name == "X.csv":
        files.add("X.csv")
    if x.suffix == ".parquet":
        files.add(x.name)
    code, stdout, err = otdist(capfd, "map", *pair, "--apply", x, "-o", out, *extra)
    assert (code, stdout) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"Error: {message}"), err
    _no_leftovers(tmp_path, files)
    if case == "exists":
        assert out.read_text() == "keep me\n"


def test_one_real_subprocess_run(tmp_path):
    """The installed entry point, sample data, a TSV with its id column carried."""
    out = tmp_path / "moved.tsv"
    cells = ROOT / "sample_data"
    run = subprocess.run(
        [sys.executable, "-m", "otcli", "map", cells / "cells_a.tsv", cells / "cells_b.tsv",
         "--columns", "pc1,pc2,pc3,pc4,pc5", "--id", "id", "--apply", cells / "cells_a.tsv",
         "-o", out, "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = pd.read_csv(out, sep="\t")
    source = pd.read_csv(cells / "cells_a.tsv", sep="\t")
    assert list(got.columns) == list(source.columns) and got["id"].equals(source["id"])
    assert '"points": 300' in run.stdout


@pytest.mark.slow
def test_a_million_points_stay_under_500_mb(tmp_path):
    """A 1,000,000-row CSV (id, x, y, z, label) moved in chunks: the whole command's peak
    RSS (torch alone is ~220 MB of it) stays under 500 MB, and every row comes out."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    pts = rng.random((n, 3))
    pd.DataFrame({"id": np.char.add("pt", np.arange(n).astype(str)), "x": pts[:, 0],
                  "y": pts[:, 1], "z": pts[:, 2], "label": rng.integers(0, 5, n)}).to_csv(
        tmp_path / "X.csv", index=False)  # fmt: skip
    for name, shift in (("A.csv", 0.0), ("B.csv", 0.3)):
        cloud = rng.random((2000, 3)) * 0.5 + shift
        pd.DataFrame(cloud, columns=["x", "y", "z"]).to_csv(tmp_path / name, index=False)
    out = tmp_path / "moved.csv"
    # A fresh parent whose only child is the command: its RUSAGE_CHILDREN is that child's.
    probe = (
        "import resource, subprocess, sys; "
        "code = subprocess.call(sys.argv[1:]); "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "otcli", "map",
         tmp_path / "A.csv", tmp_path / "B.csv", "--apply", tmp_path / "X.csv", "-o", out,
         "--columns", "x,y,z", "--eps", "0.01"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    code, peak_kb = (int(v) for v in run.stdout.split()[-2:])
    assert code == 0, run.stderr
    assert peak_kb < 500 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    with open(out) as f:
        assert f.readline() == "id,x,y,z,label\n"
        assert sum(1 for _ in f) == n


@pytest.mark.parametrize("field", ["dtype", "cost_dtype"])
def test_potentials_file_with_an_unknown_precision_is_one_error_line(
    capfd, tmp_path, clouds, field
):
    """A potentials file edited or damaged: its precision names go to torch, so an unknown one
    is refused at load (it was an AttributeError traceback)."""
    pair = [tmp_path / "A.csv", tmp_path / "B.csv"]
    saved, bad, out = tmp_path / "map.npz", tmp_path / "bad.npz", tmp_path / "out.csv"
    code, _, err = otdist(capfd, "map", *pair, "--apply", pair[0], "-o", tmp_path / "first.csv",
                          "--columns", "x,y", "--save-potentials", saved)  # fmt: skip
    assert (code, err) == (0, "")
    with np.load(saved) as archive:
        data = {k: archive[k] for k in archive.files}
    data[field] = np.array("bogus")
    np.savez(bad, **data)
    code, stdout, err = otdist(capfd, "map", "--potentials", bad, "--apply", pair[0], "-o", out,
                               "--columns", "x,y")  # fmt: skip
    assert (code, stdout) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"Error: {bad}: unknown precision"), err
    assert not out.exists()

"""The ``otdist A B`` command end to end: numbers, formats, outputs and every error path.

Oracles are the seed's worked examples (closed forms) and POT's solvers; CLI errors are
checked by exact text, exit code, the absence of a traceback and of partial output files.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import otdist
from otcli.cli import run

LINE_A = np.array([[i, 0.0] for i in range(5)])
LINE_B = np.array([[i, 1.0] for i in range(5)])


def write_csv(path: Path, points: np.ndarray, header: str | None = "x,y") -> Path:
    lines = ([header] if header else []) + [",".join(repr(float(v)) for v in row) for row in points]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def line(tmp_path: Path) -> tuple[Path, Path]:
    return write_csv(tmp_path / "a.csv", LINE_A), write_csv(tmp_path / "b.csv", LINE_B)


def quiet_value(capfd: pytest.CaptureFixture[str], *args: object) -> float:
    code, out, err = otdist(capfd, *args, "--quiet")
    assert code == 0, err
    return float(out)


# --- the seed's table --------------------------------------------------------------------------


@pytest.mark.parametrize(("eps", "expected"), [(0.1, 1.0001), (1.0, 1.4079)])
def test_seed_line(capfd, line, eps, expected):
    assert round(quiet_value(capfd, *line, "--eps", eps), 4) == expected


@pytest.mark.parametrize("shift", [1, 2, 3, 4])
def test_seed_shifts(capfd, tmp_path, shift):
    a = write_csv(tmp_path / "a.csv", LINE_A)
    b = write_csv(tmp_path / "b.csv", LINE_A + np.array([0.0, shift]))
    assert round(quiet_value(capfd, a, b, "--eps", 0.1), 3) == shift**2


def test_seed_moons_converged_value(capfd):
    data = Path(__file__).parent.parent / "sample_data"
    value = quiet_value(capfd, data / "moons_a.csv", data / "moons_b.csv", "--eps", 0.1)
    assert round(value, 3) == 1.797


# --- formats and outputs -----------------------------------------------------------------------


def _all_formats(tmp_path: Path, stem: str, pts: np.ndarray, w: np.ndarray) -> dict[str, list[str]]:
    """The same weighted cloud in every input format; maps suffix → options that read it."""
    pq.write_table(
        pa.table({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "mass": w}),
        tmp_path / f"{stem}.parquet",
    )
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in np.column_stack([pts, w]))
    (tmp_path / f"{stem}.csv").write_text("x,y,z,mass\n" + text + "\n")
    (tmp_path / f"{stem}.tsv").write_text("x\ty\tz\tmass\n" + text.replace(",", "\t") + "\n")
    (tmp_path / f"{stem}.txt").write_text(text.replace(",", "   ") + "\n")
    np.save(tmp_path / f"{stem}.npy", np.column_stack([pts, w]))
    np.savez(tmp_path / f"{stem}.npz", points=pts, weights=w)
    by_name = ["--columns", "x,y,z", "--weights", "mass"]
    by_index = ["--columns", "0,1,2", "--weights", "3"]
    return {".parquet": by_name, ".csv": by_name, ".tsv": by_name, ".txt": by_index,
            ".npy": by_index, ".npz": []}  # fmt: skip


def test_every_input_format_gives_the_same_cost(capfd, tmp_path):
    rng = np.random.default_rng(1)
    x, wx = rng.random((23, 3)), rng.random(23) + 0.1
    y, wy = rng.random((17, 3)) + 0.5, rng.random(17) + 0.1
    formats = _all_formats(tmp_path, "a", x, wx)
    _all_formats(tmp_path, "b", y, wy)
    # Oracle: POT's converged log-domain Sinkhorn on the same weighted data.
    expected = ot.sinkhorn2(
        wx / wx.sum(), wy / wy.sum(), ot.dist(x, y), 0.1, method="sinkhorn_log",
        numItermax=10000, stopThr=1e-12,
    )  # fmt: skip
    for suffix, opts in formats.items():
        value = quiet_value(capfd, tmp_path / f"a{suffix}", tmp_path / f"b{suffix}", *opts)
        assert value == pytest.approx(expected, rel=1e-4), suffix


def test_stdin(capfd, line, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(line[0].read_bytes())))
    assert round(quiet_value(capfd, "-", line[1]), 4) == 1.0001


def test_json_fields(capfd, line):
    code, out, err = otdist(capfd, *line, "--json", "--divergence")
    assert code == 0, err
    got = json.loads(out)
    required = {
        "cost", "objective", "eps", "iterations", "converged", "marginal_error", "n", "m",
        "dim", "cost_fn", "device", "dtype", "seconds", "divergence",
    }  # fmt: skip
    assert required <= got.keys()
    assert (got["n"], got["m"], got["dim"], got["eps"]) == (5, 5, 2, 0.1)
    assert got["converged"] is True and got["marginal_error"] <= got["tol"]
    assert got["cost_fn"] == "sqeuclidean" and got["device"] == "cpu"
    assert round(got["cost"], 4) == 1.0001
    # Debiased: equal-spaced lines one unit apart, S ≈ W₂² = 1 (entropic bias removed).
    assert got["divergence"] == pytest.approx(1.0, abs=1e-4)


def test_human_summary(capfd, line):
    code, out, err = otdist(capfd, *line)
    assert code == 0 and err == ""
    label, value = out.splitlines()[0].split()[:2]
    assert label == "cost" and len(value) == 8 and round(float(value), 4) == 1.0001
    assert "converged" in out and "5 × 5 in 2-D" in out and "cpu, float32" in out


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_coupling_and_cost_outputs(capfd, tmp_path, suffix):
    rng = np.random.default_rng(2)
    a = write_csv(tmp_path / "a.csv", rng.random((9, 2)))
    b = write_csv(tmp_path / "b.csv", rng.random((6, 2)))
    pc, cm = tmp_path / f"P{suffix}", tmp_path / f"C{suffix}"
    code, out, err = otdist(capfd, a, b, "--json", "--coupling", pc, "--cost-matrix", cm,
                            "--dtype", "float64", "--coupling-threshold", -1)  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    P, C = _read_matrix(pc, (9, 6)), _read_matrix(cm, (9, 6))
    np.testing.assert_allclose(C, ot.dist(np.loadtxt(a, delimiter=",", skiprows=1),
                                          np.loadtxt(b, delimiter=",", skiprows=1)), rtol=1e-12)  # fmt: skip
    marginal_l1 = np.abs(P.sum(1) - 1 / 9).sum() + np.abs(P.sum(0) - 1 / 6).sum()
    assert marginal_l1 <= res["marginal_error"] * 1.01 + 1e-12
    assert marginal_l1 <= 1e-7
    assert (P * C).sum() == pytest.approx(res["cost"], rel=1e-9)


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    table = pq.read_table(path) if path.suffix == ".parquet" else None
    if table is None:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
    assert table.column_names == ["i", "j", "value"]
    out = np.zeros(shape)
    out[table["i"].to_numpy(), table["j"].to_numpy()] = table["value"].to_numpy()
    return out


def test_coupling_threshold_drops_small_entries(capfd, tmp_path, line):
    out = tmp_path / "P.csv"
    code, _, err = otdist(capfd, *line, "--eps", 0.1, "--coupling", out)
    assert code == 0, err
    rows = out.read_text().splitlines()
    # Default threshold 1e-9 × max keeps the diagonal and the first off-diagonals (e^-10 ≈ 4.5e-5).
    assert rows[0] == "i,j,value" and len(rows) - 1 == 5 + 8


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "extra", "metric"),
    [
        ("euclidean", [], "euclidean"),
        ("cityblock", [], "cityblock"),
        ("cosine", [], "cosine"),
        ("pnorm", ["--p", "3"], None),
    ],
)
def test_costs_match_pot(capfd, tmp_path, cost, extra, metric):
    rng = np.random.default_rng(3)
    x, y = rng.random((12, 3)) + 0.1, rng.random((10, 3)) + 0.1
    a, b = write_csv(tmp_path / "a.csv", x, None), write_csv(tmp_path / "b.csv", y, None)
    if metric is None:
        M = (np.abs(x[:, None, :] - y[None, :, :]) ** 3).sum(-1)
    else:
        M = ot.dist(x, y, metric=metric)
    value = quiet_value(capfd, a, b, "--cost", cost, *extra, "--dtype", "float64", "--eps", 0.05)
    expected = ot.sinkhorn2(np.full(12, 1 / 12), np.full(10, 1 / 10), M, 0.05,
                            method="sinkhorn_log", numItermax=100000, stopThr=1e-13)  # fmt: skip
    assert value == pytest.approx(expected, rel=1e-5)


def test_no_scaling_and_float64_agree(capfd, line):
    v1 = quiet_value(capfd, *line, "--no-scaling", "--dtype", "float64")
    v2 = quiet_value(capfd, *line, "--scaling", "0.7", "--dtype", "float64", "--tol", "1e-6")
    assert v1 == pytest.approx(v2, rel=1e-6)


def test_not_converged_warns_and_exits_zero(capfd, tmp_path):
    data = Path(__file__).parent.parent / "sample_data"
    code, out, err = otdist(capfd, data / "moons_a.csv", data / "moons_b.csv", "--eps", 0.001,
                            "--max-iter", 5, "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["converged"] is False
    assert err.startswith("Warning: not converged: marginal error ")
    assert "--max-iter 5" in err


# --- errors: one line, exit 2, no partial output -----------------------------------------------


BAD_FILES = {
    "missing.csv": (None, "no such file"),
    "empty.csv": (b"", "empty"),
    "header_only.csv": (b"x,y\n", "no data"),
    "text_cell.csv": (b"x,y\n1,2\n3,abc\n", "abc"),
    "nan.csv": (b"x,y\n1,2\nnan,4\n", "line 3"),
    "inf.npy": ("inf", "non-finite"),
    "ragged.csv": (b"x,y\n1,2\n3,4,5\n", "line 3"),
    "garbage.parquet": (b"\x00\x01garbage\xff\xfe", "parquet"),
    "garbage.npy": (b"\x93NUMPY garbage", ""),
    "object.npy": ("object", "pickle"),
    "cube.npy": ("3d", "2-D"),
    "points.xyz": (b"1 2 3\n", "unknown file type"),
    "negative_w.csv": (b"x,y,w\n1,2,1\n3,4,-1\n", "negative weight"),
    "zero_w.csv": (b"x,y,w\n1,2,0\n3,4,0\n", "all weights are zero"),
}


def _make_bad(path: Path, content: object) -> None:
    if content is None:
        return
    if content == "inf":
        np.save(path, np.array([[1.0, np.inf]]))
    elif content == "object":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif content == "3d":
        np.save(path, np.zeros((2, 3, 2)))
    else:
        path.write_bytes(content)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_files(capfd, tmp_path, line, name):
    content, phrase = BAD_FILES[name]
    bad = tmp_path / name
    _make_bad(bad, content)
    weights = ["--weights", "w"] if "_w" in name else []
    other = write_csv(tmp_path / "other.csv", LINE_A[:2]) if weights else line[0]
    if weights:
        other.write_text("x,y,w\n0,0,1\n1,0,1\n")
    coupling = tmp_path / "out" / "P.npy"
    coupling.parent.mkdir()
    code, out, err = otdist(capfd, other, bad, *weights, "--coupling", coupling)
    assert code == 2
    assert out == ""
    assert err.startswith(f"Error: {bad}: ") and err.count("\n") == 1, err
    assert phrase.lower() in err.lower()
    assert "Traceback" not in err
    assert list(coupling.parent.iterdir()) == []


def test_directory_and_dimension_mismatch(capfd, tmp_path, line):
    code, _, err = otdist(capfd, line[0], tmp_path)
    assert code == 2 and err.startswith(f"Error: {tmp_path}: ") and "directory" in err
    three = write_csv(tmp_path / "c3.csv", np.ones((4, 3)), "x,y,z")
    code, _, err = otdist(capfd, line[0], three)
    assert code == 2
    assert err == f"Error: {three}: points have 3 coordinates but {line[0]} has 2\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--eps", "0"], "Error: --eps: ε must be a positive finite number, got 0.0\n"),
        (["--eps", "-1"], "Error: --eps: ε must be a positive finite number, got -1.0\n"),
        (["--eps", "nan"], "Error: --eps: ε must be a positive finite number, got nan\n"),
        (["--tol", "-1e-3"], "Error: --tol: must be a finite number ≥ 0, got -0.001\n"),
        (["--scaling", "1.5"], "Error: --scaling: must lie strictly between 0 and 1, got 1.5\n"),
        (["--max-iter", "0"], "Error: --max-iter: must be a positive integer, got 0\n"),
        (["--device", "tpu"], "Error: --device: unknown device 'tpu'; use auto, cpu, cuda, cuda:K or mps\n"),
        (["--p", "3"], "Error: --p: --p applies to --cost pnorm only (got --cost sqeuclidean)\n"),
        (["--cost", "pnorm", "--p", "-1"], "Error: --p: p must be a positive finite number, got -1.0\n"),
        (["--columns", "x,q"], None),
        (["--cost", "manhattan"], None),
        (["--coupling", "P.bmp"], None),
    ],
)  # fmt: skip
def test_bad_options(capfd, line, args, expected):
    code, out, err = otdist(capfd, *line, *args)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    if expected is not None:
        assert err == expected


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the no-CUDA error on a CPU machine"
)
def test_cuda_without_cuda(capfd, line):
    code, _, err = otdist(capfd, *line, "--device", "cuda")
    assert code == 2
    assert (
        err == "Error: --device: cuda requested but CUDA is not available here; use --device cpu\n"
    )


def test_both_stdin_refused(capfd):
    code, _, err = otdist(capfd, "-", "-")
    assert code == 2 and err == "Error: B: only one of A and B can be - (standard input)\n"


def test_failed_second_write_leaves_no_file(capfd, tmp_path, line, monkeypatch):
    from otcli import io

    real = io.write_matrix
    calls = []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr("otcli.export.write_matrix", flaky)
    with pytest.raises(OSError, match="No space"):
        run([str(line[0]), str(line[1]), "--coupling", str(tmp_path / "P.npy"),
             "--cost-matrix", str(tmp_path / "C.npy")])  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


# --- help, version, start-up, a real process --------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["pair", "--help"], ["--version"]])
def test_help_and_version(capfd, args):
    code, out, _ = otdist(capfd, *args)
    assert code == 0
    assert ("otdist" in out) and (args != ["pair", "--help"] or "--eps" in out)


def test_help_does_not_import_torch():
    code = (
        "import sys; from otcli.cli import run; rc = run(['--help']); "
        "heavy = [m for m in ('torch', 'numpy', 'pyarrow') if m in sys.modules]; "
        "print(heavy); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_real_subprocess_run(tmp_path, line):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "otcli", str(line[0]), str(line[1]), "--eps", "1", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert round(got["cost"], 4) == 1.4079 and math.isfinite(got["objective"])
    bad = subprocess.run(
        [sys.executable, "-m", "otcli", str(line[0]), str(tmp_path / "nope.csv")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == f"Error: {tmp_path / 'nope.csv'}: no such file; check the path\n"

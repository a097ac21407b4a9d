"""Whole commands over files: ``otdist batch`` and ``otdist pairwise --against`` against the
POT loop a user would write over the same files, start-up and reading included.

Used by ``benchmarks/run.py --only files,cross`` (see there for how to run):

- files: ``--files-pairs`` (default 4,000) ragged pairs of unit-cube 3-D clouds, 100–500
  points each, as ``.npy`` files and a manifest (bench_batch.py's data). ``otdist batch
  MANIFEST -o out.parquet`` against ``python -c`` that reads the manifest, loads each pair's
  two files with ``np.load`` and calls ``ot.sinkhorn2`` (kernel Sinkhorn, float64).
- cross: ``--cross`` × ``--cross`` (default 100 × 100) clouds of 512 points, the evaluation of
  a point-cloud generative model: ``otdist pairwise A/*.npy --against B/*.npy -o m.npy``
  against ``python -c`` that loads every file once and loops over the |A|·|B| pairs.

ε = 0.01, otcli tol 1e-4 (L1), POT stopThr 1e-5 (its L2 of the column marginal error; this is
what brings its L1 error to otcli's, as the batch workload measures). Accuracy outside the
timings: otcli's own marginal errors; POT's plans on a sample of pairs, solved again untimed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EPS, TOL, POT_THR = 0.01, 1e-4, 1e-5

POT_MANIFEST = """
import csv, sys
from pathlib import Path
import numpy as np, ot
manifest, out, eps, thr = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
values = []
with open(manifest, newline="") as fh:
    for row in csv.DictReader(fh):
        x, y = np.load(manifest.parent / row["a"]), np.load(manifest.parent / row["b"])
        a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
        values.append(float(ot.sinkhorn2(a, b, ot.dist(x, y), eps, stopThr=thr,
                                         numItermax=100000)))
np.save(out, np.array(values))
"""

POT_CROSS = """
import sys
import numpy as np, ot
out, eps, thr, na = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
files = sys.argv[5:]
clouds = [np.load(f) for f in files]
A, B = clouds[:na], clouds[na:]
values = np.empty((len(A), len(B)))
for i, x in enumerate(A):
    a = np.full(len(x), 1 / len(x))
    for j, y in enumerate(B):
        b = np.full(len(y), 1 / len(y))
        values[i, j] = ot.sinkhorn2(a, b, ot.dist(x, y), eps, stopThr=thr, numItermax=100000)
np.save(out, values)
"""


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode not in (0,):
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return seconds


def otdist_batch(manifest: Path) -> tuple[float, list[float], list[float]]:
    import pyarrow.parquet as pq

    out = manifest.with_name("otdist.parquet")
    cmd = [sys.executable, "-m", "otcli", "batch", str(manifest), "-o", str(out),
           "--eps", str(EPS), "--tol", str(TOL), "--no-progress", "--overwrite"]  # fmt: skip
    seconds = _run(cmd)
    rows = pq.read_table(out).to_pylist()
    return seconds, [r["cost"] for r in rows], [r["marginal_error"] for r in rows]


def pot_manifest(manifest: Path) -> tuple[float, list[float]]:
    out = manifest.with_name("pot.npy")
    seconds = _run([sys.executable, "-c", POT_MANIFEST, str(manifest), str(out), str(EPS),
                    str(POT_THR)])  # fmt: skip
    return seconds, np.load(out).tolist()


def make_cross(folder: Path, count: int, n: int = 512, seed: int = 0) -> tuple[list, list]:
    """``count`` "generated" and ``count`` "reference" clouds of ``n`` points: unit-cube
    points, the generated ones slightly squeezed (a model that misses some spread)."""
    rng = np.random.default_rng(seed)
    (folder / "gen").mkdir()
    (folder / "ref").mkdir()
    gen, ref = [], []
    for k in range(count):
        g = folder / "gen" / f"g{k:04d}.npy"
        r = folder / "ref" / f"r{k:04d}.npy"
        np.save(g, 0.05 + 0.9 * rng.random((n, 3)))
        np.save(r, rng.random((n, 3)))
        gen.append(g)
        ref.append(r)
    return gen, ref


def otdist_cross(folder: Path, gen: list, ref: list) -> tuple[float, np.ndarray, list[float]]:
    import pyarrow.parquet as pq

    out = folder / "otdist.parquet"
    cmd = [sys.executable, "-m", "otcli", "pairwise", *map(str, gen), "--against",
           *map(str, ref), "-o", str(out), "--eps", str(EPS), "--tol", str(TOL),
           "--no-progress", "--overwrite"]  # fmt: skip
    seconds = _run(cmd)
    rows = pq.read_table(out).to_pylist()
    values = np.full((len(gen), len(ref)), np.nan)
    for r in rows:
        values[r["i"], r["j"]] = r["cost"]
    return seconds, values, [r["marginal_error"] for r in rows]


def pot_cross(folder: Path, gen: list, ref: list) -> tuple[float, np.ndarray]:
    out = folder / "pot.npy"
    seconds = _run([sys.executable, "-c", POT_CROSS, str(out), str(EPS), str(POT_THR),
                    str(len(gen)), *map(str, gen), *map(str, ref)])  # fmt: skip
    return seconds, np.load(out)


def pot_errors(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """POT's plans' L1 marginal errors on ``pairs`` (solved again, untimed)."""
    import ot

    errs = []
    for x, y in pairs:
        a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
        P = ot.sinkhorn(a, b, ot.dist(x, y), EPS, stopThr=POT_THR, numItermax=100000)
        errs.append(float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()))
    return errs


def median_dev(ours, theirs) -> float:
    ours, theirs = np.ravel(ours), np.ravel(theirs)
    return float(statistics.median(np.abs(ours / theirs - 1)))

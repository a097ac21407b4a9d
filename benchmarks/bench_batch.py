"""Many small pairs: ``otdist batch`` against POT and GeomLoss, same data, same machine, same run.

Run on demand (not part of the tests):

    python benchmarks/bench_batch.py [--pairs 1000] [--repeats 3] [--eps 0.01]

Data: ``--pairs`` pairs of unit-cube 3-D clouds with 100–500 points each (sizes drawn
independently), squared Euclidean cost, uniform weights, ε = 0.01. Methods, interleaved per
repeat so machine drift hits all alike:

- ``otdist batch`` as a user runs it (a subprocess: process start, torch import, reading
  every ``.npy`` file, writing the Parquet table all included), tol 1e-4;
- POT ``ot.sinkhorn2`` (kernel-domain Sinkhorn, numpy float64) per pair in a Python loop, on
  clouds already in memory, ``stopThr`` ``--pot-thr``;
- GeomLoss ``SamplesLoss("sinkhorn", backend="tensorized")`` per pair in a loop (its cost is
  |x−y|²/2, so its ε is half ours: blur = √(ε/2)); potentials only, ``--geomloss-scaling``;
- POT ``ot.batch.solve_batch`` on one padded batch of the first ``--ot-batch-pairs`` pairs
  (padding carries zero mass): it needs equal sizes, and is slow, so only a subset.

Accuracy is measured the same way for everyone, outside the timings: the marginal L1 error
‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ of each method's plan and ⟨P, C⟩ relative to otdist's, on the first
``--check`` pairs. Prints pairs/s, the ratio otdist / method, and those errors.

Needs POT (a test dependency) and, for the GeomLoss row, ``pip install geomloss`` (a
benchmark-only dependency, not in pyproject); without it that row is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_data(
    folder: Path, pairs: int, seed: int = 0
) -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    """``pairs`` pairs of clouds as .npy files plus a manifest; also returned in memory."""
    rng = np.random.default_rng(seed)
    data, lines = [], ["id,a,b"]
    for k in range(pairs):
        n, m = (int(s) for s in rng.integers(100, 501, 2))
        x, y = rng.random((n, 3)), rng.random((m, 3))
        np.save(folder / f"x{k}.npy", x)
        np.save(folder / f"y{k}.npy", y)
        lines.append(f"{k},x{k}.npy,y{k}.npy")
        data.append((x, y))
    manifest = folder / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, data


def marginal_l1(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum())


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


# --- methods: each returns (seconds, costs of the first `check` pairs, marginal errors) -----------


def run_otdist(
    manifest: Path, eps: float, tol: float, extra: list[str]
) -> tuple[float, list[float], list[float]]:
    import pyarrow.parquet as pq

    out = manifest.with_name("out.parquet")
    cmd = [sys.executable, "-m", "otcli", "batch", str(manifest), "-o", str(out)]
    cmd += ["--eps", str(eps), "--tol", str(tol), "--no-progress", "--overwrite", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"otdist batch failed: {proc.stderr}")
    rows = pq.read_table(out).to_pylist()
    return seconds, [r["cost"] for r in rows], [r["marginal_error"] for r in rows]


def run_pot_loop(
    data, eps: float, thr: float, check: int
) -> tuple[float, list[float], list[float]]:
    import ot

    t = time.perf_counter()
    costs = []
    for x, y in data:
        costs.append(float(ot.sinkhorn2(uniform(len(x)), uniform(len(y)), ot.dist(x, y), eps,
                                        stopThr=thr, numItermax=100000)))  # fmt: skip
    seconds = time.perf_counter() - t
    errs = []
    for x, y in data[:check]:  # the same solve again, for its plan: not timed
        a, b = uniform(len(x)), uniform(len(y))
        errs.append(
            marginal_l1(ot.sinkhorn(a, b, ot.dist(x, y), eps, stopThr=thr, numItermax=100000), a, b)
        )
    return seconds, costs, errs


def run_geomloss_loop(
    data, eps: float, scaling: float, check: int
) -> tuple[float, list[float], list[float]]:
    from geomloss import SamplesLoss

    eps_g = eps / 2  # GeomLoss's cost for p=2 is |x−y|²/2
    loss = SamplesLoss("sinkhorn", p=2, blur=eps_g**0.5, scaling=scaling, debias=False,
                       potentials=True, backend="tensorized")  # fmt: skip
    tensors = [(torch.from_numpy(x).float(), torch.from_numpy(y).float()) for x, y in data]
    t = time.perf_counter()
    pots = [loss(x, y) for x, y in tensors]
    seconds = time.perf_counter() - t
    costs, errs = [], []
    for (x, y), (f, g) in zip(data[:check], pots[:check], strict=False):
        c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        a, b = uniform(len(x)), uniform(len(y))
        f64, g64 = f.double().reshape(-1).numpy(), g.double().reshape(-1).numpy()
        plan = a[:, None] * b[None, :] * np.exp((f64[:, None] + g64[None, :] - c / 2) / eps_g)
        costs.append(float((plan * c).sum()))
        errs.append(marginal_l1(plan, a, b))
    return seconds, costs, errs


def run_ot_batch(data, eps: float, thr: float) -> tuple[float, list[float], list[float]]:
    import ot

    n_max = max(len(x) for x, _ in data)
    m_max = max(len(y) for _, y in data)
    B = len(data)
    M = np.zeros((B, n_max, m_max))
    a, b = np.zeros((B, n_max)), np.zeros((B, m_max))
    for k, (x, y) in enumerate(data):
        M[k, : len(x), : len(y)] = ot.dist(x, y)
        a[k, : len(x)], b[k, : len(y)] = uniform(len(x)), uniform(len(y))
    t = time.perf_counter()
    res = ot.batch.solve_batch(M, reg=eps, a=a, b=b, max_iter=100000, tol=thr)
    seconds = time.perf_counter() - t
    plan = np.asarray(res.plan)
    costs = [float((plan[k] * M[k]).sum()) for k in range(B)]
    errs = [marginal_l1(plan[k], a[k], b[k]) for k in range(B)]
    return seconds, costs, errs


def main() -> None:
    import ot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--tol", type=float, default=1e-4, help="otdist's marginal L1 target")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", type=int, default=100, help="pairs whose plans are checked")
    ap.add_argument("--pot-thr", type=float, default=1e-5)
    ap.add_argument("--geomloss-scaling", type=float, default=0.9)
    ap.add_argument("--ot-batch-pairs", type=int, default=32)
    ap.add_argument("--otdist-args", default="", help="extra options for otdist batch")
    args = ap.parse_args()
    try:
        import geomloss  # noqa: F401

        have_geomloss = True
    except ImportError:
        have_geomloss = False
    gl = "yes" if have_geomloss else "not installed"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"POT {ot.__version__}; geomloss {gl}")  # fmt: skip
    print(
        f"{args.pairs} pairs, 100–500 points each, d=3, sqeuclidean, eps={args.eps}; "
        f"medians of {args.repeats}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        manifest, data = make_data(folder, args.pairs)
        runs: dict[str, list[tuple[float, list[float], list[float]]]] = {}
        for _ in range(args.repeats):  # interleaved
            runs.setdefault("otdist batch (whole command)", []).append(
                run_otdist(manifest, args.eps, args.tol, args.otdist_args.split())
            )
            runs.setdefault("POT sinkhorn2 loop (kernel)", []).append(
                run_pot_loop(data, args.eps, args.pot_thr, args.check)
            )
            if have_geomloss:
                runs.setdefault("GeomLoss tensorized loop", []).append(
                    run_geomloss_loop(data, args.eps, args.geomloss_scaling, args.check)
                )
        sub = data[: args.ot_batch_pairs]
        runs["POT ot.batch (one padded batch)"] = [run_ot_batch(sub, args.eps, args.pot_thr)]
        report(runs, args.pairs, len(sub), args.check)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(runs, pairs: int, sub: int, check: int) -> None:
    ours = runs["otdist batch (whole command)"]
    ref = ours[-1][1]
    rate0 = pairs / statistics.median(s for s, _, _ in ours)
    print(f"{'method':<34} {'pairs':>6} {'pairs/s':>9} {'otdist ×':>9} {'marg L1 med':>12} "
          f"{'marg L1 max':>12} {'|Δcost| med':>12}")  # fmt: skip
    for name, rs in runs.items():
        count = sub if "ot.batch" in name else pairs
        rate = count / statistics.median(s for s, _, _ in rs)
        _, costs, errs = rs[-1]
        errs = [e for e in errs if np.isfinite(e)] or [float("nan")]
        rel = [abs(c / r - 1) for c, r in zip(costs[:check], ref[:check], strict=False)]
        med_err, max_err, med_rel = statistics.median(errs), max(errs), statistics.median(rel)
        print(f"{name:<34} {count:>6} {rate:>9.1f} {rate0 / rate:>9.2f} "
              f"{med_err:>12.1e} {max_err:>12.1e} {med_rel:>12.1e}")  # fmt: skip


if __name__ == "__main__":
    main()

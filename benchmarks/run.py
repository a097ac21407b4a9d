"""One-command benchmark suite: otcli against its peers, same data, same machine, same run.

Run on demand (not part of the tests; minutes at the default sizes, seconds with --quick):

    python benchmarks/run.py [--only pair,smalleps,exact,batch,files,cross,cli,real,
                                     contention,floor,loss] [--quick] [--repeats 3]
                             [--sizes 1000 4000 10000] [--pairs 1000] [--files-pairs 4000]
                             [--cross 100] [--json results.json]

Data: unit-cube random clouds in 3-D (numpy ``default_rng(seed)``), squared Euclidean cost
C_ij = |x_i − y_j|², uniform weights. Within a workload the methods run interleaved, one run
of each per repeat, so machine drift hits every method alike; times are medians over
``--repeats`` runs. Accuracy is measured by this script the same way for every method and
outside the timings: the marginal L1 error ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ of the plan each method
returns (in float64; otcli's own ``marginal_error`` is exactly that for its plan), and the
transport cost ⟨P, C⟩. POT gets its cost matrix precomputed (not timed); every other method
starts from the points. Workloads:

- pair: one dense pair, n = m = ``--sizes``, ε = 0.01. otcli (float32, tol 1e-5); POT
  ``ot.sinkhorn`` kernel at stopThr 1e-5 and 1e-7 (POT's threshold bounds ‖Pᵀ1 − b‖₂; 1e-7
  is what reaches otcli's L1 error, so that row is the fair one), ``sinkhorn_stabilized``,
  ``sinkhorn_log`` (n ≤ ``--log-max-n`` only: minutes beyond); GeomLoss tensorized at
  ε-scaling 0.5 and 0.9 (its cost is |x−y|²/2, so blur = √(ε/2); its plan is rebuilt from
  its potentials; "iters" are its ε stages); and the seed's algorithm (seed_sinkhorn.py: the
  article's log-domain loop, max_iter 100, thresh 0.1, which stops early: see its error).
- smalleps: n = m = 2000, ε = 1e-4, against the exact ``ot.emd2`` (timed once, not a ratio
  base): the relative gap |⟨P, C⟩ / emd2 − 1| and whether it is within 1 %. POT's kernel
  solver underflows here (its row says what it returned); ``sinkhorn_log`` needs
  ``--include-slow`` (and then stops at ``--slow-iters`` iterations).
- exact: ``otcli``'s exact solver (C built in float64 included) against POT's ``ot.emd`` on
  the same clouds: n = m = 2000 uniform and 1500 × 2000 (network simplex in both; otcli
  solves equal uniform clouds up to 1,000 points as an assignment).
- batch: ``--pairs`` pairs of 100–500 points (bench_batch.py's data and runners): otcli's
  library on the lists, ``otdist batch`` end to end, POT ``sinkhorn2`` in a loop, GeomLoss in
  a loop, POT ``ot.batch`` (log-domain, one run: slow) on the first 32 pairs, padded with
  zero mass. ε = 0.01, otcli tol 1e-4, POT stopThr 1e-5. Then the floor: the bare batched
  products over otcli's buckets at otcli's median iteration count, in turn or side by side
  (``batch_floor``: the faster).
- files, cross: whole commands over files against the POT loop a user would write over the
  same files (bench_files.py): ``otdist batch`` on ``--files-pairs`` ragged pairs, and
  ``otdist pairwise A --against B`` on ``--cross`` × ``--cross`` clouds of 512 points.
- loss: forward + backward of ``otcli.sinkhorn_loss`` on 32 pairs of 256 × 256 points and
  on one 5,000-point pair, against GeomLoss ``SamplesLoss`` (tensorized) and POT's
  ``ot.solve_sample`` (torch backend), with each one's marginal error (bench_loss.py).
- cli: ``otdist a.parquet b.parquet --eps 0.01 --json`` on 4000-point clouds, end to end,
  against a fresh ``python -c`` that reads both files with pyarrow and runs ``ot.sinkhorn2``;
  plus ``otdist --help`` (target < 0.3 s) and a bare ``import torch`` for scale.
- real, contention: scikit-learn's digits and wine, and the same work beside one busy
  process (see bench_real.py).
- floor: the machine's floor for the pair sizes, medians of ≥ 5: one ``torch.exp`` pass over
  n² float32 values (into a preallocated buffer, and allocating), one n × n float32
  matrix–vector product (torch.mv and numpy, the faster counts). One Sinkhorn iteration needs
  at least 2 products (kernel form) or 2 exp passes (log form); otcli on CPU iterates with
  products on a stabilised kernel plus occasional exp passes to rebuild it, so its
  steady-state iteration ("otcli iter", timed on its geometry directly) is compared with the
  kernel-form floor, and so is its whole solve divided by its iterations ("solve/iter", from
  the pair workload: cost matrix, kernel builds and final statistics included).

Reading the tables: "ratio" is peer time / otcli time (above 1: otcli is faster), in batch
it is otcli pairs/s over the peer's, for the library and the CLI row. A fast row with a large
marginal error did not solve the same problem: compare rows at similar errors. GeomLoss is
optional (``pip install geomloss``); without it its rows are skipped with a note.

Run it on an idle machine: the header prints the 1-minute load average. Where other work
shares the cores, torch's worker threads wait on each other and small solves slow down ten
times or more; ``OMP_NUM_THREADS=1 python benchmarks/run.py ...`` (inherited by the child
processes too) gives steadier, if single-threaded, figures there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_batch and seed_sinkhorn live next to this file

NAN = float("nan")
# POT's kernel solver at ε = 1e-4 underflows and may never meet its threshold: cap it.
KERNEL_SMALLEPS_ITERS = 5000
OTCLI = "otcli"  # the pair rows the floor table reads start with this


def have_geomloss() -> bool:
    try:
        import geomloss  # noqa: F401
    except ImportError:
        return False
    return True


# --- helpers --------------------------------------------------------------------------------------


def clouds(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)), rng.random((m, 3))


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def marginal_l1(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum())


def result(seconds, iterations=None, marginal_error=NAN, cost=NAN, note="", **extra) -> dict:
    return dict(seconds=seconds, iterations=iterations, marginal_error=marginal_error,
                cost=cost, note=note, **extra)  # fmt: skip


def plan_result(seconds: float, iterations, plan: np.ndarray, M: np.ndarray, note="") -> dict:
    """Measure a dense plan (float64) against the benchmark's own cost matrix M."""
    a, b = uniform(M.shape[0]), uniform(M.shape[1])
    if not np.isfinite(plan).all():
        return result(seconds, iterations, note=f"failed: non-finite plan; {note}".strip("; "))
    return result(seconds, iterations, marginal_l1(plan, a, b), float((plan * M).sum()), note)


def quietly(fn: Callable[[], tuple]) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ot.batch takes log(0) of the padding's zero masses
        return fn()


def caught(warns: list) -> str:
    """The distinct warning messages a solver raised, shortened, for the note column."""
    msgs = dict.fromkeys(str(w.message).split("\n")[0][:60] for w in warns)
    return "; ".join(msgs)


# --- methods: each returns result(...) for one timed run ------------------------------------------


def otcli_pair(x, y, eps: float, tol: float | None = None) -> dict:
    import otcli

    t = time.perf_counter()
    r = otcli.solve(x, y, eps=eps, tol=tol, device="cpu")
    return result(time.perf_counter() - t, r.iterations, r.marginal_error, r.cost)


def pot_pair(M: np.ndarray, eps: float, method: str, thr: float, max_iter=100000) -> dict:
    import ot

    a, b = uniform(M.shape[0]), uniform(M.shape[1])
    with warnings.catch_warnings(record=True) as warns:
        warnings.simplefilter("always")
        t = time.perf_counter()
        P, log = ot.sinkhorn(a, b, M, eps, method=method, stopThr=thr, numItermax=max_iter,
                             log=True)  # fmt: skip
        seconds = time.perf_counter() - t
    iters = log.get("niter", log.get("n_iter"))
    return plan_result(seconds, iters, np.asarray(P, dtype=np.float64), M, caught(warns))


def geomloss_stages(xt: torch.Tensor, yt: torch.Tensor, blur: float, scaling: float):
    """GeomLoss's number of ε stages (one Sinkhorn sweep each), from its own schedule."""
    try:
        from geomloss._legacy.sinkhorn_divergence import scaling_parameters
    except ImportError:
        try:
            from geomloss.sinkhorn_divergence import scaling_parameters
        except ImportError:
            return None
    return len(scaling_parameters(xt, yt, 2, blur, None, None, scaling)[2])


def geomloss_pair(x, y, M: np.ndarray, eps: float, scaling: float) -> dict:
    from geomloss import SamplesLoss

    eps_g = eps / 2  # GeomLoss's cost for p=2 is |x−y|²/2
    loss = SamplesLoss("sinkhorn", p=2, blur=eps_g**0.5, scaling=scaling, debias=False,
                       potentials=True, backend="tensorized")  # fmt: skip
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    t = time.perf_counter()
    f, g = loss(xt, yt)
    seconds = time.perf_counter() - t
    a, b = uniform(len(x)), uniform(len(y))
    f64, g64 = f.double().reshape(-1).numpy(), g.double().reshape(-1).numpy()
    plan = a[:, None] * b[None, :] * np.exp((f64[:, None] + g64[None, :] - M / 2) / eps_g)
    return plan_result(seconds, geomloss_stages(xt, yt, eps_g**0.5, scaling), plan, M)


def seed_pair(x, y, M: np.ndarray, eps: float) -> dict:
    from seed_sinkhorn import seed_sinkhorn

    xt, yt = torch.from_numpy(x).float()[None], torch.from_numpy(y).float()[None]
    t = time.perf_counter()
    _, pi, _, iters = seed_sinkhorn(xt, yt, eps)
    seconds = time.perf_counter() - t
    return plan_result(seconds, iters, pi[0].double().numpy(), M)


# --- the interleaved runner and the table printer -------------------------------------------------


@dataclass
class Method:
    name: str
    run: Callable[[], dict] | None = None
    skip: str = ""  # a reason: the row is printed with it and nothing runs
    once: bool = False  # slow: one run, not one per repeat
    compare: bool = True  # False: a reference row, no ratio


def interleave(methods: list[Method], repeats: int) -> list[dict]:
    """Run every method once per repeat, in turn; one row per method, median seconds.

    Each row's ratio is its time over the first method's (otcli's, in every table here).
    """
    runs: dict[str, list[dict]] = {m.name: [] for m in methods}
    for k in range(repeats):
        for m in methods:
            done = runs[m.name]
            if m.skip or (m.once and k) or (done and done[-1].get("failed")):
                continue
            try:
                done.append(m.run())
            except Exception as exc:  # a peer failing is a result, not a crash
                done.append(result(NAN, note=f"failed: {type(exc).__name__}: {exc}"[:90],
                                   failed=True))  # fmt: skip
    rows = []
    for m in methods:
        done = runs[m.name]
        if m.skip:
            rows.append(dict(result(NAN, note=f"skipped: {m.skip}"), name=m.name, runs=[]))
            continue
        row = dict(done[-1], name=m.name, runs=[d["seconds"] for d in done])
        ok = [d["seconds"] for d in done if not d.get("failed")]
        row["seconds"] = statistics.median(ok) if ok else NAN
        if m.once:
            row["note"] = ("one run; " + row["note"]).strip("; ")
        rows.append(row)
    base = rows[0]["seconds"]
    for m, r in zip(methods, rows, strict=True):
        r["ratio"] = r["seconds"] / base if m.compare else NAN
    return rows


def fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str, int]]) -> None:
    """columns: (header, key, format spec, width); the name and note columns are added."""
    width = max(len(r["name"]) for r in rows) + 1
    print(f"\n{title}")
    print(f"{'method':<{width}}" + "".join(f"{h:>{w}}" for h, _, _, w in columns) + "  note")
    for r in rows:
        cells = "".join(f"{fmt(r.get(k), s):>{w}}" for _, k, s, w in columns)
        print(f"{r['name']:<{width}}{cells}  {r.get('note', '')}")


PAIR_COLUMNS = [("time s", "seconds", ".3f", 9), ("iters", "iterations", "d", 7),
                ("marg L1", "marginal_error", ".1e", 9), ("<P,C>", "cost", ".6f", 11),
                ("ratio", "ratio", ".2f", 8)]  # fmt: skip


# --- workloads ------------------------------------------------------------------------------------

POT_PAIR = [("sinkhorn", 1e-5), ("sinkhorn", 1e-7), ("sinkhorn_stabilized", 1e-5),
            ("sinkhorn_log", 1e-5)]  # fmt: skip


def workload_pair(args) -> dict:
    import ot

    eps = 0.01
    gl = "" if have_geomloss() else "geomloss not installed"
    out = {}
    for n in args.sizes:
        x, y = clouds(n, n)
        M = ot.dist(x, y)
        methods = [Method("otcli (f32, tol 1e-5)", partial(otcli_pair, x, y, eps))]
        for method, thr in POT_PAIR:
            skip = ""
            if method == "sinkhorn_log" and n > args.log_max_n:
                skip = f"minutes per run beyond n={args.log_max_n} (--log-max-n)"
            name = f"POT {method} (f64, thr {thr:g})"
            methods.append(Method(name, partial(pot_pair, M, eps, method, thr), skip))
        for s in (0.5, 0.9):
            name = f"GeomLoss tensorized (scaling {s})"
            methods.append(Method(name, partial(geomloss_pair, x, y, M, eps, s), gl))
        name = "seed's algorithm (f32, 100 iters, thresh 0.1)"
        methods.append(Method(name, partial(seed_pair, x, y, M, eps)))
        rows = interleave(methods, args.repeats)
        print_table(f"[pair] n = m = {n}, eps = {eps}, medians of {args.repeats}", rows,
                    PAIR_COLUMNS)  # fmt: skip
        out[str(n)] = rows
    return out


def workload_smalleps(args) -> dict:
    import ot

    n, eps = args.smalleps_n, 1e-4
    x, y = clouds(n, n)
    M = ot.dist(x, y)
    a, b = uniform(n), uniform(n)
    t = time.perf_counter()
    exact = float(ot.emd2(a, b, M, numItermax=10**7))
    emd_row = result(time.perf_counter() - t, cost=exact, note="exact; not a ratio base")
    gl = "" if have_geomloss() else "geomloss not installed"
    slow = "" if args.include_slow else "slow at this ε: pass --include-slow"
    methods = [
        Method("otcli (f32, tol 1e-5)", lambda: otcli_pair(x, y, eps)),
        Method("otcli (f32, tol 1e-3)", lambda: otcli_pair(x, y, eps, tol=1e-3)),
        Method(f"POT sinkhorn (f64, thr 1e-7, max {KERNEL_SMALLEPS_ITERS} it)",
               lambda: pot_pair(M, eps, "sinkhorn", 1e-7, KERNEL_SMALLEPS_ITERS)),
        Method(f"POT sinkhorn_log (f64, thr 1e-7, max {args.slow_iters} it)",
               lambda: pot_pair(M, eps, "sinkhorn_log", 1e-7, args.slow_iters), slow,
               once=True),
        Method("GeomLoss tensorized (scaling 0.9)", lambda: geomloss_pair(x, y, M, eps, 0.9), gl),
        Method("GeomLoss tensorized (scaling 0.5)", lambda: geomloss_pair(x, y, M, eps, 0.5), gl),
    ]  # fmt: skip
    rows = [dict(emd_row, name="POT emd2 (exact)", runs=[emd_row["seconds"]], ratio=NAN)]
    rows += interleave(methods, args.repeats)
    for r in rows:
        r["gap"] = abs(r["cost"] / exact - 1)
        r["within_1pct"] = "yes" if r["gap"] <= 0.01 else ("no" if math.isfinite(r["gap"]) else "-")
    title = f"[smalleps] n = m = {n}, eps = {eps:g}, emd2 = {exact:.6f}, medians of {args.repeats}"
    columns = [*PAIR_COLUMNS, ("gap", "gap", ".1e", 9), ("<=1%", "within_1pct", "s", 6)]
    print_table(title, rows, columns)
    return {"emd2": exact, "rows": rows}


def otcli_exact(x, y) -> dict:
    import otcli
    from otcli.exact import solve_exact

    cfg = otcli.make_config(device="cpu", dtype="float64")
    t = time.perf_counter()
    r = solve_exact(otcli.make_cloud(x), otcli.make_cloud(y), cfg)
    return result(time.perf_counter() - t, None, r.marginal_error, r.cost, note=r.method)


def pot_exact(M: np.ndarray) -> dict:
    import ot

    a, b = uniform(M.shape[0]), uniform(M.shape[1])
    t = time.perf_counter()
    plan = ot.emd(a, b, M, numItermax=10**7)
    return plan_result(time.perf_counter() - t, None, plan, M)


def workload_exact(args) -> dict:
    """--exact against POT's network simplex on the same clouds: two equal uniform clouds (an
    assignment problem) and two of different sizes (network simplex in both)."""
    import ot

    out = {}
    for n, m in ((args.exact_n, args.exact_n), (args.exact_n * 3 // 4, args.exact_n)):
        x, y = clouds(n, m)
        M = ot.dist(x, y)
        methods = [
            Method("otcli --exact (library, C included)", lambda x=x, y=y: otcli_exact(x, y)),
            Method("POT ot.emd (same C)", lambda M=M: pot_exact(M)),
        ]
        rows = interleave(methods, args.repeats)
        print_table(f"[exact] n = {n}, m = {m}, medians of {args.repeats}", rows, PAIR_COLUMNS)
        out[f"{n}x{m}"] = rows
    return out


def batch_row(seconds: float, costs, errs, count: int, iterations=None) -> dict:
    errs = [e for e in errs if math.isfinite(e)] or [NAN]
    return result(seconds, iterations, statistics.median(errs), note="", costs=list(costs),
                  pairs=count, marginal_error_max=max(errs))  # fmt: skip


def otcli_batch(data, eps: float, tol: float) -> dict:
    import otcli

    xs, ys = [x for x, _ in data], [y for _, y in data]
    t = time.perf_counter()
    rs = otcli.solve(xs, ys, eps=eps, tol=tol, device="cpu")
    seconds = time.perf_counter() - t
    iters = int(statistics.median(r.iterations for r in rs))
    return batch_row(seconds, [r.cost for r in rs], [r.marginal_error for r in rs], len(rs), iters)


def batch_floor(data, iterations: int, repeats: int) -> float:
    """Seconds for the products alone: two batched float32 matrix-vector products per
    iteration over every bucket's padded kernels (otcli's own buckets), ``iterations`` times;
    the faster of two ways to run them: bucket after bucket on torch's threads, and as many
    buckets side by side as torch has threads, each on one (as otcli's lanes run them).

    No batched Sinkhorn in this form beats it at that iteration count on this machine: it
    leaves out the kernels' construction, every vector operation and all convergence checks.
    """
    from concurrent.futures import ThreadPoolExecutor

    from otcli.buckets import plan_buckets
    from otcli.config import DEFAULT_MAX_BATCH, make_config

    shapes = [(len(x), len(y)) for x, y in data]
    jobs = []
    for bucket in plan_buckets(shapes, max_entries=make_config(device="cpu").bucket_entries(),
                               max_batch=DEFAULT_MAX_BATCH):  # fmt: skip
        B = len(bucket)
        n, m = max(shapes[k][0] for k in bucket), max(shapes[k][1] for k in bucket)
        K = torch.rand(B, n, m)
        v, u = torch.rand(B, 1, m), torch.rand(B, 1, n)
        out_n, out_m = torch.empty(B, 1, n), torch.empty(B, 1, m)

        # Vector-times-matrix, the fast form of torch's CPU bmm (matrix-times-vector ran 7x
        # slower here): (K v)ᵀ = vᵀ Kᵀ and uᵀ K, as otcli's kernel geometry computes them.
        def products(K=K, v=v, u=u, out_n=out_n, out_m=out_m) -> None:
            for _ in range(iterations):
                torch.bmm(v, K.transpose(1, 2), out=out_n)
                torch.bmm(u, K, out=out_m)

        jobs.append(products)

    def in_turn() -> None:
        for job in jobs:
            job()

    lanes = torch.get_num_threads()

    def side_by_side() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(lanes) as pool:
                list(pool.map(lambda job: job(), jobs))
        finally:
            torch.set_num_threads(before)

    return min(median_time(in_turn, repeats), median_time(side_by_side, repeats))


def workload_batch(args) -> dict:
    import bench_batch as bb

    eps, tol, thr = 0.01, 1e-4, 1e-5
    check = min(args.pairs, 100)
    folder = Path(tempfile.mkdtemp(prefix="run_batch_"))
    try:
        manifest, data = bb.make_data(folder, args.pairs)
        sub = data[: args.ot_batch_pairs]
        gl = "" if have_geomloss() else "geomloss not installed"

        def wrap(fn, count):  # bench_batch's (seconds, costs, errors) → a row
            return lambda: batch_row(*fn(), count)

        methods = [
            Method("otcli library (tol 1e-4)", lambda: otcli_batch(data, eps, tol)),
            Method("otdist batch (whole command)",
                   wrap(lambda: bb.run_otdist(manifest, eps, tol, []), args.pairs)),
            Method(f"POT sinkhorn2 loop (kernel, thr {thr:g})",
                   wrap(lambda: bb.run_pot_loop(data, eps, thr, check), args.pairs)),
            Method("GeomLoss tensorized loop (scaling 0.5)",
                   wrap(lambda: bb.run_geomloss_loop(data, eps, 0.5, check), args.pairs), gl),
            Method("GeomLoss tensorized loop (scaling 0.9)",
                   wrap(lambda: bb.run_geomloss_loop(data, eps, 0.9, check), args.pairs), gl),
            Method(f"POT ot.batch ({len(sub)} padded pairs)",
                   wrap(lambda: quietly(lambda: bb.run_ot_batch(sub, eps, thr)), len(sub)),
                   once=True),
        ]  # fmt: skip
        rows = interleave(methods, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rate = {r["name"]: r.get("pairs", 0) / r["seconds"] for r in rows}
    lib, cli = rate[methods[0].name], rate[methods[1].name]
    ref = rows[0].get("costs", [])
    for r in rows:
        r["pairs_per_s"] = rate[r["name"]]
        r["lib_ratio"], r["cli_ratio"] = lib / r["pairs_per_s"], cli / r["pairs_per_s"]
        rel = [abs(c / c0 - 1) for c, c0 in zip(r.pop("costs", [])[:check], ref[:check],
                                                strict=False)]  # fmt: skip
        r["cost_dev"] = statistics.median(rel) if rel else NAN
    print_table(f"[batch] {args.pairs} pairs, 100-500 points, eps = {eps}, medians of "
                f"{args.repeats}; errors on the first {check} pairs (all for otcli), "
                "ratios = otcli pairs/s / peer pairs/s", rows,
                [("pairs", "pairs", "d", 6), ("time s", "seconds", ".3f", 9),
                 ("pairs/s", "pairs_per_s", ".1f", 9), ("med it", "iterations", "d", 7),
                 ("lib x", "lib_ratio", ".2f", 7), ("CLI x", "cli_ratio", ".2f", 7),
                 ("L1 med", "marginal_error", ".1e", 9),
                 ("L1 max", "marginal_error_max", ".1e", 9),
                 ("|dcost|", "cost_dev", ".1e", 9)])  # fmt: skip
    iters = rows[0]["iterations"]
    floor = batch_floor(data, iters, args.repeats)
    print(f"[batch] floor: 2 batched float32 products per iteration x {iters} iterations "
          f"(otcli's median) over otcli's padded buckets, nothing else (the faster of in turn "
          f"and side by side): {floor:.3f} s = "
          f"{args.pairs / floor:.0f} pairs/s; otcli library at {lib / (args.pairs / floor):.2f} "
          "of it")  # fmt: skip
    return {"rows": rows, "floor_seconds": floor, "floor_pairs_per_s": args.pairs / floor}


POT_SCRIPT = """
import sys
import numpy as np, ot, pyarrow.parquet as pq
x, y = (np.column_stack([pq.read_table(f).column(c).to_numpy() for c in "xyz"])
        for f in sys.argv[1:3])
a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
print(float(ot.sinkhorn2(a, b, ot.dist(x, y), 0.01, stopThr=1e-7, numItermax=100000)))
"""


def timed_process(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return seconds, proc.stdout


def command_row(cmd: list[str], note: str = "") -> dict:
    return result(timed_process(cmd)[0], note=note)


def otdist_cli(files) -> dict:
    seconds, out = timed_process([sys.executable, "-m", "otcli", *map(str, files),
                                  "--eps", "0.01", "--json"])  # fmt: skip
    r = json.loads(out)
    return result(seconds, r["iterations"], r["marginal_error"], r["cost"])


def workload_cli(args) -> dict:
    import ot
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = args.cli_n
    x, y = clouds(n, n, seed=1)
    folder = Path(tempfile.mkdtemp(prefix="run_cli_"))
    try:
        files = [folder / "a.parquet", folder / "b.parquet"]
        for path, pts in zip(files, (x, y), strict=True):
            pq.write_table(pa.table({c: pts[:, k] for k, c in enumerate("xyz")}), path)
        pot_cmd = [sys.executable, "-c", POT_SCRIPT, *map(str, files)]
        help_cmd = [sys.executable, "-m", "otcli", "--help"]

        def pot_cli() -> dict:
            seconds, out = timed_process(pot_cmd)
            return result(seconds, cost=float(out), note="POT's sinkhorn2 value")

        methods = [
            Method("otdist a b --eps 0.01 (whole command)", lambda: otdist_cli(files)),
            Method("python -c: pyarrow + POT sinkhorn2 (thr 1e-7)", pot_cli),
            Method("otdist --help", partial(command_row, help_cmd, "target < 0.3 s"),
                   compare=False),
            Method("python -c 'import torch' (for scale)",
                   partial(command_row, [sys.executable, "-c", "import torch"]), compare=False),
        ]  # fmt: skip
        rows = interleave(methods, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # POT's plan, iterations and error: the same solve again in this process, not timed.
    a, b, M = uniform(n), uniform(n), ot.dist(x, y)
    P, log = ot.sinkhorn(a, b, M, 0.01, stopThr=1e-7, numItermax=100000, log=True)
    pot = rows[1]
    if not pot.get("failed"):
        pot.update(iterations=int(log["niter"]), marginal_error=marginal_l1(P, a, b))
        pot["note"] = f"{pot['note']}; ⟨P,C⟩ of its plan {float((P * M).sum()):.6f}"
    print_table(f"[cli] {n}-point Parquet clouds, eps = 0.01, end to end, medians of "
                f"{args.repeats}", rows, PAIR_COLUMNS)  # fmt: skip
    return {"rows": rows}


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def otcli_iteration(n: int, eps: float = 0.01, settle: int = 20, timed: int = 21) -> float:
    """Seconds per steady-state Sinkhorn iteration of otcli's CPU update form (two products
    with the stabilised kernel and their O(n) vector work), without set-up, rebuilds or the
    final statistics: the figure to hold against the kernel-form floor."""
    from otcli.api import make_geometry
    from otcli.config import make_config

    x, y = clouds(n, n)
    xt, yt = torch.from_numpy(x - 0.5)[None], torch.from_numpy(y - 0.5)[None]
    mask = torch.ones(1, n, dtype=torch.bool)
    e = torch.tensor([eps], dtype=torch.float64)
    geom = make_geometry(xt, yt, mask, mask, make_config(geometry="dense", device="cpu"), e)
    log_w = torch.full((1, n), -math.log(n), dtype=torch.float64)
    g = torch.zeros(1, n, dtype=torch.float64)

    def step(g: torch.Tensor) -> torch.Tensor:
        f = -e[:, None] * geom.lse_over_cols(log_w + g / e[:, None], e)
        return -e[:, None] * geom.lse_over_rows(log_w + f / e[:, None], e)

    for _ in range(settle):  # potentials settle near the kernel's
        g = step(g)
    times = []
    for _ in range(timed):  # the median step: a step that rebuilds the kernel is an outlier
        t = time.perf_counter()
        g = step(g)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def workload_floor(args, pair: dict | None) -> dict:
    reps = max(5, args.repeats)
    rows = []
    for n in args.sizes:
        src = torch.empty(n * n, dtype=torch.float32).uniform_(-10.0, 0.0)
        buf = torch.empty_like(src)
        exp_out = median_time(lambda src=src, buf=buf: torch.exp(src, out=buf), reps)
        exp_new = median_time(lambda src=src: torch.exp(src), reps)
        K, w = buf.view(n, n), torch.rand(n)
        Kn, wn = K.numpy(), w.numpy()
        mv_torch = median_time(lambda K=K, w=w: torch.mv(K, w), reps)
        mv_numpy = median_time(lambda Kn=Kn, wn=wn: Kn @ wn, reps)
        row = dict(name=f"n = {n}", exp_out=exp_out, exp_new=exp_new, mv_torch=mv_torch,
                   mv_numpy=mv_numpy, kernel_floor=2 * min(mv_torch, mv_numpy),
                   log_floor=2 * min(exp_out, exp_new), note="")  # fmt: skip
        row["otcli_iter"] = statistics.median(otcli_iteration(n) for _ in range(3))
        row["iter_vs_floor"] = row["otcli_iter"] / row["kernel_floor"]
        ours = next((r for r in (pair or {}).get(str(n), []) if r["name"].startswith(OTCLI)), None)
        if ours and ours.get("iterations"):
            row["otcli_per_iter"] = ours["seconds"] / ours["iterations"]
            row["otcli_vs_floor"] = row["otcli_per_iter"] / row["kernel_floor"]
        else:
            row["note"] = "whole-solve figures need the pair workload at this size"
        rows.append(row)
        del src, buf, K, Kn
    print_table(f"[floor] n x n float32, medians of {reps}; floors are per Sinkhorn iteration: "
                "kernel = 2 x matvec, log = 2 x exp pass", rows,
                [("exp out=", "exp_out", ".2e", 10), ("exp", "exp_new", ".2e", 10),
                 ("torch.mv", "mv_torch", ".2e", 10), ("numpy K@w", "mv_numpy", ".2e", 10),
                 ("kernel fl", "kernel_floor", ".2e", 10), ("log fl", "log_floor", ".2e", 10),
                 ("otcli iter", "otcli_iter", ".2e", 11),
                 ("/kernel fl", "iter_vs_floor", ".2f", 11),
                 ("solve/iter", "otcli_per_iter", ".2e", 11),
                 ("/kernel fl", "otcli_vs_floor", ".1f", 11)])  # fmt: skip
    return {"rows": rows}


# --- main -----------------------------------------------------------------------------------------


def workload_real(args) -> dict:
    import bench_real

    return bench_real.workload_real(args)


FILES_COLUMNS = [("pairs", "pairs", "d", 7), ("time s", "seconds", ".2f", 9),
                 ("pairs/s", "pairs_per_s", ".1f", 9), ("ratio", "ratio", ".2f", 7),
                 ("L1 med", "marginal_error", ".1e", 9),
                 ("L1 max", "marginal_error_max", ".1e", 9),
                 ("|dcost|", "cost_dev", ".1e", 9)]  # fmt: skip


def _files_rows(rows: list[dict], count: int) -> None:
    """pairs/s and the ratio to otdist's rate (first row) for whole-command rows."""
    for r in rows:
        r["pairs"] = count
        r["pairs_per_s"] = count / r["seconds"]
    for r in rows:
        r["ratio"] = rows[0]["pairs_per_s"] / r["pairs_per_s"]


def workload_files(args) -> dict:
    import bench_batch as bb
    import bench_files as bf

    folder = Path(tempfile.mkdtemp(prefix="run_files_"))
    try:
        manifest, data = bb.make_data(folder, args.files_pairs)
        ours: dict = {}
        theirs: dict = {}

        def otdist_row() -> dict:
            seconds, costs, errs = bf.otdist_batch(manifest)
            ours["costs"] = costs
            return batch_row(seconds, costs, errs, len(costs))

        def pot_row() -> dict:
            seconds, costs = bf.pot_manifest(manifest)
            theirs["costs"] = costs
            return result(seconds)

        methods = [Method("otdist batch (whole command)", otdist_row),
                   Method(f"python -c: np.load + POT sinkhorn2 loop (thr {bf.POT_THR:g})",
                          pot_row)]  # fmt: skip
        rows = interleave(methods, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _files_rows(rows, args.files_pairs)
    errs = bf.pot_errors(data[:100])
    rows[1].update(marginal_error=statistics.median(errs), marginal_error_max=max(errs),
                   cost_dev=bf.median_dev(ours["costs"], theirs["costs"]))  # fmt: skip
    title = (f"[files] {args.files_pairs} ragged pairs of .npy files (100-500 points), eps = "
             f"{bf.EPS}, end to end (start-up and reading included), medians of "
             f"{args.repeats}; POT's errors on the first 100 pairs")  # fmt: skip
    print_table(title, rows, FILES_COLUMNS)
    return {"rows": rows}


def workload_cross(args) -> dict:
    import bench_files as bf

    count = args.cross
    folder = Path(tempfile.mkdtemp(prefix="run_cross_"))
    try:
        gen, ref = bf.make_cross(folder, count)
        ours: dict = {}
        theirs: dict = {}

        def otdist_row() -> dict:
            seconds, values, errs = bf.otdist_cross(folder, gen, ref)
            ours["values"] = values
            return batch_row(seconds, [], errs, values.size)

        def pot_row() -> dict:
            seconds, values = bf.pot_cross(folder, gen, ref)
            theirs["values"] = values
            return result(seconds)

        methods = [Method("otdist pairwise --against (whole command)", otdist_row),
                   Method(f"python -c: np.load + POT sinkhorn2 loop (thr {bf.POT_THR:g})",
                          pot_row)]  # fmt: skip
        rows = interleave(methods, args.repeats)
        sample = [(np.load(gen[k]), np.load(ref[(7 * k) % count])) for k in range(min(count, 30))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _files_rows(rows, count * count)
    errs = bf.pot_errors(sample)
    rows[1].update(marginal_error=statistics.median(errs), marginal_error_max=max(errs),
                   cost_dev=bf.median_dev(ours["values"], theirs["values"]))  # fmt: skip
    print_table(f"[cross] {count} x {count} clouds of 512 points, eps = {bf.EPS}, end to end, "
                f"medians of {args.repeats}; POT's errors on {len(sample)} pairs", rows,
                FILES_COLUMNS)  # fmt: skip
    return {"rows": rows}


def _loss_rows(args, label: str, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """One loss table: forward + backward of each method on (x, y), interleaved."""
    import bench_loss as bl

    gl = "" if have_geomloss() else "geomloss not installed"

    def row(fn):
        def run() -> dict:
            seconds, err = fn()
            return result(seconds, marginal_error=err)

        return run

    methods = [
        Method("otcli sinkhorn_loss (divergence)", row(lambda: bl.otcli_step(x, y))),
        Method("otcli sinkhorn_loss (tol 1e-3)", row(lambda: bl.otcli_step(x, y, 1e-3))),
        Method("GeomLoss SamplesLoss tensorized",
               row(lambda: bl.geomloss_step(x, y, "tensorized")), gl),
        Method("GeomLoss tensorized (scaling 0.9)",
               row(lambda: bl.geomloss_step(x, y, "tensorized", 0.9)), gl),
        Method("POT solve_sample (torch, OT_eps)", row(lambda: bl.pot_step(x, y))),
    ]  # fmt: skip
    rows = interleave(methods, args.repeats)
    print_table(f"[loss] forward + backward, {label}, eps = {bl.EPS}, medians of "
                f"{args.repeats}", rows, PAIR_COLUMNS)  # fmt: skip
    return rows


def workload_loss(args) -> dict:
    import bench_loss as bl

    x, y = bl.data(32, 256)
    out = {"32 pairs of 256 x 256": _loss_rows(args, "32 pairs of 256 x 256", x, y)}
    x, y = bl.data(1, args.loss_n)
    label = f"one {args.loss_n} x {args.loss_n} pair"
    out[label] = _loss_rows(args, label, x[0], y[0])
    peaks = {m: bl.peak_rss(m, args.loss_n) for m in ("none", "otcli", "geomloss", "pot")
             if m != "geomloss" or have_geomloss()}  # fmt: skip
    print(f"[loss] peak resident set of a process that runs one forward + backward on the "
          f"{args.loss_n}-point pair: " + ", ".join(
              f"{m} {mb:.0f} MB" for m, mb in peaks.items() if m != "none")
          + f" (importing and loading only: {peaks['none']:.0f} MB)")  # fmt: skip
    return {"rows": out, "peak_mb": peaks}


def workload_contention(args) -> dict:
    import bench_real

    return bench_real.workload_contention(args)


WORKLOADS = ("pair", "smalleps", "exact", "batch", "files", "cross", "loss", "cli", "real",
             "contention", "floor")  # fmt: skip


def warm_up() -> None:
    """Pay the one-off costs (imports, thread pools, first kernels) before any timing."""
    import otcli

    x, y = clouds(50, 50)
    otcli.solve(x, y, eps=0.1, device="cpu")
    seed_pair(x, y, np.zeros((50, 50)), 0.1)
    if have_geomloss():
        geomloss_pair(x, y, np.zeros((50, 50)), 0.1, 0.5)


def versions() -> dict:
    import ot

    gl = "not installed"
    if have_geomloss():
        import geomloss

        gl = getattr(geomloss, "__version__", "installed")
    return dict(python=platform.python_version(), torch=torch.__version__,
                numpy=np.__version__, pot=ot.__version__, geomloss=gl,
                torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                machine=platform.machine(),
                load_avg_1min=round(os.getloadavg()[0], 2))  # fmt: skip


def jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma list of workloads")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", help="pair and floor sizes")
    ap.add_argument("--pairs", type=int, help="batch pairs (default 1000, quick 40)")
    ap.add_argument("--files-pairs", type=int, help="files workload pairs (4000, quick 40)")
    ap.add_argument("--cross", type=int, help="cross workload: N x N clouds (100, quick 8)")
    ap.add_argument("--ot-batch-pairs", type=int, help="pairs for ot.batch (32, quick 4)")
    ap.add_argument("--log-max-n", type=int, default=2000, help="largest n for sinkhorn_log")
    ap.add_argument("--include-slow", action="store_true", help="smalleps: run sinkhorn_log")
    ap.add_argument("--slow-iters", type=int, default=1000, help="sinkhorn_log's cap there")
    ap.add_argument("--json", type=Path, help="also write all results here")
    args = ap.parse_args()
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    if unknown := set(only) - set(WORKLOADS):
        ap.error(f"unknown workload(s) {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.sizes = args.sizes or ([500] if args.quick else [1000, 4000, 10000])
    args.pairs = args.pairs or (40 if args.quick else 1000)
    args.ot_batch_pairs = args.ot_batch_pairs or (4 if args.quick else 32)
    args.files_pairs = args.files_pairs or (40 if args.quick else 4000)
    args.cross = args.cross or (8 if args.quick else 100)
    args.loss_n = 500 if args.quick else 5000
    args.smalleps_n = 300 if args.quick else 2000
    args.exact_n = 300 if args.quick else 2000
    args.cli_n = 500 if args.quick else 4000

    meta = versions()
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    print(f"unit-cube clouds, d = 3, squared Euclidean cost, uniform weights; "
          f"workloads: {', '.join(only)}{' (quick sizes)' if args.quick else ''}")  # fmt: skip
    if not have_geomloss():
        print("note: geomloss is not installed; its rows are skipped (pip install geomloss)")
    warm_up()
    results: dict = {"meta": meta, "args": {k: v for k, v in vars(args).items() if k != "json"}}
    start = time.perf_counter()
    for name in WORKLOADS:  # floor last: it reads the pair results
        if name in only:
            if name == "floor":
                results[name] = workload_floor(args, results.get("pair"))
            else:
                results[name] = globals()[f"workload_{name}"](args)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(jsonable(results), indent=1, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

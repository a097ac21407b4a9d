"""Workloads with the data users have, and on a machine that is not idle (for run.py).

Run through the suite: ``python benchmarks/run.py --only real,contention`` (needs the
``bench`` extra: POT, GeomLoss, scikit-learn). Data nobody here wrote: scikit-learn's
bundled digits (10 classes, 64 unscaled columns, ~180 points each) and wine (3 classes, 13
unscaled columns).

- real: the 45 digit class pairs at ε = 10 (the issue's setting, ~0.5% of the mean cost)
  as one ``otcli.solve`` on the lists, against plain loops of POT's ``sinkhorn`` (kernel),
  ``sinkhorn_log`` and ``emd2`` (exact) and GeomLoss, all in this process, interleaved; then
  the 3 wine pairs at ε = 5% of each pair's mean cost (``eps_rel=0.05``). Accuracy is the
  marginal L1 error each method's plan reaches, measured here the same way for all.
- contention: the same work alone and beside one busy process (a Python loop spinning on
  one core), otcli against POT: a 4,000-point pair (ε = 0.01) and the digit pairs. The
  slowdown is the time beside the busy process over the time alone.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from functools import partial

import numpy as np

EPS_DIGITS = 10.0
POT_THR = 1e-7  # POT's stopThr (an L2 bound on one marginal) that reaches otcli's L1 error


def marginal_l1(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def digit_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    classes = [X[y == c].astype(np.float64) for c in range(10)]
    return [(classes[i], classes[j]) for i in range(10) for j in range(i + 1, 10)]


def wine_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    classes = [X[y == c] for c in range(3)]
    return [(classes[i], classes[j]) for i in range(3) for j in range(i + 1, 3)]


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def otcli_lists(pairs, eps=None, eps_rel=None, tol=1e-5, threads=None) -> dict:
    import otcli

    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    t = time.perf_counter()
    rs = otcli.solve(xs, ys, eps=eps, eps_rel=eps_rel, tol=tol, device="cpu")
    seconds = time.perf_counter() - t
    errs = [r.marginal_error for r in rs]
    return dict(seconds=seconds, iterations=int(statistics.median(r.iterations for r in rs)),
                marginal_error=statistics.median(errs), marginal_error_max=max(errs),
                costs=[r.cost for r in rs], eps=[r.eps for r in rs], note="")  # fmt: skip


def pot_loop(pairs, eps_values, method: str) -> dict:
    import ot

    costs, errs, iters = [], [], []
    t = time.perf_counter()
    for (x, y), eps in zip(pairs, eps_values, strict=True):
        a, b, M = _uniform(len(x)), _uniform(len(y)), ot.dist(x, y)
        if method == "emd":
            P = ot.emd(a, b, M, numItermax=1_000_000)
            it = 0
        else:
            P, log = ot.sinkhorn(a, b, M, eps, method=method, stopThr=POT_THR,
                                 numItermax=100000, log=True, warn=False)  # fmt: skip
            it = int(log.get("niter", 0))
        costs.append(float((P * M).sum()))
        errs.append(marginal_l1(P, a, b) if np.isfinite(P).all() else float("nan"))
        iters.append(it)
    seconds = time.perf_counter() - t
    finite = [e for e in errs if np.isfinite(e)] or [float("nan")]
    note = "" if len(finite) == len(errs) else "non-finite plans"
    return dict(seconds=seconds, iterations=int(statistics.median(iters)),
                marginal_error=statistics.median(finite), marginal_error_max=max(finite),
                costs=costs, note=note)  # fmt: skip


def geomloss_loop(pairs, eps_values, scaling: float) -> dict:
    import torch
    from geomloss import SamplesLoss

    costs, errs = [], []
    t = time.perf_counter()
    plans = []
    for (x, y), eps in zip(pairs, eps_values, strict=True):
        loss = SamplesLoss("sinkhorn", p=2, blur=(eps / 2) ** 0.5, scaling=scaling,
                           debias=False, potentials=True, backend="tensorized")  # fmt: skip
        f, g = loss(torch.from_numpy(x).float(), torch.from_numpy(y).float())
        plans.append((f, g, eps))
    seconds = time.perf_counter() - t
    import ot

    for (x, y), (f, g, eps) in zip(pairs, plans, strict=True):
        a, b, M = _uniform(len(x)), _uniform(len(y)), ot.dist(x, y)
        f64, g64 = f.double().reshape(-1).numpy(), g.double().reshape(-1).numpy()
        P = a[:, None] * b[None, :] * np.exp((f64[:, None] + g64[None, :] - M / 2) / (eps / 2))
        costs.append(float((P * M).sum()))
        errs.append(marginal_l1(P, a, b))
    return dict(seconds=seconds, iterations=None, marginal_error=statistics.median(errs),
                marginal_error_max=max(errs), costs=costs, note="no stopping rule")  # fmt: skip


REAL_COLUMNS = [("time s", "seconds", ".3f", 9), ("med it", "iterations", "d", 7),
                ("L1 med", "marginal_error", ".1e", 9), ("L1 max", "marginal_error_max", ".1e", 9),
                ("|dcost|", "cost_dev", ".1e", 9), ("ratio", "ratio", ".2f", 8)]  # fmt: skip


def _cost_dev(rows) -> None:
    ref = rows[0].get("costs", [])
    for r in rows:
        rel = [abs(c / c0 - 1) for c, c0 in zip(r.pop("costs", []), ref, strict=False)]
        r["cost_dev"] = statistics.median(rel) if rel else float("nan")


def workload_real(args) -> dict:
    import run as R

    gl = "" if R.have_geomloss() else "geomloss not installed"
    out = {}
    pairs = digit_pairs()
    eps = [EPS_DIGITS] * len(pairs)
    methods = [
        R.Method("otcli.solve on the 45 pairs (tol 1e-5)",
                 partial(otcli_lists, pairs, eps=EPS_DIGITS)),
        R.Method(f"POT sinkhorn loop (kernel, thr {POT_THR:g})",
                 partial(pot_loop, pairs, eps, "sinkhorn")),
        R.Method(f"POT sinkhorn_log loop (thr {POT_THR:g})",
                 partial(pot_loop, pairs, eps, "sinkhorn_log"), once=True),
        R.Method("POT emd2 loop (exact; ⟨P,C⟩ is not the entropic cost)",
                 partial(pot_loop, pairs, eps, "emd"), compare=True),
        R.Method("GeomLoss tensorized loop (scaling 0.9)",
                 partial(geomloss_loop, pairs, eps, 0.9), gl),
    ]  # fmt: skip
    rows = R.interleave(methods, args.repeats)
    _cost_dev(rows)
    R.print_table(f"[real] scikit-learn digits: 45 class pairs (~180 points, 64-D), eps = "
                  f"{EPS_DIGITS:g}, medians of {args.repeats}; ratio = peer time / otcli time",
                  rows, REAL_COLUMNS)  # fmt: skip
    out["digits"] = rows
    pairs = wine_pairs()
    probe = otcli_lists(pairs, eps_rel=0.05)
    eps = probe["eps"]
    methods = [
        R.Method("otcli.solve, eps_rel 0.05 (tol 1e-5)",
                 partial(otcli_lists, pairs, eps_rel=0.05)),
        R.Method(f"POT sinkhorn loop (kernel, thr {POT_THR:g})",
                 partial(pot_loop, pairs, eps, "sinkhorn")),
        R.Method(f"POT sinkhorn_log loop (thr {POT_THR:g})",
                 partial(pot_loop, pairs, eps, "sinkhorn_log")),
        R.Method("POT emd2 loop (exact)", partial(pot_loop, pairs, eps, "emd")),
    ]  # fmt: skip
    rows = R.interleave(methods, args.repeats)
    _cost_dev(rows)
    R.print_table(f"[real] scikit-learn wine: 3 class pairs (48-71 points, 13-D), eps = 5% of "
                  f"each pair's mean cost ({', '.join(f'{e:.3g}' for e in eps)}), medians of "
                  f"{args.repeats}", rows, REAL_COLUMNS)  # fmt: skip
    out["wine"] = rows
    return out


BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def _alone_and_busy(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn`` alone, then beside one spinning process."""
    fn()  # warm
    alone = statistics.median(_timed(fn) for _ in range(repeats))
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.5)
        beside = statistics.median(_timed(fn) for _ in range(repeats))
    finally:
        busy.kill()
        busy.wait()
    return alone, beside


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def workload_contention(args) -> dict:
    import ot

    import otcli

    rng = np.random.default_rng(0)
    n = 4000
    x, y = rng.random((n, 3)), rng.random((n, 3))
    a = _uniform(n)
    M = ot.dist(x, y)
    digits = digit_pairs()
    xs, ys = x[:500], y[:500]
    cases = {
        "otcli pair n=500, eps 0.01": lambda: otcli.solve(xs, ys, eps=0.01, device="cpu"),
        f"otcli pair n={n}, eps 0.01": lambda: otcli.solve(x, y, eps=0.01, device="cpu"),
        f"POT sinkhorn pair n={n} (thr {POT_THR:g})": lambda: ot.sinkhorn(
            a, a, M, 0.01, stopThr=POT_THR, numItermax=100000, warn=False
        ),
        "otcli 45 digit pairs, eps 10": lambda: otcli_lists(digits, eps=EPS_DIGITS),
        "POT sinkhorn loop, 45 digit pairs": lambda: pot_loop(
            digits, [EPS_DIGITS] * len(digits), "sinkhorn"
        ),
    }
    out = {}
    print(f"\n[contention] alone vs beside one busy process (a Python loop on one of "
          f"{__import__('os').cpu_count()} cores), medians of {args.repeats}")  # fmt: skip
    print(f"{'method':<44}{'alone s':>9}{'busy s':>9}{'slowdown':>10}")
    for name, fn in cases.items():
        alone, beside = _alone_and_busy(fn, args.repeats)
        out[name] = dict(alone=alone, busy=beside, slowdown=beside / alone)
        print(f"{name:<44}{alone:>9.3f}{beside:>9.3f}{beside / alone:>10.2f}")
    return out

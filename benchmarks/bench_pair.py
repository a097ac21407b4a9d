"""Single-pair dense solve: otcli against POT on the same data, same machine, same run.

Run on demand (not part of the tests):  python benchmarks/bench_pair.py [--sizes 1000 4000]
Prints median wall time over --repeats runs, iterations, the marginal L1 error each method
reached (measured here, the same way for all), ⟨P, C⟩ and the ratio peer / otcli.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def marginal_l1(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def main() -> None:
    import ot

    import otcli

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; POT {ot.__version__}")
    print(
        f"unit cube, d=3, sqeuclidean, eps={args.eps}, uniform weights; medians of {args.repeats}"
    )
    header = (
        f"{'n=m':>6} {'method':<30} {'time s':>8} {'iters':>6} {'marg err':>9} {'<P,C>':>10} "
        f"{'ratio':>6}"
    )
    print(header)
    for n in args.sizes:
        rng = np.random.default_rng(0)
        x, y = rng.random((n, 3)), rng.random((n, 3))
        a = b = np.full(n, 1.0 / n)
        M = ot.dist(x, y)
        runs: dict[str, list[tuple[float, int, float, float]]] = {}
        for _ in range(args.repeats):  # interleaved, so drift hits every method alike
            t = time.perf_counter()
            r = otcli.solve(x, y, eps=args.eps, device="cpu")
            runs.setdefault("otcli float32 (tol 1e-5)", []).append(
                (time.perf_counter() - t, r.iterations, r.marginal_error, r.cost)
            )
            # POT's stopThr bounds ‖Pᵀ1 − b‖₂; 1e-5 leaves an L1 error near 1e-4 here, so
            # the kernel solver also runs to 1e-7, which reaches otcli's L1 error.
            for method, thr in (("sinkhorn", 1e-5), ("sinkhorn", 1e-7), ("sinkhorn_log", 1e-5)):
                if method == "sinkhorn_log" and n > 2000:
                    continue  # minutes per run at this size
                t = time.perf_counter()
                P, log = ot.sinkhorn(a, b, M, args.eps, method=method, stopThr=thr,
                                     numItermax=100000, log=True)  # fmt: skip
                dt = time.perf_counter() - t
                runs.setdefault(f"POT {method} (f64, thr {thr:g})", []).append(
                    (dt, int(log.get("niter", 0)), marginal_l1(P, a, b), float((P * M).sum()))
                )
        base = statistics.median(t for t, *_ in runs["otcli float32 (tol 1e-5)"])
        for name, rows in runs.items():
            med = statistics.median(t for t, *_ in rows)
            _, it, err, cost = rows[-1]
            print(
                f"{n:>6} {name:<30} {med:>8.3f} {it:>6} {err:>9.1e} {cost:>10.6f} "
                f"{med / base:>6.2f}"
            )


if __name__ == "__main__":
    main()

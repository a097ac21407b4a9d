"""Large pairs: otcli's online geometry (O(n + m) memory) against the machine's exp floor.

Run on demand (not part of the tests):

    python benchmarks/bench_large.py --sizes 10000 50000 --eps 0.001

Each solve runs in a child process so its peak RSS can be read (``ru_maxrss``). Printed per
size: wall time, iterations, steady-state seconds per iteration (otcli: the median time between
its per-iteration progress calls), the floor (two bare ``torch.exp`` passes
over n·m float32 elements, measured in the same run on a slice and scaled), their ratio,
peak RSS and the marginal error reached. ``--peers`` adds POT's ``sinkhorn_log`` on the dense
matrix where it fits the memory (it does not beyond ~20k points on 24 GB) and GeomLoss's
tensorized solver if geomloss is installed (benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time


def worker(method: str, n: int, eps: float, max_iter: int) -> dict[str, float]:
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.random((n, 3)), rng.random((n, 3))
    start = time.perf_counter()
    if method == "otcli":
        import statistics

        import otcli

        stamps: list[float] = []  # one per convergence check, i.e. per iteration on CPU

        def progress(it: int, e: float, err: float) -> None:
            stamps.append(time.perf_counter())
            if it % 10 == 0:  # a long run shows where it is (stderr: not the JSON result)
                print(f"  n={n} iteration {it}: eps {e:.3g}, marginal error {err:.2e}, "
                      f"{stamps[-1] - start:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

        r = otcli.solve(x, y, eps=eps, geometry="online", max_iter=max_iter, device="cpu",
                        progress=progress)  # fmt: skip
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        return dict(seconds=time.perf_counter() - start, iterations=r.iterations,
                    marginal_error=r.marginal_error, cost=r.cost,
                    per_iter=statistics.median(steps) if steps else float("nan"))  # fmt: skip
    if method == "pot_log":
        import ot

        a = np.full(n, 1.0 / n)
        M = ot.dist(x, y)
        P, log = ot.sinkhorn(a, a, M, eps, method="sinkhorn_log", numItermax=max_iter,
                             stopThr=1e-5, log=True)  # fmt: skip
        err = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum())
        return dict(seconds=time.perf_counter() - start, iterations=int(log["niter"]),
                    marginal_error=err, cost=float((P * M).sum()))  # fmt: skip
    if method == "geomloss":
        import torch
        from geomloss import SamplesLoss

        loss = SamplesLoss("sinkhorn", p=2, blur=(eps / 2) ** 0.5, scaling=0.5, debias=False,
                           backend="tensorized")  # fmt: skip
        xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        # Its cost is |x − y|²/2, so its ε is half ours (blur² = ε/2) and its value half ours.
        value = float(loss(xt, yt)) * 2
        return dict(seconds=time.perf_counter() - start, iterations=float("nan"),
                    marginal_error=float("nan"), cost=value)  # fmt: skip
    raise SystemExit(f"unknown method {method}")


def exp_floor(n: int) -> float:
    """Seconds for two bare torch.exp passes over n·n float32 elements (one iteration).

    Measured into a preallocated buffer: allocating the result each time adds page faults
    that made an earlier version of this floor four times too slow.
    """
    import torch

    chunk = torch.rand(4096, 4096) * -10
    out = torch.empty_like(chunk)
    torch.exp(chunk, out=out)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        torch.exp(chunk, out=out)
        times.append(time.perf_counter() - t)
    per_elem = sorted(times)[2] / chunk.numel()
    return 2 * per_elem * n * n


def run_child(method: str, n: int, eps: float, max_iter: int) -> dict[str, float]:
    """One solve in a fresh process, so peak RSS is that solve's alone."""
    cmd = [sys.executable, __file__, "--worker", method, str(n), str(eps), str(max_iter)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else dict(error=proc.returncode)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, n, eps, max_iter = (
            sys.argv[2],
            int(sys.argv[3]),
            float(sys.argv[4]),
            int(sys.argv[5]),
        )
        import resource

        result = worker(method, n, eps, max_iter)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--peers", action="store_true")
    args = ap.parse_args()
    print(f"unit cube, d=3, sqeuclidean, eps={args.eps}; one child process per solve")
    print(f"{'n=m':>7} {'method':<10} {'time s':>9} {'iters':>6} {'s/iter':>8} {'floor s/it':>10} "
          f"{'ratio':>6} {'RSS MB':>8} {'marg err':>9} {'<P,C>':>10}")  # fmt: skip
    for n in args.sizes:
        floor = exp_floor(n)
        methods = ["otcli"] + (["pot_log", "geomloss"] if args.peers else [])
        for method in methods:
            if method == "pot_log" and n > 20000:
                continue  # the dense float64 matrix alone would not fit in memory
            r = run_child(method, n, args.eps, args.max_iter)
            if "error" in r:
                print(f"{n:>7} {method:<10} failed (exit {r['error']})")
                continue
            # Steady-state seconds per iteration (median gap between the solver's per-iteration
            # progress calls), without set-up and final statistics; peers: time / iterations.
            per_it = r.get("per_iter", float("nan"))
            if per_it != per_it and r["iterations"] == r["iterations"]:
                per_it = r["seconds"] / r["iterations"]
            print(f"{n:>7} {method:<10} {r['seconds']:>9.1f} {r['iterations']:>6.0f} "
                  f"{per_it:>8.3f} "
                  f"{floor:>10.3f} {per_it / floor:>6.1f} {r['peak_rss_mb']:>8.0f} "
                  f"{r['marginal_error']:>9.1e} {r['cost']:>10.6f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

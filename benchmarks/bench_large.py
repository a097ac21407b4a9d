"""Large pairs: otcli's online and multiscale geometries (O(n + m) memory) and the exp floor.

Run on demand (not part of the tests):

    python benchmarks/bench_large.py --sizes 10000 50000 --eps 0.001
    python benchmarks/bench_large.py --data colours --eps 0.001 --methods multiscale

Each solve runs in a child process so its peak RSS can be read (``ru_maxrss``). Printed per
size and method (otcli's ``online`` and ``multiscale`` geometries; ``pot_log`` is POT's
``sinkhorn_log`` on the dense matrix where it fits the memory, ``geomloss`` GeomLoss's
tensorized solver, a benchmark-only dependency): wall time and how it splits (coarse level,
fine level, the final plan measurement), iterations (otcli: the fine level's), steady-state
seconds per iteration (otcli: the median time between its per-iteration progress calls), the
floor (two bare ``torch.exp`` passes over n·m float32 elements, measured on a slice and
scaled), their ratio, peak RSS and the marginal error reached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time


def clouds(data: str, n: int):
    """The pair: ``cube`` (two uniform n-point clouds in the unit cube, d = 3) or ``colours``
    (every pixel of scikit-image's bundled astronaut and coffee photographs as RGB points in
    [0, 1]³: 262,144 and 240,000 points; ``n`` ignored)."""
    import numpy as np

    if data == "colours":
        from skimage import data as images

        def pixels(img: np.ndarray) -> np.ndarray:
            return img.reshape(-1, 3).astype(np.float64) / 255.0

        return pixels(images.astronaut()), pixels(images.coffee())
    rng = np.random.default_rng(0)
    return rng.random((n, 3)), rng.random((n, 3))


def worker(method: str, data: str, n: int, eps: float, max_iter: int) -> dict[str, float]:
    import numpy as np

    x, y = clouds(data, n)
    points = float(np.sqrt(len(x) * len(y)))  # the floor's n for an n × m pair
    start = time.perf_counter()
    if method in ("online", "multiscale"):
        import statistics

        import otcli

        class Progress:
            """Per-iteration stamps (one check per iteration on CPU) and when each stage began."""

            def __init__(self) -> None:
                self.stamps: list[float] = []
                self.stages: dict[str, float] = {}

            def stage(self, description: str) -> None:
                self.stages.setdefault(description.split(",")[0], time.perf_counter() - start)

            def __call__(self, it: int, e: float, err: float) -> None:
                self.stamps.append(time.perf_counter())
                if it % 10 == 0:  # a long run shows where it is (stderr: not the JSON result)
                    print(f"  n={len(x)} {method} iteration {it}: eps {e:.3g}, marginal error "
                          f"{err:.2e}, {self.stamps[-1] - start:.0f} s", file=sys.stderr,
                          flush=True)  # fmt: skip

        progress = Progress()
        r = otcli.solve(x, y, eps=eps, geometry=method, max_iter=max_iter, device="cpu",
                        progress=progress)  # fmt: skip
        steps = [b - a for a, b in itertools.pairwise(progress.stamps)]
        st = progress.stages
        fine_from = st.get("solving: fine", st.get("solving", 0.0))
        return dict(seconds=time.perf_counter() - start, iterations=r.iterations,
                    marginal_error=r.marginal_error, cost=r.cost,
                    per_iter=statistics.median(steps) if steps else float("nan"),
                    coarse_s=fine_from - st.get("solving: coarse", fine_from),
                    fine_s=st.get("measuring the plan", 0.0) - fine_from,
                    measure_s=time.perf_counter() - start - st.get("measuring the plan", 0.0),
                    points=points)  # fmt: skip
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


def run_child(method: str, data: str, n: int, eps: float, max_iter: int) -> dict[str, float]:
    """One solve in a fresh process, so peak RSS is that solve's alone."""
    cmd = [sys.executable, __file__, "--worker", method, data, str(n), str(eps), str(max_iter)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else dict(error=proc.returncode)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, data, n, eps, max_iter = (
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            float(sys.argv[5]),
            int(sys.argv[6]),
        )
        import resource

        result = worker(method, data, n, eps, max_iter)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--max-iter", type=int, default=10000)
    ap.add_argument("--data", choices=["cube", "colours"], default="cube")
    ap.add_argument("--methods", nargs="+", default=["online", "multiscale"],
                    help="online, multiscale (otcli's --geometry), pot_log, geomloss")  # fmt: skip
    args = ap.parse_args()
    print(f"{args.data}, d=3, sqeuclidean, eps={args.eps}; one child process per solve")
    print(f"{'n=m':>7} {'method':<10} {'time s':>9} {'coarse':>7} {'fine':>7} {'measure':>7} "
          f"{'iters':>6} {'s/iter':>8} {'floor s/it':>10} {'ratio':>6} {'RSS MB':>8} "
          f"{'marg err':>9} {'<P,C>':>10}")  # fmt: skip
    sizes = [0] if args.data == "colours" else args.sizes
    for n in sizes:
        for method in args.methods:
            if method == "pot_log" and (n > 20000 or args.data == "colours"):
                continue  # the dense float64 matrix alone would not fit in memory
            r = run_child(method, args.data, n, args.eps, args.max_iter)
            if "error" in r:
                print(f"{n:>7} {method:<10} failed (exit {r['error']})")
                continue
            floor = exp_floor(int(r.get("points", n)))
            # Steady-state seconds per iteration (median gap between the solver's per-iteration
            # progress calls), without set-up and final statistics; peers: time / iterations.
            per_it = r.get("per_iter", float("nan"))
            if per_it != per_it and r["iterations"] == r["iterations"]:
                per_it = r["seconds"] / r["iterations"]
            split = [r.get(k, float("nan")) for k in ("coarse_s", "fine_s", "measure_s")]
            print(f"{n:>7} {method:<10} {r['seconds']:>9.1f} {split[0]:>7.1f} {split[1]:>7.1f} "
                  f"{split[2]:>7.1f} {r['iterations']:>6.0f} {per_it:>8.3f} "
                  f"{floor:>10.3f} {per_it / floor:>6.1f} {r['peak_rss_mb']:>8.0f} "
                  f"{r['marginal_error']:>9.1e} {r['cost']:>10.6f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

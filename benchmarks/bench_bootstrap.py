"""Bootstrap-overlap batches: how many pairs fail to converge (the convergence issue's check).

Each pair is two bootstrap resamples (rows drawn with replacement) of one class of a
scikit-learn dataset, standardized (``std``) or not (``raw``): shared and repeated rows,
the near-ties on which plain Sinkhorn contracts at ~0.9998 per iteration. One batched
``otcli.solve`` per ε; prints the unconverged pairs (index, marginal error, iterations).

    python benchmarks/bench_bootstrap.py digits 240 std 0 0.1,0.5,1
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

import otcli


def main() -> None:
    warnings.filterwarnings("ignore")
    name, reps = sys.argv[1], int(sys.argv[2])
    scale = len(sys.argv) > 3 and sys.argv[3] == "std"
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    eps_list = [float(e) for e in sys.argv[5].split(",")] if len(sys.argv) > 5 else [0.1, 0.5, 1]
    data = getattr(datasets, "load_" + name)()
    x = StandardScaler().fit_transform(data.data) if scale else data.data.astype(float)
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(reps):
        cls = x[data.target == rng.choice(np.unique(data.target))]
        n = len(cls)
        pairs.append((cls[rng.choice(n, n)], cls[rng.choice(n, n)]))
    for eps in eps_list:
        start = time.perf_counter()
        res = otcli.solve([p[0] for p in pairs], [p[1] for p in pairs], eps=eps)
        seconds = time.perf_counter() - start
        bad = [(k, f"{r.marginal_error:.1e}", r.iterations) for k, r in enumerate(res)
               if not r.converged]  # fmt: skip
        print(f"{name} eps={eps:g}: {len(bad)}/{len(pairs)} unconverged, {seconds:.1f} s", bad[:8])


if __name__ == "__main__":
    main()

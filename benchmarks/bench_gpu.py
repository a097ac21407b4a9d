"""CUDA: otcli against POT (torch backend) and GeomLoss on the same GPU, same data, same run.

Run on demand on a machine with CUDA (not part of the tests):

    python benchmarks/bench_gpu.py [--sizes 1000 4000 10000 20000] [--pairs 1000] [--repeats 3]

Data: unit-cube clouds in 3-D, squared Euclidean cost, uniform weights, ε = 0.01. Each method
starts from points already on the GPU (POT also builds its cost matrix there, timed). Every
timed region ends with ``torch.cuda.synchronize()``. Accuracy is measured outside the timings
in float64 on the host: the marginal L1 error of the returned plan and ⟨P, C⟩. "ratio" is the
peer's time over otcli's (above 1: otcli is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def marginal_l1(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def _uniform_l1(P: np.ndarray) -> float:
    return marginal_l1(P, np.full(P.shape[0], 1 / P.shape[0]), np.full(P.shape[1], 1 / P.shape[1]))


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


def pair(n: int, eps: float, repeats: int, dtype: str) -> None:
    import ot

    import otcli

    rng = np.random.default_rng(0)
    x, y = rng.random((n, 3)), rng.random((n, 3))
    a = np.full(n, 1.0 / n)
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    xt = torch.tensor(x, device="cuda")
    yt = torch.tensor(y, device="cuda")
    at = torch.tensor(a, device="cuda")
    rows: dict[str, list] = {}
    for _ in range(repeats):
        dt, r = timed(lambda: otcli.solve(x, y, eps=eps, device="cuda", dtype=dtype))
        rows.setdefault(f"otcli {dtype}", []).append((dt, r.iterations, r.marginal_error, r.cost))
        for method, thr in (("sinkhorn", 1e-7), ("sinkhorn_log", 1e-7)):
            if method == "sinkhorn_log" and n > 10000:
                continue

            def run(method=method, thr=thr):
                Mt = ot.dist(xt, yt)
                return ot.sinkhorn(at, at, Mt, eps, method=method, stopThr=thr,
                                   numItermax=100000, log=True)  # fmt: skip

            dt, (P, log) = timed(run)
            P = P.double().cpu().numpy()
            rows.setdefault(f"POT {method} f64 cuda thr {thr:g}", []).append(
                (dt, int(log.get("niter", 0)), marginal_l1(P, a, a), float((P * M).sum()))
            )
        try:
            from geomloss import SamplesLoss
        except ImportError:
            continue
        for scaling in (0.9, 0.5):
            loss = SamplesLoss("sinkhorn", p=2, blur=(eps / 2) ** 0.5, scaling=scaling,
                               debias=False, potentials=True, backend="tensorized")  # fmt: skip
            x32, y32 = xt.float(), yt.float()
            dt, (F, G) = timed(lambda loss=loss, x32=x32, y32=y32: loss(x32, y32))
            f = F.double().reshape(-1).cpu().numpy()
            g = G.double().reshape(-1).cpu().numpy()
            # GeomLoss's cost is |x−y|²/2 with ε = blur²: P = a b exp((f + g − C/2)/(ε/2)).
            logP = (f[:, None] + g[None, :] - M / 2) / (eps / 2)
            P = a[:, None] * a[None, :] * np.exp(logP)
            rows.setdefault(f"GeomLoss tensorized {scaling}", []).append(
                (dt, 0, marginal_l1(P, a, a), float((P * M).sum()))
            )
    base = statistics.median(t for t, *_ in rows[f"otcli {dtype}"])
    for name, rs in rows.items():
        med = statistics.median(t for t, *_ in rs)
        _, it, err, cost = rs[-1]
        print(f"{n:>6} {name:<34} {med:>8.4f} {it:>6} {err:>9.1e} {cost:>10.6f} {med / base:>6.2f}")


def batch(pairs: int, eps: float, repeats: int) -> None:
    import ot

    import otcli

    rng = np.random.default_rng(1)
    sizes = rng.integers(100, 501, size=(pairs, 2))
    xs = [rng.random((int(n), 3)) for n, _ in sizes]
    ys = [rng.random((int(m), 3)) for _, m in sizes]
    xts = [torch.tensor(x, device="cuda") for x in xs]
    yts = [torch.tensor(y, device="cuda") for y in ys]
    times: dict[str, list[float]] = {}
    errs: dict[str, float] = {}
    otcli.solve(xs[:4], ys[:4], eps=eps, device="cuda")  # warm-up (CUDA context, kernels)
    for _ in range(repeats):
        dt, rs = timed(lambda: otcli.solve(xs, ys, eps=eps, device="cuda", tol=1e-4))
        times.setdefault("otcli.solve (lists, cuda, tol 1e-4)", []).append(dt)
        errs["otcli.solve (lists, cuda, tol 1e-4)"] = float(
            np.median([r.marginal_error for r in rs])
        )

        def pot_loop():
            out = []
            for xt, yt in zip(xts, yts, strict=True):
                a = torch.full((xt.shape[0],), 1.0 / xt.shape[0], device="cuda", dtype=xt.dtype)
                b = torch.full((yt.shape[0],), 1.0 / yt.shape[0], device="cuda", dtype=yt.dtype)
                out.append(ot.sinkhorn(a, b, ot.dist(xt, yt), eps, stopThr=1e-5))
            return out

        dt, plans = timed(pot_loop)
        times.setdefault("POT sinkhorn loop (cuda, f64, thr 1e-5)", []).append(dt)
        errs["POT sinkhorn loop (cuda, f64, thr 1e-5)"] = float(
            np.median([_uniform_l1(P.cpu().numpy()) for P in plans[:100]])
        )
    base = statistics.median(times["otcli.solve (lists, cuda, tol 1e-4)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"batch {pairs} {name:<42} {med:>8.3f} s {pairs / med:>8.1f} pairs/s "
            f"median L1 {errs[name]:.1e} ratio {med / base:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000, 20000])
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    import ot

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}; POT {ot.__version__}")
    head = f"{'n=m':>6} {'method':<34} {'time s':>8} {'iters':>6} {'marg err':>9} {'<P,C>':>10}"
    print(head, "ratio")
    for n in args.sizes:
        pair(n, args.eps, args.repeats, args.dtype)
    if args.pairs:
        batch(args.pairs, args.eps, args.repeats)


if __name__ == "__main__":
    main()

"""Forward + backward of a Sinkhorn loss: otcli against GeomLoss and POT's torch backend.

Used by ``benchmarks/run.py --only loss``: a mini-batch of 32 pairs of 256 × 256 points in
3-D, and one 5,000 × 5,000 pair; ε = 0.01 (otcli's cost |x − y|²; GeomLoss's is |x − y|²/2, so
its blur is √(ε/2)), the debiased divergence for otcli and GeomLoss, POT's ``ot.solve_sample``
(its OT_ε value, torch backend, Sinkhorn, ``grad="envelope"``: its autodiff through the
iterations would hold every iterate of the 5,000² plan). Each method's time includes its solve
and the backward pass to the points; its accuracy is the marginal L1 error of the plan its
potentials define on the first pair (computed outside the timing). For the large pair, each
method's peak memory is measured apart: the peak resident set of a fresh process that runs
it once (:func:`peak_rss`), less that of one that only loads the data.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

EPS = 0.01


def data(batch: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, 3, generator=g)
    y = torch.rand(batch, n, 3, generator=g) * 0.8 + 0.1
    return x, y


def plan_error(x: np.ndarray, y: np.ndarray, f: np.ndarray, g: np.ndarray, eps: float) -> float:
    """Marginal L1 error of the plan a_i b_j exp((f_i + g_j − C_ij)/ε) (uniform weights)."""
    n, m = len(x), len(y)
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    P = np.exp((f[:, None] + g[None, :] - C) / eps) / (n * m)
    return float(np.abs(P.sum(1) - 1 / n).sum() + np.abs(P.sum(0) - 1 / m).sum())


def otcli_step(x: torch.Tensor, y: torch.Tensor, tol: float | None = None) -> tuple[float, float]:
    import otcli

    xg = x.clone().requires_grad_(True)
    t = time.perf_counter()
    loss = otcli.sinkhorn_loss(xg, y, eps=EPS, tol=tol)
    loss.sum().backward()
    seconds = time.perf_counter() - t
    x0, y0 = (x[0], y[0]) if x.ndim == 3 else (x, y)
    r = otcli.solve(x0.numpy(), y0.numpy(), eps=EPS, tol=tol)
    return seconds, r.marginal_error


def geomloss_step(
    x: torch.Tensor, y: torch.Tensor, backend: str, scaling: float = 0.5
) -> tuple[float, float]:
    from geomloss import SamplesLoss

    blur = math.sqrt(EPS / 2)
    loss_fn = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, backend=backend)
    xg = x.clone().requires_grad_(True)
    t = time.perf_counter()
    loss = loss_fn(xg, y)
    loss.sum().backward()
    seconds = time.perf_counter() - t
    pot = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, backend=backend,
                      potentials=True, debias=False)  # fmt: skip
    x0, y0 = (x[:1], y[:1]) if x.ndim == 3 else (x, y)
    f, g = pot(x0, y0)
    f, g = f.reshape(-1).double().numpy(), g.reshape(-1).double().numpy()
    # GeomLoss's potentials are for |x − y|²/2 at ε/2: ours are twice theirs.
    err = plan_error(x0.reshape(-1, 3).double().numpy(), y0.reshape(-1, 3).double().numpy(),
                     2 * f, 2 * g, EPS)  # fmt: skip
    return seconds, err


def pot_step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    import ot

    pairs = list(zip(x, y, strict=True)) if x.ndim == 3 else [(x, y)]
    t = time.perf_counter()
    total = 0
    for xk, yk in pairs:
        xg = xk.clone().double().requires_grad_(True)
        res = ot.solve_sample(xg, yk.double(), reg=EPS, max_iter=10000, tol=1e-5,
                              grad="envelope")  # fmt: skip
        total = total + res.value
    total.backward()
    seconds = time.perf_counter() - t
    x0, y0 = pairs[0]
    res = ot.solve_sample(x0.double(), y0.double(), reg=EPS, max_iter=10000, tol=1e-5)
    P = res.plan.detach().numpy()
    n, m = P.shape
    err = float(np.abs(P.sum(1) - 1 / n).sum() + np.abs(P.sum(0) - 1 / m).sum())
    return seconds, err


# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's size (a benchmark
# process that already holds gigabytes), while exec gives it a fresh VmHWM.
PEAK_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import bench_loss as bl
x, y = bl.data(1, {n})
x, y = x[0], y[0]
{call}
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""

PEAK_CALLS = {
    "none": "import otcli, ot, geomloss",
    "otcli": "import ot, geomloss; bl.otcli_step(x, y)",
    "geomloss": "import otcli, ot; bl.geomloss_step(x, y, 'tensorized')",
    "pot": "import otcli, geomloss; bl.pot_step(x, y)",
}


def peak_rss(method: str, n: int) -> float:
    """Peak resident set (MB, Linux's VmHWM) of a fresh process running ``method`` once on
    an n-point pair."""
    code = PEAK_SCRIPT.format(here=str(Path(__file__).parent), n=n, call=PEAK_CALLS[method])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024

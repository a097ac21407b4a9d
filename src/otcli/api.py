"""The one-call facade: clouds in, :class:`SinkhornResult` out.

``solve`` builds the pieces (clouds → padded batch → cost → geometry → loop → results) for
the common case, like OTT-JAX's ``solve``. Lists of clouds of different sizes are grouped into
buckets of similar sizes, each bucket one batched loop, each problem with its own convergence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from otcli.buckets import DEFAULT_MAX_BATCH, bucket_entries, plan_buckets
from otcli.cloud import Cloud, as_cloud_list, pad_clouds
from otcli.costs import CostFn, check_points_for_cost, get_cost, working_cost
from otcli.device import format_bytes, memory_budget, pick_device, pick_dtype
from otcli.errors import InputError, OptionError
from otcli.geometry import DenseGeometry, Geometry, KernelGeometry, OnlineGeometry
from otcli.result import DivergenceResult, SinkhornResult
from otcli.solver import ProgressFn, SolverOptions, plan_statistics, sinkhorn_loop

DEFAULT_TOL = {"float32": 1e-5, "float64": 1e-7}


class SolverError(RuntimeError):
    """The numbers went wrong (non-finite result): exit code 1, not a user error."""


def solve(
    x: object,
    y: object,
    a: object | None = None,
    b: object | None = None,
    *,
    eps: float | Sequence[float] = 0.1,
    cost: str | CostFn = "sqeuclidean",
    p: float | None = None,
    max_iter: int = 1000,
    tol: float | None = None,
    scaling: float | None = 0.5,
    device: str = "auto",
    dtype: str = "float32",
    check_every: int | None = None,
    geometry: str = "auto",
    memory: int | None = None,
    progress: ProgressFn | None = None,
) -> SinkhornResult | list[SinkhornResult]:
    """Entropic OT between two clouds, or between paired lists of clouds (then a list).

    ``x``/``y`` are ``(n, d)`` arrays or :class:`Cloud` objects (or lists of them, of any
    sizes but one dimension); ``a``/``b`` are relative masses (default uniform). ``eps`` is
    absolute, in cost units (one value, or one per pair). ``tol`` bounds the marginal L1
    error (default 1e-5 in float32, 1e-7 in float64). ``scaling`` is the ε-annealing factor
    in (0, 1); ``None`` runs plain Sinkhorn at the target ε. ``geometry`` is ``dense`` (C in
    memory), ``online`` (C rebuilt block by block, O(n + m) memory) or ``auto``: dense while
    C and Cᵀ fit ``memory`` bytes (default: half the free memory of the device).
    """
    xs, batched_x = as_cloud_list(x, a, "x")
    ys, batched_y = as_cloud_list(y, b, "y")
    if batched_x != batched_y or len(xs) != len(ys):
        raise InputError("y", f"x holds {len(xs)} cloud(s) and y {len(ys)}; pair them one to one")
    cost_fn = cost if isinstance(cost, CostFn) else get_cost(cost, p)
    eps_list = [float(eps)] * len(xs) if np.isscalar(eps) else [float(e) for e in eps]  # type: ignore[arg-type, union-attr]
    if len(eps_list) != len(xs):
        raise OptionError("--eps", f"{len(eps_list)} ε values for {len(xs)} pairs")
    results: list[SinkhornResult] = [None] * len(xs)  # type: ignore[list-item]
    # Lists are solved in buckets of similar sizes: one padded batch per bucket.
    for idx in _buckets(xs, ys, device, dtype, memory):
        part = solve_clouds(
            [xs[k] for k in idx], [ys[k] for k in idx], eps=[eps_list[k] for k in idx],
            cost_fn=cost_fn, max_iter=max_iter, tol=tol, scaling=scaling, device=device,
            dtype=dtype, check_every=check_every, geometry=geometry, memory=memory,
            progress=progress,
        )  # fmt: skip
        for k, r in zip(idx, part, strict=True):
            results[k] = r
    return results if batched_x else results[0]


def _buckets(
    xs: Sequence[Cloud], ys: Sequence[Cloud], device: str, dtype: str, memory: int | None
) -> list[list[int]]:
    """Indices of the pairs, grouped into buckets of similar sizes within the memory budget."""
    if len(xs) == 1:
        return [[0]]
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    budget = memory_budget(dev) if memory is None else memory
    return plan_buckets(
        [(x.n, y.n) for x, y in zip(xs, ys, strict=True)],
        max_entries=bucket_entries(budget, torch.finfo(dt).bits // 8),
        max_batch=DEFAULT_MAX_BATCH,
    )


def divergence(
    x: object, y: object, a: object | None = None, b: object | None = None, **kwargs: object
) -> DivergenceResult | list[DivergenceResult]:
    """The debiased Sinkhorn divergence; takes the same arguments as :func:`solve`."""
    xs, batched = as_cloud_list(x, a, "x")
    ys, _ = as_cloud_list(y, b, "y")
    xy = solve(xs, ys, **kwargs)  # type: ignore[arg-type]
    xx = solve(xs, xs, **kwargs)  # type: ignore[arg-type]
    yy = solve(ys, ys, **kwargs)  # type: ignore[arg-type]
    out = [
        DivergenceResult(xy=r1, xx=r2, yy=r3)
        for r1, r2, r3 in zip(xy, xx, yy, strict=True)  # type: ignore[call-overload]
    ]
    return out if batched else out[0]


def check_pair(x: Cloud, y: Cloud, cost_fn: CostFn) -> None:
    """Refuse a pair the solver cannot take: different dimensions, or points the cost rejects."""
    if x.dim != y.dim:
        raise InputError(y.source, f"points have {y.dim} coordinates but {x.source} has {x.dim}")
    check_points_for_cost(cost_fn, x.points, x.source)
    check_points_for_cost(cost_fn, y.points, y.source)


def check_options(
    eps: Sequence[float], max_iter: int, tol: float, scaling: float | None, check_every: int
) -> None:
    """Refuse option values the solver cannot honour, naming the CLI option."""
    for e in eps:
        if not (math.isfinite(e) and e > 0):
            raise OptionError("--eps", f"ε must be a positive finite number, got {e}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise OptionError("--max-iter", f"must be a positive integer, got {max_iter}")
    if not (math.isfinite(tol) and tol >= 0):
        raise OptionError("--tol", f"must be a finite number ≥ 0, got {tol}")
    if scaling is not None and not (0 < scaling < 1):
        raise OptionError("--scaling", f"must lie strictly between 0 and 1, got {scaling}")
    if check_every < 1:
        raise OptionError("check_every", f"must be ≥ 1, got {check_every}")


def solve_clouds(
    xs: Sequence[Cloud],
    ys: Sequence[Cloud],
    *,
    eps: float | Sequence[float],
    cost_fn: CostFn,
    max_iter: int,
    tol: float | None,
    scaling: float | None,
    device: str,
    dtype: str,
    check_every: int | None,
    progress: ProgressFn | None,
    geometry: str = "auto",
    memory: int | None = None,
) -> list[SinkhornResult]:
    """Solve validated, paired clouds in one padded batch on one device."""
    start = time.perf_counter()
    eps_list = [float(eps)] * len(xs) if np.isscalar(eps) else [float(e) for e in eps]  # type: ignore[arg-type, union-attr]
    if len(eps_list) != len(xs):
        raise OptionError("--eps", f"{len(eps_list)} ε values for {len(xs)} pairs")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    tol = DEFAULT_TOL[dtype] if tol is None else float(tol)
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 10  # on CPU a check costs no device sync
    check_options(eps_list, max_iter, tol, scaling, check_every)
    for cx, cy in zip(xs, ys, strict=True):
        check_pair(cx, cy, cost_fn)

    px, py = pad_clouds(xs), pad_clouds(ys)
    # Centre each pair on a common point where the cost allows: costs are unchanged and the
    # float32 cost keeps more digits. Results remember the centre to rebuild the same C.
    centres = np.stack(
        [c.points.mean(axis=0) if cost_fn.translation_invariant else 0 * c.points[0] for c in xs]
    )  # (B, d)
    hi = torch.float32 if dev.type == "mps" else torch.float64
    x_hi = torch.as_tensor(px.points - centres[:, None, :], dtype=hi, device=dev)
    y_hi = torch.as_tensor(py.points - centres[:, None, :], dtype=hi, device=dev)
    # Vectors (log-masses, ε, potentials) live in high precision: they cost O(n + m) and set
    # how finely P is resolved; only the n×m matrices take the working dtype.
    log_a = torch.as_tensor(px.log_weights, dtype=hi, device=dev)
    log_b = torch.as_tensor(py.log_weights, dtype=hi, device=dev)
    eps_t = torch.as_tensor(eps_list, dtype=hi, device=dev)
    opts = SolverOptions(max_iter=max_iter, tol=tol, scaling=scaling, check_every=check_every)
    mask_x, mask_y = log_a > -math.inf, log_b > -math.inf
    geom = make_geometry(x_hi, y_hi, mask_x, mask_y, cost_fn, dt, geometry, memory, eps_t)
    geom_name = geom.name
    out = sinkhorn_loop(geom, log_a, log_b, eps_t, opts, progress)
    dense_cost = getattr(geom, "cost", None)  # the statistics reuse it; the rest is freed
    del geom
    cost, marg = plan_statistics(
        x_hi, y_hi, log_a, log_b, out.f, out.g, eps_t, cost_fn, dt,
        block_rows=_block_rows(x_hi.shape[0] * y_hi.shape[1]), cost=dense_cost,
    )  # fmt: skip
    del dense_cost
    f64, g64 = out.f.to(hi), out.g.to(hi)
    objective = (log_a.to(hi).exp() * f64).sum(1) + (log_b.to(hi).exp() * g64).sum(1)
    host = {
        k: v.cpu().numpy()
        for k, v in dict(
            cost=cost, marg=marg, obj=objective, it=out.iterations,
            f=f64, g=g64,
        ).items()
    }  # fmt: skip
    seconds = time.perf_counter() - start
    results = []
    for k, (cx, cy) in enumerate(zip(xs, ys, strict=True)):
        if not (np.isfinite(host["cost"][k]) and np.isfinite(host["obj"][k])):
            raise SolverError(
                f"{cx.source} vs {cy.source}: the solver produced a non-finite result "
                f"(ε={eps_list[k]:g}); try --dtype float64 or a larger --eps"
            )
        results.append(
            SinkhornResult(
                x=cx, y=cy, cost_fn=cost_fn, eps=eps_list[k],
                f=host["f"][k, : cx.n].astype(np.float64),
                g=host["g"][k, : cy.n].astype(np.float64),
                cost=float(host["cost"][k]), objective=float(host["obj"][k]),
                iterations=int(host["it"][k]), marginal_error=float(host["marg"][k]),
                converged=bool(host["marg"][k] <= tol), tol=tol, device=str(dev), dtype=dtype,
                centre=centres[k], geometry=geom_name, seconds=seconds,
            )
        )  # fmt: skip
    return results


def _block_rows(batch_cols: int) -> int:
    """Rows per block for the float64 statistics pass: about 256 K entries (2 MB) at a time."""
    return max(1, (1 << 18) // max(1, batch_cols))


GEOMETRIES = ("auto", "dense", "online")


def dense_bytes(batch: int, n: int, m: int, dtype: torch.dtype) -> int:
    """Memory the dense geometries hold: C and Cᵀ (log domain) or C and K̃ (kernel)."""
    return 2 * batch * n * m * torch.finfo(dtype).bits // 8


def make_geometry(
    x: torch.Tensor,
    y: torch.Tensor,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    cost_fn: CostFn,
    dtype: torch.dtype,
    geometry: str,
    memory: int | None,
    eps: torch.Tensor | None = None,
) -> Geometry:
    """Dense when C and Cᵀ fit the memory budget (``auto``), else online (O(n + m)).

    ``eps`` (B,) are the target ε values: the CPU kernel geometry builds its kernel exactly
    there and may take cheaper steps through the annealing stages above them.
    """
    if geometry not in GEOMETRIES:
        raise OptionError("--geometry", f"unknown geometry {geometry!r}; use auto, dense or online")
    budget = memory_budget(x.device) if memory is None else memory
    B, n, _ = x.shape
    m = y.shape[1]
    need = dense_bytes(B, n, m, dtype)
    if geometry == "dense" and memory is not None and need > budget:
        raise OptionError(
            "--geometry",
            f"dense needs {format_bytes(need)} for C and Cᵀ, over the --memory budget of "
            f"{format_bytes(budget)}; use --geometry online or auto",
        )
    if geometry == "online" or (geometry == "auto" and need > budget):
        return OnlineGeometry(x, y, cost_fn, mask_x, mask_y, dtype)
    block = _block_rows(B * m)
    cost = torch.cat(
        [working_cost(cost_fn, x[:, i : i + block], y, dtype) for i in range(0, n, block)], dim=1
    )  # (B, n, m), built block by block: no n×m temporary in high precision
    if x.device.type == "cpu":
        # Matrix-vector products instead of exps; it checks every half-step (one host sync
        # each), which costs nothing on a CPU but would stall a GPU, where exps are cheap.
        return KernelGeometry(cost, mask_x, mask_y, exact_eps=eps)
    return DenseGeometry(cost, mask_x, mask_y)

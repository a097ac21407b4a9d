"""The one-call facade: clouds in, :class:`SinkhornResult` out.

``solve`` builds the pieces (clouds → padded batch → cost → geometry → loop → results) for
the common case, like OTT-JAX's ``solve``. Lists of clouds of different sizes are grouped into
buckets of similar sizes, each bucket one batched loop, each problem with its own convergence;
on a CPU, buckets of small pairs run side by side, one per core (:mod:`otcli.lanes`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from otcli import config as _config
from otcli import multiscale
from otcli.buckets import plan_buckets
from otcli.checks import check_cost_range, check_pair
from otcli.cloud import Cloud, as_cloud_list, pad_clouds
from otcli.config import (
    DEFAULT_MAX_ITER,
    EPS_REL_FLOOR,
    GEOMETRIES,
    SolveConfig,
    dense_bytes,
    eps_values,
    is_one_value,
)
from otcli.costs import CostFn, working_cost
from otcli.device import format_bytes, solve_threads
from otcli.errors import InputError, OptionError, SolverError
from otcli.geometry import DenseGeometry, Geometry, KernelGeometry, OnlineGeometry
from otcli.keywords import _keyword_errors
from otcli.lanes import Serialized, in_lanes, lane_count
from otcli.measure import plan_statistics
from otcli.result import DivergenceResult, SinkhornResult
from otcli.scale import mean_costs, pair_eps
from otcli.solver import (
    ProgressFn,
    SolverOptions,
    report_stage,
    sinkhorn_loop,
)
from otcli.symmetric import symmetric_loop

__all__ = [
    "GEOMETRIES",
    "MAX_MARGINAL_ERROR",
    "SolverError",
    "check_cost_range",
    "check_pair",
    "divergence",
    "make_config",
    "make_geometry",
    "mean_costs",
    "pair_eps",
    "solve",
    "solve_clouds",
]

#: :func:`otcli.config.make_config` for Python callers: its errors name the keywords.
make_config = _keyword_errors(_config.make_config)


@_keyword_errors
def solve(
    x: object,
    y: object,
    a: object | None = None,
    b: object | None = None,
    *,
    eps: float | Sequence[float] | None = None,
    eps_rel: float | None = None,
    cost: str | CostFn | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "sqeuclidean",
    p: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float | None = None,
    scaling: float | None = 0.5,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    check_every: int | None = None,
    geometry: str = "auto",
    memory: int | None = None,
    threads: str | int | None = None,
    progress: ProgressFn | None = None,
    config: SolveConfig | None = None,
    reach: float | None = None,
    reach_a: float | None = None,
    reach_b: float | None = None,
    rho: float | None = None,
    rho_a: float | None = None,
    rho_b: float | None = None,
) -> SinkhornResult | list[SinkhornResult]:
    """Entropic OT between two clouds, or between paired lists of clouds (then a list).

    ``x``/``y`` are ``(n, d)`` arrays (``(n,)``: points on a line), torch tensors or
    :class:`Cloud` objects, or lists of them, of any sizes but one dimension; ``(B, n, d)``
    arrays or tensors are B clouds. A list or
    tuple whose items are arrays, tensors or Clouds is a batch, one cloud per item (so
    ``solve([a, a], [b, b])`` with 1-D arrays is two pairs of 1-D clouds, two results); a
    list of numbers or of lists of numbers is one cloud (see
    :func:`~otcli.cloud.as_cloud_list`). Values must be real: complex and object arrays
    are refused (:class:`OtcliError`). Tensors that require grad are accepted and read as
    values (detached): the result holds numbers, not a graph (for gradients, see
    :func:`otcli.sinkhorn_loss`). ``a``/``b`` are
    relative masses (default uniform). ``eps`` is absolute, in cost units (a number, a
    numpy scalar or a 0-d tensor; or one per pair; default 0.1); ``eps_rel`` instead
    makes each pair's ε that fraction of its mean cost (e.g. 0.05). ``tol`` bounds the
    marginal L1 error (default 1e-5 in float32, 1e-7 in float64). ``scaling`` is the
    ε-annealing factor in (0, 1); ``None`` runs plain Sinkhorn at the target ε. ``geometry``
    is ``dense`` (C in memory), ``online`` (C rebuilt block by block, O(n + m) memory) or
    ``auto``: dense while C and Cᵀ fit ``memory`` bytes (default: half the free memory of
    the device). ``dtype``: ``"float32"`` or ``"float64"`` (or ``torch.float32``,
    ``torch.float64``); default float32, or float64 for float64 torch tensors. ``device``
    may be a ``torch.device``. ``threads`` sets
    torch's CPU threads for the solve (a count or ``"auto"``; default: ``OTCLI_THREADS`` if
    set, else the cores other work leaves free, see :func:`~otcli.device.auto_threads`); the
    caller's setting is restored afterwards. ``progress(it, eps, err)`` is told each
    convergence check (and, if it has one, its ``stage(text)`` what the solve does now).
    A list of small pairs on a CPU runs in lanes (:mod:`otcli.lanes`): then ``progress``
    is called from the lanes' threads, one call at a time, the buckets' checks interleaved,
    and a callable ``cost`` may run in several threads at once.

    ``cost`` is a registered name, or a function of batched points ``cost(x, y)``,
    (B, n, d) × (B, m, d) → (B, n, m) torch tensor, used as is by the dense and online
    geometries (see :class:`~otcli.costs.CallableCost`: not assumed symmetric, translation
    invariant or bounded over boxes, so the block-sparse pruning is skipped for it).

    Unbalanced OT: ``rho`` (both sides), ``rho_a``/``rho_b`` (one side each) relax the
    marginals into penalties ρ KL(P1‖a), ρ KL(Pᵀ1‖b) in cost units; ``reach``/``reach_a``/
    ``reach_b`` give them as distances in the points' units, ρ = reach^p for a p-th power
    cost (GeomLoss's convention). The result's ``mass`` is Σ P, its ``objective`` the
    primal value with its KL terms.

    ``config`` (a :class:`~otcli.config.SolveConfig`) replaces all the solver keywords but
    ``eps``, which may still give one value per pair.
    """
    if dtype is None:  # float32, or float64 where the points are float64 tensors
        dtype = "float64" if _float64_tensor(x) or _float64_tensor(y) else "float32"
    xs, batched_x = as_cloud_list(x, a, "x")
    ys, batched_y = as_cloud_list(y, b, "y")
    if batched_x != batched_y or len(xs) != len(ys):
        raise InputError("y", f"x holds {len(xs)} cloud(s) and y {len(ys)}; pair them one to one")
    if config is None:
        config = make_config(
            eps=eps if eps is not None and is_one_value(eps) else None,  # type: ignore[arg-type]
            eps_rel=eps_rel, cost=cost, p=p, max_iter=max_iter, tol=tol, scaling=scaling,
            device=device, dtype=dtype, geometry=geometry, memory=memory,
            check_every=check_every, threads=threads, reach=reach, reach_a=reach_a,
            reach_b=reach_b, rho=rho, rho_a=rho_a, rho_b=rho_b,
        )  # fmt: skip
    eps_list = eps_values(config, eps, len(xs))
    results: list[SinkhornResult] = [None] * len(xs)  # type: ignore[list-item]
    # Lists are solved in buckets of similar sizes: one padded batch per bucket, side by
    # side on a CPU's cores (otcli.lanes).
    buckets = _buckets(xs, ys, config)
    lanes = lane_count(config, [(x.n, y.n) for x, y in zip(xs, ys, strict=True)], buckets)
    lane_config = replace(config, threads=1) if lanes > 1 else config
    report = Serialized(progress) if lanes > 1 else progress  # and the stop check

    def job(idx: list[int]) -> Callable[[], list[SinkhornResult]]:
        return lambda: solve_clouds(
            [xs[k] for k in idx], [ys[k] for k in idx], [eps_list[k] for k in idx],
            lane_config, progress=report,
        )  # fmt: skip

    for idx, part in zip(buckets, in_lanes([job(idx) for idx in buckets], lanes), strict=True):
        for k, r in zip(idx, part, strict=True):
            results[k] = r
    return results if batched_x else results[0]


def self_pairs(xs: Sequence[Cloud], ys: Sequence[Cloud], config: SolveConfig) -> bool:
    """Whether every pair is a cloud against itself (the same points and weights) under a
    symmetric cost with the same ρ on both sides: :func:`otcli.symmetric.symmetric_loop`
    solves those (the Sinkhorn divergence's self terms), in tens of iterations where
    alternating half-steps may take thousands."""
    if not config.cost.symmetric or config.rho_a != config.rho_b:
        return False
    return all(
        x is y
        or (
            x.points.shape == y.points.shape
            and np.array_equal(x.points, y.points)
            and np.array_equal(x.weights, y.weights)
        )
        for x, y in zip(xs, ys, strict=True)
    )


def _buckets(xs: Sequence[Cloud], ys: Sequence[Cloud], config: SolveConfig) -> list[list[int]]:
    """Indices of the pairs, grouped into buckets of similar sizes within the memory budget."""
    if len(xs) == 1:
        return [[0]]
    return plan_buckets(
        [(x.n, y.n) for x, y in zip(xs, ys, strict=True)],
        max_entries=config.bucket_entries(),
        max_batch=config.max_batch,
    )


def _float64_tensor(x: object) -> bool:
    """Whether ``x`` is a float64 torch tensor, or a list whose first item is one."""
    if isinstance(x, (list, tuple)) and x:
        x = x[0]
    return isinstance(x, torch.Tensor) and x.dtype == torch.float64


@_keyword_errors
def divergence(
    x: object, y: object, a: object | None = None, b: object | None = None, **kwargs: Any
) -> DivergenceResult | list[DivergenceResult]:
    """The debiased Sinkhorn divergence; takes the same arguments as :func:`solve`."""
    if kwargs.get("dtype") is None and kwargs.get("config") is None:
        kwargs["dtype"] = "float64" if _float64_tensor(x) or _float64_tensor(y) else "float32"
    xs, batched = as_cloud_list(x, a, "x")
    ys, _ = as_cloud_list(y, b, "y")
    if kwargs.get("config") is None:
        eps = kwargs.get("eps")
        solver = {k: v for k, v in kwargs.items() if k not in ("eps", "progress", "config")}
        kwargs["config"] = make_config(
            eps=eps if eps is not None and is_one_value(eps) else None, **solver
        )
        kwargs = {k: kwargs.get(k) for k in ("eps", "progress", "config")}
    xy = solve(xs, ys, **kwargs)
    # The self terms take the cross problem's ε (a relative ε is resolved on the pair).
    kwargs["eps"] = [r.eps for r in xy]  # type: ignore[union-attr]
    xx = solve(xs, xs, **kwargs)
    yy = solve(ys, ys, **kwargs)
    out = [
        DivergenceResult(xy=r1, xx=r2, yy=r3)
        for r1, r2, r3 in zip(xy, xx, yy, strict=True)  # type: ignore[call-overload]
    ]
    return out if batched else out[0]


def solve_clouds(
    xs: Sequence[Cloud],
    ys: Sequence[Cloud],
    eps: Sequence[float | None],
    config: SolveConfig,
    progress: ProgressFn | None = None,
    checked: bool = False,
) -> list[SinkhornResult]:
    """Solve paired clouds in one padded batch on the config's device, ε checked per pair.

    An ε of ``None`` is the config's: absolute, or ``eps_rel`` times the pair's mean cost.
    ``checked``: every pair already passed :func:`otcli.checks.check_pair` (batch runs
    check up front, so that a bad pair becomes its own error row).
    """
    if len(eps) != len(xs):
        raise OptionError("--eps", f"{len(eps)} ε values for {len(xs)} pairs")
    threads = config.threads if config.torch_device.type == "cpu" else torch.get_num_threads()
    # No autograd graph: a callable cost may close over tensors that require grad (a learnable
    # metric); the solve needs its values only (gradients: :mod:`otcli.loss`).
    with solve_threads(threads), torch.no_grad():
        return _solve_clouds(xs, ys, eps, config, progress, checked)


def _solve_clouds(
    xs: Sequence[Cloud],
    ys: Sequence[Cloud],
    eps: Sequence[float | None],
    config: SolveConfig,
    progress: ProgressFn | None,
    checked: bool,
) -> list[SinkhornResult]:
    start = time.perf_counter()
    dev, dt = config.torch_device, config.torch_dtype
    cost_fn, tol = config.cost, config.tol
    for cx, cy in zip(xs, ys, strict=True):
        if not checked:
            check_pair(cx, cy, cost_fn, config.dtype)

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
    mask_x, mask_y = log_a > -math.inf, log_b > -math.inf
    relative = config.eps_rel is not None and any(e is None for e in eps)
    scale = mean_costs(x_hi, y_hi, mask_x, mask_y, cost_fn, dt) if relative else None
    eps_list = []
    for k, e in enumerate(eps):
        eps_list.append(
            config.pair_eps(None if scale is None else float(scale[k]))
            if e is None
            else config.check_eps(e)
        )
    eps_t = torch.as_tensor(eps_list, dtype=hi, device=dev)
    opts = SolverOptions(
        max_iter=config.max_iter,
        tol=tol,
        scaling=config.scaling,
        check_every=config.check_every,
        rho_a=config.rho_a,
        rho_b=config.rho_b,
    )
    report_stage(progress, "building the cost matrix")
    geom = make_geometry(x_hi, y_hi, mask_x, mask_y, config, eps_t)
    geom_name, engine = geom.name, getattr(geom, "engine", geom.name)
    if scale is None:  # for the report: from C where the geometry holds it
        dense = getattr(geom, "cost", None)
        scale = mean_costs(x_hi, y_hi, mask_x, mask_y, cost_fn, dt, dense=dense)
    report_stage(progress, "solving")
    warm = None
    sizes = (x_hi.shape[0], x_hi.shape[1], y_hi.shape[1])
    if self_pairs(xs, ys, config):  # each cloud against itself: f = g, averaged steps
        out = symmetric_loop(geom, log_a, eps_t, opts, progress)
    else:
        if isinstance(geom, OnlineGeometry) and multiscale.wanted(config, *sizes):
            warm = multiscale.warm_start(
                x_hi, y_hi, log_a, log_b, eps_t, config, opts, make_geometry, progress
            )
            engine = "multiscale" if warm is not None else engine
        out = sinkhorn_loop(geom, log_a, log_b, eps_t, opts, progress, warm)
    report_stage(progress, "measuring the plan")
    dense_cost = getattr(geom, "cost", None)  # the statistics reuse it; the rest is freed
    cost_dt = getattr(geom, "cost_dtype", dt)  # the C the solve stood on: the plan's too
    del geom
    stats = plan_statistics(
        x_hi, y_hi, log_a, log_b, out.f, out.g, eps_t, cost_fn, cost_dt,
        block_rows=_block_rows(x_hi.shape[0] * y_hi.shape[1], dev), cost=dense_cost,
        rho_a=config.rho_a, rho_b=config.rho_b,
    )  # fmt: skip
    del dense_cost
    f64, g64 = out.f.to(hi), out.g.to(hi)
    # Balanced: the primal value of the returned plan, ⟨P, C⟩ + ε KL(P‖a⊗b) (the dual
    # ⟨a, f⟩ + ⟨b, g⟩ was −2756 at ε = 1e10 on the moons), kept between ⟨P, C⟩ (KL ≥ 0) and
    # ⟨a⊗b, C⟩ (the independent coupling bounds the minimum): a float32 plan's marginal error
    # times ε = 1e15 made it 381 for a true 20.07. ⟨P, C⟩ wins where the two bounds meet
    # within rounding (a forced plan, P = a⊗b). Unbalanced: the dual, right at any ρ (the
    # primal's ρ KL terms were 7.4e8 at a reach of 1e10).
    balanced = torch.maximum(torch.minimum(stats.primal, stats.independent), stats.cost)
    objective = stats.dual if config.unbalanced else balanced
    host = {
        k: v.cpu().numpy()
        for k, v in dict(
            cost=stats.cost, marg=stats.marginal_error, obj=objective, it=out.iterations,
            f=f64, g=g64, scale=scale, mass=stats.mass,
        ).items()
    }  # fmt: skip
    seconds = time.perf_counter() - start
    results = []
    for k, (cx, cy) in enumerate(zip(xs, ys, strict=True)):
        hints = _failure_hints(eps_list[k], float(host["scale"][k]), config.dtype)
        if not host["marg"][k] <= MAX_MARGINAL_ERROR:  # NaN and inf too: checked first
            raise SolverError(
                f"{cx.source} vs {cy.source}: no transport plan found: its row and column sums "
                f"miss the masses by {host['marg'][k]:.2e} in all (marginal error; a plan "
                f"misses by at most --tol {tol:g}) at ε={eps_list[k]:g}; {hints}"
            )
        if not (np.isfinite(host["cost"][k]) and np.isfinite(host["obj"][k])):
            raise SolverError(
                f"{cx.source} vs {cy.source}: the solver produced a non-finite result "
                f"(ε={eps_list[k]:g}); {hints}"
            )
        results.append(
            SinkhornResult(
                x=cx, y=cy, cost_fn=cost_fn, eps=eps_list[k],
                f=host["f"][k, : cx.n].astype(np.float64),
                g=host["g"][k, : cy.n].astype(np.float64),
                cost=float(host["cost"][k]), objective=float(host["obj"][k]),
                iterations=int(host["it"][k]), marginal_error=float(host["marg"][k]),
                converged=bool(host["marg"][k] <= tol), tol=tol, device=str(dev),
                dtype=config.dtype, centre=centres[k], geometry=geom_name, seconds=seconds,
                engine=engine, cost_scale=float(host["scale"][k]),
                cost_dtype="" if cost_dt == dt else str(cost_dt).removeprefix("torch."),
                mass=float(host["mass"][k]), rho_a=config.rho_a, rho_b=config.rho_b,
            )
        )  # fmt: skip
    return results


#: Above this marginal error (‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁) the potentials define no transport
#: plan, only numbers: more than half the mass is misplaced. A solve that ends there failed.
MAX_MARGINAL_ERROR = 1.0


def _failure_hints(eps: float, scale: float, dtype: str) -> str:
    """What may rescue a failed solve, given ε, the pair's mean cost and the dtype."""
    if scale > 0 and eps < EPS_REL_FLOOR * scale:
        return (
            f"ε is {eps / scale:.1e} of the mean cost {scale:.3g}, too small for Sinkhorn: use "
            f"--eps-rel 0.05 (ε = {0.05 * scale:.3g}) or --exact"
        )
    if dtype == "float32":
        return "try --dtype float64 or a larger --eps"
    return "try a larger --eps, or rescale the coordinates (change their units)"


def _block_rows(batch_cols: int, device: torch.device) -> int:
    """Rows per block when C is built or the plan measured: about 256 K entries (2 MB) at a
    time on a CPU, where blocks should stay in cache; 64 M on a GPU, where each block is a
    handful of kernel launches that small blocks would multiply."""
    entries = 1 << 26 if device.type == "cuda" else 1 << 18
    return max(1, entries // max(1, batch_cols))


#: The CPU solves dense problems with the kernel engine; tests switch this off to run the
#: GPUs' log-domain dense engine on a CPU.
KERNEL_ON_CPU = True


def make_geometry(
    x: torch.Tensor,
    y: torch.Tensor,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    config: SolveConfig,
    eps: torch.Tensor | None = None,
) -> Geometry:
    """Dense when C and Cᵀ fit the memory budget (``auto``), else online (O(n + m)).

    ``eps`` (B,) are the target ε values: the CPU kernel geometry builds its kernel exactly
    there and may take cheaper steps through the annealing stages above them.
    """
    cost_fn, dtype, geometry = config.cost, config.torch_dtype, config.geometry
    budget = config.memory_budget()
    B, n, _ = x.shape
    m = y.shape[1]
    need = dense_bytes(B, n, m, config.itemsize)
    if geometry == "dense" and config.memory is not None and need > budget:
        raise OptionError(
            "--geometry",
            f"dense needs {format_bytes(need)} for C and Cᵀ, over the --memory budget of "
            f"{format_bytes(budget)}; use --geometry online or auto",
        )
    if geometry in ("online", "multiscale") or (geometry == "auto" and need > budget):
        return OnlineGeometry(x, y, cost_fn, mask_x, mask_y, dtype)
    block = _block_rows(B * m, x.device)
    cost = cost_fn.whole(x, y, dtype)  # a precomputed matrix is used as it is
    if cost is None:
        cost = torch.cat(
            [working_cost(cost_fn, x[:, i : i + block], y, dtype) for i in range(0, n, block)],
            dim=1,
        )  # (B, n, m), built block by block: no n×m temporary in high precision
    if x.device.type == "cpu" and KERNEL_ON_CPU:
        # Matrix-vector products instead of exps; it checks every half-step (one host sync
        # each), which costs nothing on a CPU but would stall a GPU, where exps are cheap.
        return KernelGeometry(cost, mask_x, mask_y, exact_eps=eps)
    return DenseGeometry(cost, mask_x, mask_y)

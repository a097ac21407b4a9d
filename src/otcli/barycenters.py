"""Free-support Sinkhorn barycenters: K points whose cloud best averages several clouds.

The barycenter of clouds ν_1 … ν_N with weights w_k (Σ w_k = 1) is the uniform cloud
μ_Z = (1/K) Σ_i δ_{z_i} whose support Z = (z_1 … z_K) minimises

    F(Z) = Σ_k w_k OT_ε(μ_Z, ν_k)                                   (default), or
    S(Z) = Σ_k w_k S_ε(μ_Z, ν_k),  S_ε(μ, ν) = OT_ε(μ, ν) − ½ OT_ε(μ, μ) − ½ OT_ε(ν, ν)
                                                                     (``divergence=True``).

Each outer iteration solves OT_ε(μ_Z, ν_k) for every k (and OT_ε(μ_Z, μ_Z) for S) in one
batched :func:`otcli.solve` call, then moves the support. With the squared Euclidean cost
and the plans P_k fixed, ∇_{z_i} OT_ε = Σ_j P_k,ij 2(z_i − y_j) = 2 a_i (z_i − T_k(z_i)),
a_i = 1/K, where T_k(z_i) = Σ_j P_k,ij y_j / Σ_j P_k,ij is the barycentric projection of
the plan (:func:`_barycentric_projection`). Hence

- F: ∇_{z_i} F = 2 a_i (z_i − Σ_k w_k T_k(z_i)), and the update z_i ← Σ_k w_k T_k(z_i)
  is its zero for the current plans: a majorise-minimise step (F cannot rise, up to the
  solves' tolerance), POT's ``free_support_sinkhorn_barycenter`` fixed point;
- S: the self term OT_ε(μ_Z, μ_Z) moves both of its arguments, so its gradient is twice
  one side's, 4 a_i (z_i − T_s(z_i)) with T_s the projection of the symmetric plan; then
  ∇_{z_i} S = 2 a_i (T_s(z_i) − Σ_k w_k T_k(z_i)), and the same step (a gradient step of
  size 1/(2 a_i)) gives z_i ← Σ_k w_k T_k(z_i) + (z_i − T_s(z_i)): the first term pulls
  toward the clouds, the second undoes the entropic blur the first carries. This step is
  no majorisation: an iteration whose S rose is retried at half the step (up to
  :data:`HALVINGS` times; the step then grows back).

Only the squared Euclidean cost has this update (another cost's minimiser over z_i has
no closed form): other costs are refused, as are unbalanced solves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from otcli.cloud import Cloud, as_cloud_list, make_cloud
from otcli.config import DEFAULT_OUTER_ITER, DEFAULT_OUTER_TOL, SolveConfig
from otcli.errors import InputError, OptionError
from otcli.keywords import _keyword_errors
from otcli.result import DivergenceResult, SinkhornResult

#: Times a step whose objective rose is halved before it is taken anyway.
HALVINGS = 4
#: Cost entries each block of :func:`_barycentric_projection` holds (rows × cloud size).
PROJECTION_BLOCK_ENTRIES = 1 << 22

#: ``progress(iteration, objective, movement)`` after each accepted outer iteration
#: (iteration 0: the initial support, movement NaN).
BarycenterProgress = Callable[[int, float, float], None]


@dataclass(frozen=True)
class BarycenterResult:
    """A free-support Sinkhorn barycenter, solved.

    - ``points`` (K, d): the support; ``weights`` (K,): its masses, uniform 1/K.
    - ``objective``: Σ_k w_k OT_ε(μ_Z, ν_k) at ``points``, or with ``divergence`` the
      debiased Σ_k w_k S_ε(μ_Z, ν_k) (≥ 0; 0 only for a barycenter equal to every cloud).
    - ``history``: the objective after each iteration, ``history[0]`` at the initial
      support; ``movements``: each iteration's movement of the support, the root mean
      square of the update's move z_new − z (at full step) over the clouds' ``scale``
      (the weighted union's root mean square distance to its mean).
    - ``iterations``: outer iterations taken; ``converged``: the last movement was below
      ``tol`` (if not, the limit stopped it).
    - ``cloud_weights`` (N,): the w_k, normalised; ``results``: per cloud, its solve at
      ``points`` (:class:`~otcli.result.SinkhornResult`; with ``divergence`` a
      :class:`~otcli.result.DivergenceResult` whose ``xx`` is the barycenter's own term).
    - ``columns``: the coordinates' labels (the clouds', where they agree; else 0, 1, …).
    """

    points: np.ndarray
    weights: np.ndarray
    objective: float
    history: tuple[float, ...]
    movements: tuple[float, ...]
    iterations: int
    converged: bool
    tol: float
    eps: float
    divergence: bool
    cloud_weights: np.ndarray
    results: tuple[SinkhornResult | DivergenceResult, ...]
    scale: float
    columns: tuple[str, ...]
    seed: int
    seconds: float

    def __repr__(self) -> str:
        """One line of figures, never the arrays."""
        what = "divergence" if self.divergence else "objective"
        return (
            f"BarycenterResult(points={len(self.points)}, dim={self.points.shape[1]}, "
            f"clouds={len(self.results)}, {what}={self.objective:.6g}, eps={self.eps:.3g}, "
            f"iterations={self.iterations}, converged={self.converged})"
        )

    @property
    def movement(self) -> float:
        """The last iteration's movement (NaN before any)."""
        return self.movements[-1] if self.movements else math.nan


@_keyword_errors
def barycenter(
    clouds: Sequence[object],
    weights: object | None = None,
    *,
    points: int | None = None,
    masses: Sequence[object | None] | None = None,
    init: object | None = None,
    eps: float | None = None,
    divergence: bool = False,
    seed: int = 0,
    outer_iter: int = DEFAULT_OUTER_ITER,
    outer_tol: float = DEFAULT_OUTER_TOL,
    progress: BarycenterProgress | None = None,
    config: SolveConfig | None = None,
    **solve_keywords: Any,
) -> BarycenterResult:
    """The free-support Sinkhorn barycenter of ``clouds`` (see the module's docstring).

    ``clouds``: a list of clouds (``(n_k, d)`` arrays, tensors or :class:`Cloud` objects,
    of any sizes but one dimension; ``masses`` optionally gives each one's per-point
    masses, else a Cloud's own or uniform). ``weights``: the w_k, one per cloud (≥ 0, not
    all zero; normalised; default equal). ``points``: K, the support size. The support
    starts at ``init`` ((K, d), if given) or at K points of the union of the clouds drawn
    by k-means++ (:func:`kmeans_plus_plus`: each point's mass is w_k times its mass in
    its cloud; random generator ``numpy.random.default_rng(seed)``, so a seed gives one
    answer). ``divergence=True`` minimises the debiased Σ_k w_k S_ε instead of
    Σ_k w_k OT_ε (no entropic shrinkage: the barycenter of one cloud is that cloud).

    Each iteration moves every support point z_i to Σ_k w_k T_k(z_i), where T_k(z_i) is
    where cloud k's plan sends it, plus z_i − T_μ(z_i) (the barycenter's own plan) with
    ``divergence``: for the squared Euclidean cost, steps along −∇ of the objective of
    length 1/(2 a_i) (derived in :mod:`otcli.barycenters`' docstring).

    The loop stops once an iteration moves the support by less than ``outer_tol`` (root
    mean square movement over the clouds' scale), or after ``outer_iter`` iterations.
    ``progress(iteration, objective, movement)`` hears each one.

    The other keywords are :func:`otcli.solve`'s, for every inner solve: ``eps`` (absolute;
    default 0.1) or ``eps_rel`` (then ε is fixed once, as ``eps_rel`` times the w-weighted
    mean cost between the initial support and the clouds, so every iteration solves the
    same problem), ``max_iter`` and ``tol`` (each Sinkhorn solve's, as in ``solve``),
    ``device``, ``dtype``, ``geometry``, ``memory``, ``threads``...; or ``config``, a
    :class:`~otcli.config.SolveConfig`. The cost must be ``sqeuclidean`` and the solves
    balanced (no ``reach``/``rho``).
    """
    from otcli import api

    start = time.perf_counter()
    unknown = sorted(set(solve_keywords) - _SOLVE_KEYWORDS)
    if unknown:
        raise OptionError(
            unknown[0],
            f"barycenter takes otcli.solve's keywords: {', '.join(sorted(_SOLVE_KEYWORDS))}",
        )
    if config is None:
        config = api.make_config(eps=eps, **solve_keywords)
    elif eps is not None:
        config = config.with_(eps=config.check_eps(eps), eps_rel=None)
    _check_config(config)
    xs = _clouds(clouds, masses)
    w = cloud_weights(weights, len(xs))
    count = _support_size(points, init, xs[0].dim)
    _check_loop(outer_iter, outer_tol, seed)
    union, mass = _union(xs, w)
    scale = _scale(union, mass)
    if init is None:
        z = kmeans_plus_plus(union, mass, count, np.random.default_rng(seed))
    else:
        z = make_cloud(init, None, "init").points.copy()
    solver = _Solver(xs, w, config, divergence)
    eps_value = solver.resolve_eps(z)
    value, results = solver.evaluate(z)
    history, movements = [value], []
    if progress is not None:
        progress(0, value, math.nan)
    step, converged = 1.0, False
    for _ in range(outer_iter):
        target = solver.target(z, results)
        for attempt in range(HALVINGS + 1):
            new = z + step * (target - z)
            new_value, new_results = solver.evaluate(new)
            if new_value <= value + _slack(value, eps_value) or attempt == HALVINGS:
                break
            step /= 2
        # The move the update asks for (the one taken, unless its step was halved): a
        # halved step is no sign of a stationary support.
        movement = float(np.sqrt(np.mean(np.sum((target - z) ** 2, axis=1)))) / scale
        z, value, results = new, new_value, new_results
        history.append(value)
        movements.append(movement)
        if progress is not None:
            progress(len(movements), value, movement)
        step = min(1.0, 2 * step)
        if movement < outer_tol:
            converged = True
            break
    z.setflags(write=False)
    weights_z = np.full(len(z), 1.0 / len(z))
    weights_z.setflags(write=False)
    return BarycenterResult(
        points=z, weights=weights_z, objective=value, history=tuple(history),
        movements=tuple(movements), iterations=len(movements), converged=converged,
        tol=outer_tol, eps=eps_value, divergence=divergence, cloud_weights=w,
        results=tuple(results), scale=scale, columns=_columns(xs), seed=seed,
        seconds=time.perf_counter() - start,
    )  # fmt: skip


#: :func:`otcli.solve`'s keywords that :func:`barycenter` passes on (``eps`` and ``config``
#: are its own parameters).
_SOLVE_KEYWORDS = frozenset(
    {"eps_rel", "cost", "p", "max_iter", "tol", "scaling", "device", "dtype", "check_every",
     "geometry", "memory", "threads", "reach", "reach_a", "reach_b", "rho", "rho_a", "rho_b"}
)  # fmt: skip


def _slack(value: float, eps: float) -> float:
    """How far an objective may rise and the step still count as no worse: the inner
    solves' own error (their marginal tolerance times the potentials, about ε)."""
    return 1e-6 * (abs(value) + eps)


class _Solver:
    """The inner solves of one barycenter: every cloud against the support in one batched
    call, the support against itself with the divergence, the clouds' own terms once."""

    def __init__(
        self, clouds: list[Cloud], w: np.ndarray, config: SolveConfig, divergence: bool
    ) -> None:
        self.clouds, self.w, self.config, self.divergence = clouds, w, config, divergence
        self.eps = config.eps
        self.own: list[SinkhornResult] = []

    def resolve_eps(self, z: np.ndarray) -> float:
        """ε for every solve: the config's absolute one, or ``eps_rel`` × the w-weighted
        mean cost between the initial support and the clouds. Solves the clouds' own
        terms OT_ε(ν_k, ν_k) for the divergence (constant: once)."""
        from otcli.scale import pair_eps

        if self.config.eps_rel is not None:
            support = make_cloud(z, None, "barycenter")
            scale = sum(wk * pair_eps(support, c, self.config)[1]
                        for wk, c in zip(self.w, self.clouds, strict=True))  # fmt: skip
            self.eps = self.config.pair_eps(scale)
        if self.divergence:
            self.own = self._solve(self.clouds, self.clouds)
        return float(self.eps)  # type: ignore[arg-type]

    def evaluate(self, z: np.ndarray) -> tuple[float, list[Any]]:
        """The objective at support ``z`` and the per-cloud results, from one batched solve."""
        support = make_cloud(z, None, "barycenter")
        xs = [support] * len(self.clouds)
        ys = list(self.clouds)
        if self.divergence:
            xs, ys = [*xs, support], [*ys, support]
        solved = self._solve(xs, ys)
        cross = solved[: len(self.clouds)]
        value = float(sum(wk * r.objective for wk, r in zip(self.w, cross, strict=True)))
        if not self.divergence:
            return value, cross
        self_term = solved[-1]
        value -= 0.5 * self_term.objective
        value -= 0.5 * float(sum(wk * r.objective for wk, r in zip(self.w, self.own, strict=True)))
        results = [DivergenceResult(xy=r, xx=self_term, yy=o)
                   for r, o in zip(cross, self.own, strict=True)]  # fmt: skip
        return value, results

    def target(self, z: np.ndarray, results: list[Any]) -> np.ndarray:
        """Where the update sends the support: Σ_k w_k T_k(z), plus z − T_s(z) for S."""
        cross = [r.xy if self.divergence else r for r in results]
        out = np.zeros_like(z)
        for wk, r in zip(self.w, cross, strict=True):
            if wk > 0:
                out += wk * _barycentric_projection(r)
        if self.divergence:
            out += z - _barycentric_projection(results[0].xx)
        return out

    def _solve(self, xs: list[Cloud], ys: list[Cloud]) -> list[SinkhornResult]:
        from otcli import api

        return api.solve(xs, ys, eps=[self.eps] * len(xs), config=self.config)  # type: ignore[return-value]


def _barycentric_projection(result: SinkhornResult) -> np.ndarray:
    """T(x_i) = Σ_j P_ij y_j / Σ_j P_ij for each point x_i of a solved pair, (n, d) float64.

    P_ij = a_i b_j exp((f_i + g_j − C(x_i, y_j))/ε): row i's factor a_i e^{f_i/ε} cancels,
    so T(x_i) is the softmax over j of log b_j + (g_j − C_ij)/ε applied to the y_j, taken
    as a log-sum-exp (stable at any ε) block by block: at most
    :data:`PROJECTION_BLOCK_ENTRIES` costs at a time, never the n × m plan. The same
    formula at a new point is the entropic map (Pooladian & Niles-Weed, 2021): this private
    function is kept apart so that the library's map can replace it.
    """
    import torch

    dev = torch.device(result.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        dev = torch.device("cpu")
    hi = torch.float32 if dev.type == "mps" else torch.float64
    x = torch.as_tensor(result.x.points - result.centre, dtype=hi, device=dev)
    y = torch.as_tensor(result.y.points - result.centre, dtype=hi, device=dev)
    with np.errstate(divide="ignore"):
        log_b = np.log(result.y.weights)
    h = torch.as_tensor(log_b + result.g / result.eps, dtype=hi, device=dev)  # (m,)
    out = torch.empty_like(x)
    rows = max(1, PROJECTION_BLOCK_ENTRIES // max(1, y.shape[0]))
    with torch.no_grad():
        for i0 in range(0, x.shape[0], rows):
            c = result.cost_fn(x[None, i0 : i0 + rows], y[None])[0]  # (r, m)
            share = torch.softmax(h[None, :] - c / result.eps, dim=1)  # P_ij / Σ_j P_ij
            out[i0 : i0 + rows] = share @ y  # (r, d)
    return out.to(torch.float64).cpu().numpy() + result.centre


def kmeans_plus_plus(
    points: np.ndarray, mass: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` points of ``points`` (n, d) chosen by k-means++ seeding (Arthur &
    Vassilvitskii, 2007), each point weighted by ``mass``: the first with probability
    ∝ mass, each next ∝ mass × its squared distance to the nearest chosen one. A chosen
    point is never chosen again while an unchosen one with mass lies elsewhere; once
    every point with mass is chosen (more points asked than distinct points with mass),
    the rest are drawn ∝ mass, repeating points. (count, d) float64."""
    chosen = np.empty((count, points.shape[1]))
    p = mass / mass.sum()
    first = int(rng.choice(len(points), p=p))
    chosen[0] = points[first]
    nearest = np.sum((points - points[first]) ** 2, axis=1)
    for k in range(1, count):
        score = mass * nearest
        total = score.sum()
        idx = int(rng.choice(len(points), p=score / total if total > 0 else p))
        chosen[k] = points[idx]
        np.minimum(nearest, np.sum((points - points[idx]) ** 2, axis=1), out=nearest)
    return chosen


def cloud_weights(
    weights: object | None, count: int, option: str = "--weights-of-files"
) -> np.ndarray:
    """The barycentric weights w_k: ``count`` finite numbers ≥ 0, not all zero, normalised
    to sum 1 (``None``: equal). Raises :class:`OptionError` naming ``option``."""
    if weights is None:
        return np.full(count, 1.0 / count)
    try:
        w = np.asarray(
            weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights,  # type: ignore[union-attr]
            dtype=np.float64,
        ).reshape(-1)
    except (TypeError, ValueError):
        raise OptionError(option, f"must be numbers, one per cloud, got {weights!r}") from None
    if w.size != count:
        raise OptionError(option, f"{w.size} weight(s) for {count} clouds; give one per cloud")
    if not np.isfinite(w).all():
        raise OptionError(option, f"weight {w[~np.isfinite(w)][0]} is not finite")
    if (w < 0).any():
        k = int(np.flatnonzero(w < 0)[0])
        raise OptionError(option, f"weight {w[k]:g} of cloud {k + 1} is negative; weights are ≥ 0")
    if not w.sum() > 0:
        raise OptionError(
            option, "all weights are zero; at least one cloud needs a positive weight"
        )
    return w / w.sum()


def _clouds(clouds: object, masses: Sequence[object | None] | None) -> list[Cloud]:
    """The clouds as checked :class:`Cloud` objects of one dimension."""
    if isinstance(clouds, (str, bytes)) or not isinstance(clouds, Sequence) or not clouds:
        raise InputError("clouds", "give a non-empty list of clouds, one (n, d) array each")
    xs, _ = as_cloud_list(list(clouds), masses, "clouds")
    first = xs[0]
    for c in xs[1:]:
        if c.dim != first.dim:
            raise InputError(
                c.source,
                f"points have {c.dim} coordinates but {first.source} has {first.dim}; every "
                "cloud of a barycenter needs the same dimension",
            )
    return xs


def _support_size(points: int | None, init: object | None, dim: int) -> int:
    """K: ``points``, or the rows of ``init``; both given must agree."""
    if init is not None:
        shape = np.shape(init)
        if len(shape) != 2 or shape[1] != dim:
            raise InputError(
                "init", f"must be a (K, {dim}) array of support points, got shape {shape}"
            )
        if points is not None and points != shape[0]:
            raise OptionError("--points", f"is {points} but init has {shape[0]} points")
        return int(shape[0])
    if points is None:
        raise OptionError("--points", "give the number of support points K (e.g. 100)")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 1:
        raise OptionError("--points", f"must be a positive integer, got {points!r}")
    return int(points)


def _check_loop(outer_iter: int, outer_tol: float, seed: int) -> None:
    if (
        isinstance(outer_iter, bool)
        or not isinstance(outer_iter, (int, np.integer))
        or outer_iter < 0
    ):
        raise OptionError("--outer-iter", f"must be an integer ≥ 0, got {outer_iter!r}")
    if not (isinstance(outer_tol, (int, float)) and math.isfinite(outer_tol) and outer_tol >= 0):
        raise OptionError("--outer-tol", f"must be a finite number ≥ 0, got {outer_tol!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError("--seed", f"must be an integer ≥ 0, got {seed!r}")


def _check_config(config: SolveConfig) -> None:
    """Only the squared Euclidean cost has the fixed-point update; only balanced solves."""
    if config.cost.name != "sqeuclidean":
        raise OptionError(
            "--cost",
            f"a barycenter's support update z = Σ_k w_k T_k(z) minimises the objective for the "
            f"sqeuclidean cost only, not {config.cost.describe()}; use --cost sqeuclidean",
        )
    if config.unbalanced:
        raise OptionError(
            "--reach", "a barycenter is computed with balanced OT; drop --reach / --rho"
        )


def _union(xs: list[Cloud], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every cloud's points stacked, each with mass w_k × its mass in its cloud."""
    points = np.concatenate([c.points for c in xs])
    mass = np.concatenate([wk * c.weights for wk, c in zip(w, xs, strict=True)])
    return points, mass


def _scale(points: np.ndarray, mass: np.ndarray) -> float:
    """The clouds' scale: the root mean square distance of the weighted union to its mean
    (1 where every point coincides)."""
    p = mass / mass.sum()
    mean = p @ points
    spread = float(np.sqrt(p @ np.sum((points - mean) ** 2, axis=1)))
    return spread if spread > 0 else 1.0


def _columns(xs: list[Cloud]) -> tuple[str, ...]:
    """The clouds' coordinate labels where all agree, else 0, 1, …"""
    first = xs[0].columns
    if all(c.columns == first for c in xs):
        return first
    return tuple(str(k) for k in range(xs[0].dim))


__all__ = [
    "BarycenterResult",
    "barycenter",
    "cloud_weights",
    "kmeans_plus_plus",
]

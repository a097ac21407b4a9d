"""One frozen solver configuration, built and checked once, taken by every way of solving.

:class:`SolveConfig` holds each decision that shapes a solve: ε, the cost, the limits and
tolerance, ε-annealing, the device and dtype, the geometry and the memory budget, the batch
size. :func:`make_config` builds it from the CLI's options or the API's keyword arguments and
refuses a bad value with one message naming the option; after that nothing checks or
resolves these again. ``otcli.solve``, the single-pair run (:mod:`otcli.pair`), ``batch``,
``pairwise`` and any backend that runs buckets elsewhere all take the same object, so a new
option is added here once. :class:`ReadOptions` says which columns of a file are points and
which one holds weights.

The memory model lives here too (:func:`dense_bytes`): the geometry choice and the bucket
sizes use the same count of bytes per cost entry, so a bucket planned within the budget is
also solved densely.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from otcli.errors import OptionError

if TYPE_CHECKING:
    import torch

    from otcli.costs import CostFn

#: Geometries a user can ask for: ``dense`` (C in memory), ``online`` (O(n + m)), ``auto``.
GEOMETRIES = ("auto", "dense", "online", "multiscale")
#: Matrix precisions; vectors (masses, potentials, ε) are float64 wherever the device has it.
DTYPES = ("float32", "float64")
#: Default marginal-error target per dtype: what each can reach at ordinary ε.
DEFAULT_TOL = {"float32": 1e-5, "float64": 1e-7}
#: ε when neither an absolute nor a relative one is given (POT's and the seed's convention).
DEFAULT_EPS = 0.1
#: Below this fraction of the mean cost Sinkhorn stops converging in any sane number of
#: iterations (measured on iris, wine, digits and unit-cube clouds: 10²–10³ iterations at
#: 1e-3 of it, 2,000–3,000 or none at 3e-4, none within 3,000 at 1e-4 but for iris).
EPS_REL_FLOOR = 1e-4
#: Above this fraction of the mean cost the entropy outweighs the cost: the plan is close to
#: the independent coupling a⊗b and ⟨P, C⟩ to the mean cost (standardized diabetes halves
#: at ε = 2.3× the mean cost: 3.7× the exact W₂²; colours scaled to 0–1 at ε = 0.1: +53%).
EPS_REL_CEILING = 1.0
#: Iteration limit. Slow but steady problems need thousands (digits classes 4 vs 6 at ε = 10:
#: 1,351 iterations to 2.8e-6, POT's plain Sinkhorn 8,230); hopeless ones stop long before,
#: when their error stalls (no 1% progress in 500 iterations, nor in half of those spent at
#: the target ε) or when, far above the tolerance, its fall projects past the limit, so a
#: high limit costs them nothing.
DEFAULT_MAX_ITER = 10_000
#: A barycenter's outer loop (:func:`otcli.barycenter`): at most this many iterations, each
#: a batched solve and a move of the support, stopping once a move is below this fraction
#: of the clouds' scale (the fixed point's last moves are slow: on iris at ε = 0.1 it moved
#: 1e-3 of the scale after 35 iterations, 1e-4 after 124, the objective then within 2e-6).
DEFAULT_OUTER_ITER = 100
DEFAULT_OUTER_TOL = 1e-3
#: Most pairs in one batched solve.
DEFAULT_MAX_BATCH = 64
#: n×m matrices the dense geometries hold per problem: C and Cᵀ (log domain) or C and K̃.
DENSE_MATRICES = 2
#: Smallest ε: the smallest normal float64, below which 1/ε overflows.
MIN_EPS = sys.float_info.min
#: Largest --tol: a marginal L1 error of 1 misplaces half the mass; beyond it a plan is no
#: transport plan (such a result is a solver failure, see :mod:`otcli.api`).
MAX_TOL = 1.0
#: Largest --memory (1 EiB): sizes stay within int64 wherever numpy or torch count bytes.
MAX_MEMORY = 1 << 60


def dense_bytes(batch: int, n: int, m: int, itemsize: int) -> int:
    """Bytes the dense geometries hold for a padded (batch, n, m) problem set."""
    return DENSE_MATRICES * batch * n * m * itemsize


@dataclass(frozen=True)
class SolveConfig:
    """How to solve: one value per decision, already checked and resolved.

    - ``eps``: default ε (absolute, cost units), or ``None`` when ``eps_rel`` is set: then
      each pair's ε is ``eps_rel`` times its mean cost (OTT-JAX's relative ε). A batch row or
      an ``eps`` list may override it per problem, checked with :meth:`check_eps`.
    - ``cost``: the ground cost object (see :mod:`otcli.costs`).
    - ``max_iter``, ``tol`` (resolved from the dtype when not given), ``scaling`` (ε-annealing
      factor, ``None`` for plain Sinkhorn), ``check_every`` (resolved from the device).
    - ``device`` (resolved, e.g. ``cpu``, ``cuda``, ``cuda:1``) and ``dtype`` (``float32`` or
      ``float64``: the precision of the n×m matrices).
    - ``geometry``: ``auto``, ``dense``, ``online`` or ``multiscale`` (online, annealed on
      clusters of the points first: :mod:`otcli.multiscale`); ``memory``: the byte budget for n×m
      buffers as the user gave it (``None``: half the device's free memory, read when a solve
      needs it, see :meth:`memory_budget`).
    - ``max_batch``: most problems per batched solve.
    - ``threads``: CPU threads torch may use during a solve (``None``: chosen per solve,
      see :func:`otcli.device.solve_threads`, and :func:`otcli.device.auto_threads` for why
      fewer threads than cores can be faster).
    - ``rho_a``, ``rho_b``: the marginal penalties of unbalanced OT, in cost units: the
      solve minimises ⟨P, C⟩ + ε KL(P‖a⊗b) + ρ_a KL(P1‖a) + ρ_b KL(Pᵀ1‖b) (generalised
      KL). ``None`` keeps that side's marginal exact (ρ = ∞): both None is balanced OT, one
      None semi-relaxed.
    """

    cost: CostFn
    eps: float | None = DEFAULT_EPS
    eps_rel: float | None = None
    max_iter: int = DEFAULT_MAX_ITER
    tol: float = DEFAULT_TOL["float32"]
    scaling: float | None = 0.5
    device: str = "cpu"
    dtype: str = "float32"
    geometry: str = "auto"
    memory: int | None = None
    check_every: int = 1
    max_batch: int = DEFAULT_MAX_BATCH
    threads: int | None = None
    rho_a: float | None = None
    rho_b: float | None = None

    @property
    def unbalanced(self) -> bool:
        """Whether either marginal is relaxed (a finite ρ on some side)."""
        return self.rho_a is not None or self.rho_b is not None

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    @property
    def itemsize(self) -> int:
        """Bytes per matrix entry in the working dtype."""
        return 4 if self.dtype == "float32" else 8

    def memory_budget(self) -> int:
        """Bytes the n×m buffers of one solve may take: ``memory``, else half the free memory."""
        if self.memory is not None:
            return self.memory
        from otcli.device import memory_budget

        return memory_budget(self.torch_device)

    def bucket_entries(self, budget: int | None = None) -> int:
        """Padded cost entries one batched solve may hold within the memory budget."""
        from otcli.buckets import CPU_BUCKET_BYTES, DEFAULT_MAX_ENTRIES, bucket_entries

        budget = self.memory_budget() if budget is None else budget
        cpu = self.torch_device.type == "cpu"
        cap = CPU_BUCKET_BYTES // self.itemsize if cpu else DEFAULT_MAX_ENTRIES
        return bucket_entries(budget, DENSE_MATRICES * self.itemsize, cap)

    def check_eps(self, eps: float, option: str = "--eps") -> float:
        """One ε value (the default or a per-problem override), refused unless usable."""
        return _check_eps(eps, option)

    def pair_eps(self, scale: float | None) -> float:
        """The config's ε for a pair whose mean cost is ``scale``: the absolute ε, or
        ``eps_rel`` × ``scale``, checked under the option that set it. A relative ε needs a
        positive mean cost (coinciding clouds have 0, a cost matrix may have less)."""
        if self.eps_rel is None:
            return self.check_eps(self.eps)  # type: ignore[arg-type]
        if scale is None or not scale > 0:
            raise OptionError(
                "--eps-rel",
                f"is a fraction of the pair's mean cost, which is {scale:g} here (the clouds "
                "coincide, or the costs are not positive); give an absolute --eps instead",
            )
        return self.check_eps(self.eps_rel * scale, "--eps-rel")

    def with_(self, **changes: Any) -> SolveConfig:
        """A copy with some fields changed (no re-check: for internal use, e.g. tests)."""
        return replace(self, **changes)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers: a resumed batch must use the same ones.

        ``rho_a``/``rho_b`` appear only when set, so balanced runs keep their fingerprint."""
        return {
            "eps": self.eps, "eps_rel": self.eps_rel, "cost": self.cost.name,
            "p": self.cost.p if self.cost.name == "pnorm" else None,
            "max_iter": self.max_iter, "tol": self.tol, "scaling": self.scaling,
            "dtype": self.dtype,
            **{k: v for k, v in (("rho_a", self.rho_a), ("rho_b", self.rho_b)) if v is not None},
        }  # fmt: skip


@dataclass(frozen=True)
class ReadOptions:
    """Which columns of a file are coordinates (``None``: every numeric one), which to leave
    out (``exclude``), which holds per-point masses (``None``: uniform) and which holds the
    points' ids (``id_column``: read as text, never a coordinate). Columns are names, 0-based
    indices or inclusive index ranges (``"2-5"``, ``"3-"``)."""

    columns: tuple[str, ...] | None = None
    weights: str | None = None
    exclude: tuple[str, ...] | None = None
    id_column: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "columns": list(self.columns) if self.columns is not None else None,
            "weights": self.weights,
        }
        if self.exclude is not None:  # only when set: journals written before it still resume
            out["exclude"] = list(self.exclude)
        return out


def make_config(
    *,
    eps: float | None = None,
    eps_rel: float | None = None,
    cost: str | CostFn | Callable[..., Any] = "sqeuclidean",
    p: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float | None = None,
    scaling: float | None = 0.5,
    device: str = "auto",
    dtype: str = "float32",
    geometry: str = "auto",
    memory: int | None = None,
    check_every: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: str | int | None = None,
    reach: float | None = None,
    reach_a: float | None = None,
    reach_b: float | None = None,
    rho: float | None = None,
    rho_a: float | None = None,
    rho_b: float | None = None,
) -> SolveConfig:
    """Check every option once and resolve the defaults that depend on others.

    ``cost`` is a registered name, a cost object or a function of batched points (see
    :func:`otcli.costs.as_cost`). The unbalanced options (:func:`marginal_penalties`) give
    both sides (``reach``, ``rho``) or one side each (``reach_a``, ``rho_b``...).

    Raises :class:`~otcli.errors.OptionError` (or its ``DeviceError``) naming the option:
    the first bad value, with what was received and what would do.
    """
    from otcli.costs import as_cost
    from otcli.device import pick_device, pick_dtype, resolve_threads

    cost_fn = as_cost(cost, p)
    rho_a, rho_b = marginal_penalties(
        cost_fn, reach=reach, reach_a=reach_a, reach_b=reach_b, rho=rho, rho_a=rho_a, rho_b=rho_b
    )
    if eps is not None and eps_rel is not None:
        raise OptionError("--eps-rel", "give --eps (absolute) or --eps-rel (relative), not both")
    if eps_rel is not None:
        eps_rel = _check_eps(eps_rel, "--eps-rel")
    elif eps is None:
        eps = DEFAULT_EPS
    if eps is not None:
        eps = _check_eps(eps, "--eps")
    if isinstance(max_iter, bool) or not (isinstance(max_iter, int) and max_iter >= 1):
        raise OptionError("--max-iter", f"must be a positive integer, got {max_iter}")
    dev = pick_device(device)
    if not isinstance(dtype, str) and str(dtype).startswith("torch."):  # torch.float64
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise OptionError("--dtype", f"unknown dtype {dtype!r}; use float32 or float64")
    pick_dtype(dtype, dev)
    tol = DEFAULT_TOL[dtype] if tol is None else float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise OptionError("--tol", f"must be a finite number ≥ 0, got {tol}")
    if tol > MAX_TOL:
        raise OptionError(
            "--tol",
            f"must be at most {MAX_TOL:g}, got {tol:g}: a marginal error of 1 already leaves "
            "half the mass misplaced",
        )
    if scaling is not None and not (0 < scaling < 1):
        raise OptionError("--scaling", f"must lie strictly between 0 and 1, got {scaling}")
    if geometry not in GEOMETRIES:
        raise OptionError(
            "--geometry", f"unknown geometry {geometry!r}; use auto, dense, online or multiscale"
        )
    if memory is not None and not (isinstance(memory, int) and memory > 0):
        raise OptionError("--memory", f"must be a positive number of bytes, got {memory}")
    if memory is not None and memory > MAX_MEMORY:
        raise OptionError("--memory", f"must be at most 1 EiB (2^60 bytes), got {memory:.3g} bytes")
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 10  # on CPU a check costs no device sync
    if check_every < 1:
        raise OptionError("check_every", f"must be ≥ 1, got {check_every}")
    if max_batch < 1:
        raise OptionError("--max-batch", f"must be ≥ 1, got {max_batch}")
    return SolveConfig(
        cost=cost_fn, eps=eps, eps_rel=eps_rel,
        max_iter=max_iter, tol=tol, scaling=scaling,
        device=str(dev), dtype=dtype, geometry=geometry, memory=memory,
        check_every=check_every, max_batch=max_batch, rho_a=rho_a, rho_b=rho_b,
        threads=resolve_threads(threads),
    )  # fmt: skip


def marginal_penalties(
    cost_fn: CostFn,
    *,
    reach: float | None = None,
    reach_a: float | None = None,
    reach_b: float | None = None,
    rho: float | None = None,
    rho_a: float | None = None,
    rho_b: float | None = None,
) -> tuple[float | None, float | None]:
    """(ρ_a, ρ_b) from the unbalanced options; None keeps a side balanced.

    ``rho*`` are penalties in cost units; ``reach*`` are distances in the points' units,
    ρ = reach^p for a cost that is a p-th power of a distance (GeomLoss's convention:
    p = 2 for sqeuclidean, 1 for euclidean and cityblock, p for pnorm). Each side takes one
    value: from a both-sides option (``reach`` or ``rho``) or from its own options, not both.
    """
    given = {
        "--reach": reach, "--reach-a": reach_a, "--reach-b": reach_b,
        "--rho": rho, "--rho-a": rho_a, "--rho-b": rho_b,
    }  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    for option, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(option, f"must be a positive finite number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            what = "a distance" if option.startswith("--reach") else "a penalty"
            raise OptionError(
                option, f"must be a positive finite number ({what}; leave it out for "
                f"balanced OT), got {value}"
            )  # fmt: skip
    both = [k for k in ("--reach", "--rho") if k in given]
    sides = [k for k in ("--reach-a", "--rho-a", "--reach-b", "--rho-b") if k in given]
    if len(both) > 1:
        raise OptionError("--rho", "give --reach or --rho, not both")
    if both and sides:
        raise OptionError(sides[0], f"give {both[0]} (both sides) or per-side options, not both")
    for side in "ab":
        if f"--reach-{side}" in given and f"--rho-{side}" in given:
            raise OptionError(f"--rho-{side}", f"give --reach-{side} or --rho-{side}, not both")
    reaches = [k for k in given if k.startswith("--reach")]
    if reaches and cost_fn.power is None:
        raise OptionError(
            reaches[0],
            f"the {cost_fn.describe()} cost is not a power of a distance, so a reach has no "
            f"penalty; give ρ itself with {reaches[0].replace('reach', 'rho')}",
        )

    def side(s: str) -> float | None:
        option = "--reach" if "--reach" in given else f"--reach-{s}"
        if option in given:
            reach, power = float(given[option]), cost_fn.power
            try:
                value = reach**power  # type: ignore[operator]
            except OverflowError:
                value = math.inf
            if not (math.isfinite(value) and value > 0):
                raise OptionError(option, f"ρ = {reach:g}^{power:g} is out of range ({value:g})")
            return value
        value = given.get("--rho", given.get(f"--rho-{s}"))
        return None if value is None else float(value)

    return side("a"), side("b")


def make_read_options(
    columns: Sequence[str] | None = None,
    weights: str | None = None,
    exclude: Sequence[str] | None = None,
    id_column: str | None = None,
) -> ReadOptions:
    """Reader options from lists of column names/indices/ranges and the weight and id columns."""
    return ReadOptions(
        None if columns is None else tuple(columns),
        weights,
        None if exclude is None else tuple(exclude),
        id_column,
    )


def eps_values(
    config: SolveConfig, eps: float | Sequence[float] | None, count: int
) -> list[float | None]:
    """One checked ε per problem: a number → that, a list → its own, ``None`` → ``None``,
    which a solve reads as the config's (absolute, or relative to each pair's mean cost)."""
    if eps is None:
        return [None] * count
    if is_one_value(eps):
        return [_check_eps(eps, "--eps")] * count
    try:
        items = list(eps)  # type: ignore[call-overload]
    except TypeError:
        raise OptionError("--eps", f"ε must be a number or one per pair, got {eps!r}") from None
    values = [_check_eps(e, "--eps") for e in items]
    if len(values) != count:
        raise OptionError("--eps", f"{len(values)} ε values for {count} pairs")
    return values


def is_one_value(value: object) -> bool:
    """Whether ``value`` is one number rather than a list of them: a Python number or text,
    or anything 0-dimensional (a numpy scalar, a 0-d array or torch tensor)."""
    return isinstance(value, (int, float, str, bytes)) or getattr(value, "ndim", None) == 0


def _check_eps(eps: object, option: str) -> float:
    detach = getattr(eps, "detach", None)
    if callable(detach):  # a torch tensor: its value, without autograd's warning
        eps = detach()
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(option, f"ε must be a positive finite number, got {eps!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise OptionError(option, f"ε must be a positive finite number, got {value}")
    if value < MIN_EPS:
        raise OptionError(
            option, f"ε = {value:g} is too small to compute with (1/ε overflows); use ε ≥ 1e-300"
        )
    return value


__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_ITER",
    "DEFAULT_OUTER_ITER",
    "DEFAULT_OUTER_TOL",
    "DEFAULT_TOL",
    "DTYPES",
    "EPS_REL_CEILING",
    "EPS_REL_FLOOR",
    "GEOMETRIES",
    "MAX_MEMORY",
    "MAX_TOL",
    "MIN_EPS",
    "ReadOptions",
    "SolveConfig",
    "dense_bytes",
    "eps_values",
    "is_one_value",
    "make_config",
    "make_read_options",
    "marginal_penalties",
]

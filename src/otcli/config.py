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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from otcli.errors import OptionError

if TYPE_CHECKING:
    import torch

    from otcli.costs import CostFn

#: Geometries a user can ask for: ``dense`` (C in memory), ``online`` (O(n + m)), ``auto``.
GEOMETRIES = ("auto", "dense", "online")
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
    - ``geometry``: ``auto``, ``dense`` or ``online``; ``memory``: the byte budget for n×m
      buffers as the user gave it (``None``: half the device's free memory, read when a solve
      needs it, see :meth:`memory_budget`).
    - ``max_batch``: most problems per batched solve.
    """

    cost: CostFn
    eps: float | None = DEFAULT_EPS
    eps_rel: float | None = None
    max_iter: int = 1000
    tol: float = DEFAULT_TOL["float32"]
    scaling: float | None = 0.5
    device: str = "cpu"
    dtype: str = "float32"
    geometry: str = "auto"
    memory: int | None = None
    check_every: int = 1
    max_batch: int = DEFAULT_MAX_BATCH

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
        from otcli.buckets import bucket_entries

        budget = self.memory_budget() if budget is None else budget
        return bucket_entries(budget, DENSE_MATRICES * self.itemsize)

    def check_eps(self, eps: float, option: str = "--eps") -> float:
        """One ε value (the default or a per-problem override), refused unless usable."""
        return _check_eps(eps, option)

    def with_(self, **changes: Any) -> SolveConfig:
        """A copy with some fields changed (no re-check: for internal use, e.g. tests)."""
        return replace(self, **changes)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers: a resumed batch must use the same ones."""
        return {
            "eps": self.eps, "eps_rel": self.eps_rel, "cost": self.cost.name,
            "p": self.cost.p if self.cost.name == "pnorm" else None,
            "max_iter": self.max_iter, "tol": self.tol, "scaling": self.scaling,
            "dtype": self.dtype,
        }  # fmt: skip


@dataclass(frozen=True)
class ReadOptions:
    """Which columns of a file are coordinates (``None``: every numeric one) and which holds
    per-point masses (``None``: uniform)."""

    columns: tuple[str, ...] | None = None
    weights: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns) if self.columns is not None else None,
            "weights": self.weights,
        }


def make_config(
    *,
    eps: float | None = None,
    eps_rel: float | None = None,
    cost: str | CostFn = "sqeuclidean",
    p: float | None = None,
    max_iter: int = 1000,
    tol: float | None = None,
    scaling: float | None = 0.5,
    device: str = "auto",
    dtype: str = "float32",
    geometry: str = "auto",
    memory: int | None = None,
    check_every: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> SolveConfig:
    """Check every option once and resolve the defaults that depend on others.

    Raises :class:`~otcli.errors.OptionError` (or its ``DeviceError``) naming the option:
    the first bad value, with what was received and what would do.
    """
    from otcli.costs import CostFn as _CostFn
    from otcli.costs import get_cost
    from otcli.device import pick_device, pick_dtype

    cost_fn = cost if isinstance(cost, _CostFn) else get_cost(cost, p)
    if eps is not None and eps_rel is not None:
        raise OptionError("--eps-rel", "give --eps (absolute) or --eps-rel (relative), not both")
    if eps_rel is not None:
        _check_eps(eps_rel, "--eps-rel")
    elif eps is None:
        eps = DEFAULT_EPS
    if eps is not None:
        eps = _check_eps(eps, "--eps")
    if isinstance(max_iter, bool) or not (isinstance(max_iter, int) and max_iter >= 1):
        raise OptionError("--max-iter", f"must be a positive integer, got {max_iter}")
    dev = pick_device(device)
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
        raise OptionError("--geometry", f"unknown geometry {geometry!r}; use auto, dense or online")
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
        cost=cost_fn, eps=eps, eps_rel=None if eps_rel is None else float(eps_rel),
        max_iter=max_iter, tol=tol, scaling=scaling,
        device=str(dev), dtype=dtype, geometry=geometry, memory=memory,
        check_every=check_every, max_batch=max_batch,
    )  # fmt: skip


def make_read_options(
    columns: Sequence[str] | None = None, weights: str | None = None
) -> ReadOptions:
    """Reader options from a list of column names/indices and a weight column name."""
    return ReadOptions(None if columns is None else tuple(columns), weights)


def eps_values(
    config: SolveConfig, eps: float | Sequence[float] | None, count: int
) -> list[float | None]:
    """One checked ε per problem: a number → that, a list → its own, ``None`` → ``None``,
    which a solve reads as the config's (absolute, or relative to each pair's mean cost)."""
    if eps is None:
        return [None] * count
    if isinstance(eps, (int, float)):
        return [_check_eps(eps, "--eps")] * count
    values = [_check_eps(e, "--eps") for e in eps]
    if len(values) != count:
        raise OptionError("--eps", f"{len(values)} ε values for {count} pairs")
    return values


def _check_eps(eps: object, option: str) -> float:
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
    "DEFAULT_TOL",
    "DTYPES",
    "EPS_REL_FLOOR",
    "GEOMETRIES",
    "MAX_MEMORY",
    "MAX_TOL",
    "MIN_EPS",
    "ReadOptions",
    "SolveConfig",
    "dense_bytes",
    "eps_values",
    "make_config",
    "make_read_options",
]

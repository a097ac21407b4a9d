"""Ground costs C(x, y) as registered classes: adding a cost is writing one class.

Each cost class carries everything the rest of otcli asks of a cost, so nothing else switches
on cost names: its ``name`` (the ``--cost`` value), whether it takes ``p``, whether it is
translation invariant, ``describe()``, the batched cost itself (``x`` of shape ``(B, n, d)``
and ``y`` of shape ``(B, m, d)`` to ``(B, n, m)``), a lower bound between bounding boxes (what
block-sparse pruning needs; None where a cost has none), whether the fused squared-Euclidean
product may stand in for it, and which inputs it refuses. ``@_register`` puts the class in
the one registry that ``get_cost``, ``COST_NAMES`` and the CLI's choices are built from.
A function of batched points (``otcli.solve(x, y, cost=fn)``) is wrapped in the unregistered
:class:`CallableCost`, which claims none of those properties (see :func:`as_cost`).

The same ``__call__`` serves the dense geometry (whole clouds) and the block-wise ones (slices
of the clouds), so there is one definition of each cost. Accuracy over speed where they
conflict: for low dimensions the squared distance is summed coordinate by coordinate (no
``|x|² + |y|² − 2x·y`` cancellation); for high dimensions the matrix-product form is used on
centred clouds, in the working dtype, with TF32 off.

torch and numpy are imported where they are used, not at import: the CLI builds its
``--cost`` choices from ``COST_NAMES``, and ``otdist --help`` must not load torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from otcli.errors import InputError, OptionError

if TYPE_CHECKING:
    import torch

# Above this dimension the coordinate loop costs more than a matrix product.
_LOOP_MAX_DIM = 16


class _ByName(type):
    """Lets ``CostFn(name)`` / ``CostFn(name, p)`` build the registered class of that name."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is not CostFn:
            return super().__call__(*args, **kwargs)
        name, *rest = args
        found = _lookup(name)
        return found(*rest, **kwargs) if found.takes_p else found()


@dataclass(frozen=True)
class CostFn(metaclass=_ByName):
    """A ground cost. Subclass it (a frozen dataclass) and decorate with ``@_register``.

    ``CostFn("pnorm", 3.0)`` is ``PNorm(3.0)``: the base class looks names up, so code that
    built costs by name keeps working.
    """

    name: ClassVar[str]
    takes_p: ClassVar[bool] = False  # only such costs accept ``--p``
    translation_invariant: ClassVar[bool] = True  # C(x + t, y + t) = C(x, y): may centre
    symmetric: ClassVar[bool] = True  # C(x, y) = C(y, x): a block of Cᵀ is C(y, x)
    # A formula of coordinates, so its range can be probed at the pair's bounding box
    # (api.check_cost_range); a function or a matrix given by the user cannot be.
    coordinate_formula: ClassVar[bool] = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, n, d) × (B, m, d) → (B, n, m)."""
        raise NotImplementedError

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The same (B, n, m) costs in operations autograd differentiates (no in-place or
        ``out=`` work, a (B, n, m, d) temporary), with a zero gradient where the exact one
        is undefined (coinciding points of a root or a power below 1): for the loss's
        gradient, block by block (:mod:`otcli.loss`)."""
        raise NotImplementedError(f"{self.describe()} has no differentiable form")

    def describe(self) -> str:
        return self.name

    @property
    def power(self) -> float | None:
        """p where C is a p-th power of a distance, else None. A reach R (a distance, in the
        points' units) then sets the marginal penalty ρ = R^p (GeomLoss's convention)."""
        return None

    def whole(self, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """The whole (B, n, m) cost of the points in ``dtype`` where the cost holds it already
        (a precomputed matrix), else None: the dense geometries then build it. Read only."""
        return None

    @property
    def fused_sqeuclidean(self) -> bool:
        """True where C is Σ_k (x_k − y_k)²: the online geometry may then get its exponents
        from one matrix product (|x|² + |y|² − 2x·y) instead of evaluating C."""
        return False

    def box_lower(
        self, lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor
    ) -> torch.Tensor | None:
        """(La, Lb): a lower bound of C(x, y) for x in box I of ``a`` and y in box J of ``b``.

        Boxes are given by corners ``lo``/``hi`` (L, d). None: no such bound, and then the
        block-sparse reductions (which prune by it) are not used for this cost.
        """
        return None

    @property
    def has_box_lower(self) -> bool:
        """Whether :meth:`box_lower` gives a bound: a class that has one overrides it."""
        return type(self).box_lower is not CostFn.box_lower

    def check_points(self, points: object, source: str) -> None:
        """Raise :class:`InputError` for points this cost cannot handle (default: none)."""


_REGISTRY: dict[str, type[CostFn]] = {}
_C = TypeVar("_C", bound=type[CostFn])


def _register(cls: _C) -> _C:
    """Add a cost class to the registry, in definition order (the order of ``COST_NAMES``)."""
    _REGISTRY[cls.name] = cls
    return cls


def _lookup(name: str) -> type[CostFn]:
    if name not in _REGISTRY:
        raise OptionError("--cost", f"unknown cost {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _box_gaps(
    lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor, p: float
) -> torch.Tensor:
    """(La, Lb): Σ_k gap_k^p, gap_k the distance between boxes I and J along coordinate k.

    Every |x_k − y_k| with x in I and y in J is at least gap_k, so this bounds Σ_k |x_k − y_k|^p.
    """
    import torch

    near = torch.zeros((lo_a.shape[0], lo_b.shape[0]), dtype=torch.float64)
    for k in range(lo_a.shape[1]):
        gap = torch.maximum(
            lo_b[None, :, k] - hi_a[:, None, k], lo_a[:, None, k] - hi_b[None, :, k]
        )
        near += gap.clamp_(min=0).pow_(p)
    return near


@_register
@dataclass(frozen=True)
class SqEuclidean(CostFn):
    """C = Σ_k (x_k − y_k)²."""

    name: ClassVar[str] = "sqeuclidean"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _sqeuclidean(x, y)

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _diff(x, y).square().sum(-1)

    @property
    def power(self) -> float | None:
        return 2.0

    @property
    def fused_sqeuclidean(self) -> bool:
        return True

    def box_lower(
        self, lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor
    ) -> torch.Tensor | None:
        return _box_gaps(lo_a, hi_a, lo_b, hi_b, 2.0)


@_register
@dataclass(frozen=True)
class Euclidean(CostFn):
    """C = (Σ_k (x_k − y_k)²)^½."""

    name: ClassVar[str] = "euclidean"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _sqeuclidean(x, y).sqrt_()

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _safe_power(_diff(x, y).square().sum(-1), 0.5)

    @property
    def power(self) -> float | None:
        return 1.0

    def box_lower(
        self, lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor
    ) -> torch.Tensor | None:
        return _box_gaps(lo_a, hi_a, lo_b, hi_b, 2.0).sqrt_()


@_register
@dataclass(frozen=True)
class Cityblock(CostFn):
    """C = Σ_k |x_k − y_k|."""

    name: ClassVar[str] = "cityblock"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _cityblock(x, y)

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _diff(x, y).abs().sum(-1)

    @property
    def power(self) -> float | None:
        return 1.0

    def box_lower(
        self, lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor
    ) -> torch.Tensor | None:
        return _box_gaps(lo_a, hi_a, lo_b, hi_b, 1.0)


@_register
@dataclass(frozen=True)
class Cosine(CostFn):
    """C = 1 − cos∠(x, y), in [0, 2]. Not translation invariant; a box gives no bound."""

    name: ClassVar[str] = "cosine"
    translation_invariant: ClassVar[bool] = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xn = x / x.norm(dim=-1, keepdim=True)
        yn = y / y.norm(dim=-1, keepdim=True)
        return (1 - _no_tf32_matmul(xn, yn)).clamp_(0, 2)

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xn = x / x.norm(dim=-1, keepdim=True)
        yn = y / y.norm(dim=-1, keepdim=True)
        return (1 - xn @ yn.transpose(-1, -2)).clamp(0, 2)

    def check_points(self, points: object, source: str) -> None:
        """A zero vector has no direction, hence no cosine distance."""
        import numpy as np

        norms = np.linalg.norm(np.asarray(points), axis=-1)
        if (norms == 0).any():
            i = int(np.flatnonzero(norms == 0)[0])
            raise InputError(
                source, f"point {i} (0-based) is the zero vector, which has no cosine distance"
            )


@_register
@dataclass(frozen=True)
class PNorm(CostFn):
    """C = Σ_k |x_k − y_k|^p (p = 2: squared Euclidean, p = 1: cityblock, computed as those)."""

    name: ClassVar[str] = "pnorm"
    takes_p: ClassVar[bool] = True
    p: float = 2.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch

        p = self.p
        if p == 2.0:
            return _sqeuclidean(x, y)
        if p == 1.0:
            return _cityblock(x, y)
        if x.shape[-1] <= _LOOP_MAX_DIM:
            return _sum_over_coords(x, y, lambda t: t.abs_().pow_(p))
        return torch.cdist(x, y, p=p).pow_(p)

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _safe_power(_diff(x, y).abs(), self.p).sum(-1)

    def describe(self) -> str:
        return f"pnorm(p={self.p:g})"

    @property
    def power(self) -> float | None:
        return self.p

    @property
    def fused_sqeuclidean(self) -> bool:
        return self.p == 2.0

    def box_lower(
        self, lo_a: torch.Tensor, hi_a: torch.Tensor, lo_b: torch.Tensor, hi_b: torch.Tensor
    ) -> torch.Tensor | None:
        return _box_gaps(lo_a, hi_a, lo_b, hi_b, self.p)


COST_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _diff(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x_i − y_j, (B, n, m, d)."""
    return x[:, :, None, :] - y[:, None, :, :]


def _safe_power(t: torch.Tensor, p: float) -> torch.Tensor:
    """t^p for t ≥ 0, with gradient 0 (not inf or NaN) where t = 0 and p < 1."""
    import torch

    positive = t > 0
    return torch.where(positive, torch.where(positive, t, 1.0).pow(p), 0.0)


@dataclass(frozen=True)
class CallableCost(CostFn):
    """A cost of your own: ``fn(x, y)`` maps batched points (B, n, d) × (B, m, d) to the
    costs (B, n, m), as a tensor of the points' dtype on their device.

    The dense geometries call it once on whole clouds (in row blocks), the online geometry
    on row blocks of the clouds at every half-step, so it must compute each C_ij from x_i
    and y_j alone, and return a new tensor (the solver scales it in place). What a named
    cost declares, a function cannot, so nothing is assumed: points reach it uncentred (not
    translation invariant), a block of Cᵀ is a block of C transposed (not symmetric), there
    is no box bound (no block-sparse pruning: the online geometry computes every entry), no
    fused squared-Euclidean product, and no power of a distance (give ``rho``, not ``reach``).
    """

    coordinate_formula: ClassVar[bool] = False
    name: ClassVar[str] = "callable"
    translation_invariant: ClassVar[bool] = False
    symmetric: ClassVar[bool] = False
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch

        out = self.fn(x, y)
        shape = (x.shape[0], x.shape[1], y.shape[1])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out)
            raise OptionError(
                "cost",
                f"{self.describe()} returned {got} for points {tuple(x.shape)} × "
                f"{tuple(y.shape)}; it must return a tensor of shape {shape}",
            )
        return out.to(device=x.device, dtype=x.dtype).contiguous()

    def differentiable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self(x, y)  # the user's own torch code: autograd follows it

    def describe(self) -> str:
        return f"callable({getattr(self.fn, '__name__', type(self.fn).__name__)})"


def as_cost(cost: str | CostFn | Callable[..., Any], p: float | None = None) -> CostFn:
    """A cost object from a registered name (with its ``p``), a cost object (as is), or a
    function of batched points (wrapped in :class:`CallableCost`)."""
    if isinstance(cost, CostFn):
        return cost
    if callable(cost):
        if p is not None:
            raise OptionError("--p", "--p applies to --cost pnorm only, not to a cost function")
        return CallableCost(cost)
    return get_cost(cost, p)


def get_cost(name: str, p: float | None = None) -> CostFn:
    """Look a cost up by name, checking ``p`` (only costs that take one; default 2)."""
    cls = _lookup(name)
    if p is None:
        return cls()
    if not cls.takes_p:
        takers = " / ".join(n for n, c in _REGISTRY.items() if c.takes_p)
        raise OptionError("--p", f"--p applies to --cost {takers} only (got --cost {name})")
    if not (math.isfinite(p) and p > 0):
        raise OptionError("--p", f"p must be a positive finite number, got {p}")
    return cls(float(p))  # type: ignore[call-arg]


def working_cost(
    cost_fn: CostFn, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """C in the solver's dtype, from the (centred) points rounded to that dtype.

    Every part of a solve (the loop, the final statistics, ``plan()``) derives C this way,
    so the reported cost and marginal error describe exactly the plan a user gets back; in
    float32 at small ε, deriving C another way would shift P by ulp(C)/ε. Low-dimensional
    costs are elementwise, hence bit-for-bit the same on every device and block shape.
    """
    return cost_fn(x.to(dtype), y.to(dtype))


def check_points_for_cost(cost: CostFn, points: object, source: str) -> None:
    """Refuse inputs a cost cannot handle (a zero vector has no direction for ``cosine``)."""
    cost.check_points(points, source)


# --- the computations the cost classes share ----------------------------------------------


def _sum_over_coords(
    x: torch.Tensor, y: torch.Tensor, term: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Σ_k term(x_ik − y_jk) without a (B, n, m, d) temporary.

    ``term`` works in place on its argument; the terms are added in coordinate order, so the
    result does not depend on how the clouds are sliced into blocks.
    """
    import torch

    out = term(torch.sub(x[:, :, None, 0], y[:, None, :, 0]))  # (B, n, m)
    if x.shape[-1] > 1:
        tmp = torch.empty_like(out)
        for k in range(1, x.shape[-1]):
            out += term(torch.sub(x[:, :, None, k], y[:, None, :, k], out=tmp))
    return out


def _no_tf32_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torch

    if x.is_cuda:
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return x @ y.transpose(-1, -2)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    return x @ y.transpose(-1, -2)


def _sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torch

    if x.shape[-1] <= _LOOP_MAX_DIM:
        return _sum_over_coords(x, y, torch.Tensor.square_)
    # Centre on a common point first: the expansion loses digits when |x| ≫ |x − y|.
    centre = 0.5 * (x.mean(dim=1, keepdim=True) + y.mean(dim=1, keepdim=True))
    xc, yc = x - centre, y - centre
    sq = (xc * xc).sum(-1)[:, :, None] + (yc * yc).sum(-1)[:, None, :]  # (B, n, m)
    return (sq - 2 * _no_tf32_matmul(xc, yc)).clamp_(min=0)


def _cityblock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torch

    if x.shape[-1] <= _LOOP_MAX_DIM:
        return _sum_over_coords(x, y, torch.Tensor.abs_)
    return torch.cdist(x, y, p=1.0)

"""A point cloud with masses, validated once, and padded batches of clouds.

A :class:`Cloud` is what every reader returns and what the solver consumes: ``points`` is an
``(n, d)`` float64 array, ``weights`` an ``(n,)`` float64 array summing to 1. Validation happens
here, in one place, so the solver can trust its input. A cloud also remembers what it was read
from (the column labels of its coordinates, the points' own ids, and the reader's notes), so the
output can say which columns were used and couplings can name points by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from otcli.errors import InputError


@dataclass(frozen=True)
class Cloud:
    """``n`` points in ``d`` dimensions with relative masses normalised to sum 1.

    ``source`` names where the cloud came from (a path, ``<stdin>``, ``<array>``) so that
    errors found later can still point at the file. ``columns`` labels the ``d`` coordinates
    (header names, or 0-based indices as text: ``"0"``, ``"1"``...). ``ids`` holds each point's
    id as text (an ``--id`` column), or is empty when the points have none. ``notes`` are what
    the reader decided on its own and the user should hear (e.g. a pandas index column dropped).
    """

    points: np.ndarray
    weights: np.ndarray
    source: str = field(default="<array>")
    columns: tuple[str, ...] = ()
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """Sizes and source, never the arrays (``points`` and ``weights`` hold them)."""
        return f"Cloud(n={self.n}, dim={self.dim}, source={self.source!r})"

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])


def make_cloud(
    points: object,
    weights: object | None = None,
    source: str = "<array>",
    *,
    columns: Sequence[str] | None = None,
    ids: Sequence[str] | np.ndarray | None = None,
    notes: Sequence[str] = (),
) -> Cloud:
    """Validate points (``(n, d)``, or ``(n,)`` for 1-D data) and weights into a :class:`Cloud`.

    Weights are relative masses: non-negative, finite, not all zero; they are normalised
    to sum 1. ``None`` means uniform. ``columns`` labels the coordinates (default ``"0"``,
    ``"1"``, ...); ``ids`` gives each point an id (text); ``notes`` are the reader's remarks.
    """
    if isinstance(points, Cloud):
        if weights is None:
            return points
        c = points
        return make_cloud(c.points, weights, c.source, columns=c.columns, ids=c.ids, notes=c.notes)
    x = real_values(points, source, "points").astype(np.float64, copy=False)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InputError(
            source, f"points must be a 2-D array (n points × d coordinates), got shape {x.shape}"
        )
    n, d = x.shape
    if n == 0:
        raise InputError(source, "no points (the cloud is empty)")
    if d == 0:
        raise InputError(source, "points have no coordinates (0 columns)")
    check_finite(x, source, "clean the data or drop those rows")
    w = _normalised_weights(weights, n, source)
    x = np.array(x, order="C")  # our own copy: freezing it must not freeze the caller's array
    x.setflags(write=False)
    w.setflags(write=False)
    labels = tuple(str(k) for k in range(d)) if columns is None else tuple(map(str, columns))
    if len(labels) != d:
        raise InputError(source, f"{len(labels)} column labels for {d} coordinates")
    id_array = np.empty(0, dtype=str) if ids is None else np.array(ids, dtype=str)
    if id_array.size and id_array.shape != (n,):
        raise InputError(source, f"expected {n} point ids (one per point), got {id_array.shape}")
    id_array.setflags(write=False)
    return Cloud(
        points=x, weights=w, source=source, columns=labels, ids=id_array, notes=tuple(notes)
    )


def real_values(values: object, source: str, what: str) -> np.ndarray:
    """``values`` (an array, a torch tensor, nested lists) as a numpy array of real numbers,
    for ``what`` (points, weights, costs) from ``source``; InputError otherwise.

    Tensors are read as they are: detached from autograd (a solve returns numbers, not a
    graph) and copied to the host. Complex numbers are refused rather than cut to their
    real part, and object arrays rather than guessed at: both were numpy's silent (or
    warned-only) conversions, and neither is a coordinate a user meant.
    """
    detach = getattr(values, "detach", None)
    if callable(detach):  # a torch tensor, without importing torch here
        tensor = detach().cpu()
        if tensor.is_complex():
            raise InputError(source, f"{what} are complex ({tensor.dtype}); {_REAL_ONLY}")
        values = tensor.double().numpy()  # bfloat16 and friends have no numpy dtype
    try:
        array = np.asarray(values)  # no dtype: a complex array stays complex, to be refused
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"{what} are not numeric ({exc})") from None
    if array.dtype.kind == "c":
        raise InputError(source, f"{what} are complex ({array.dtype}); {_REAL_ONLY}")
    if array.dtype.kind == "O":
        raise InputError(
            source,
            f"{what} are Python objects (an object array), not numbers; convert them first, "
            "e.g. with .astype(float)",
        )
    if array.dtype.kind not in "biuf":
        try:  # text digits, as numpy reads them ('1.5')
            return np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(source, f"{what} are not numeric ({exc})") from None
    return array


_REAL_ONLY = "otcli takes real numbers: pass .real, or the real and imaginary parts as two columns"


def check_finite(x: np.ndarray, source: str, fix: str) -> None:
    """Raise :class:`InputError` naming the first non-finite coordinate of (n, d) ``x``."""
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(
            source, f"non-finite coordinate {x[i, j]} at point {i} (0-based), coordinate {j}; {fix}"
        )


def _normalised_weights(weights: object | None, n: int, source: str) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = real_values(weights, source, "weights").astype(np.float64, copy=False)
    if w.ndim == 2 and 1 in w.shape:
        w = w.reshape(-1)
    if w.shape != (n,):
        raise InputError(source, f"expected {n} weights (one per point), got shape {w.shape}")
    if not np.isfinite(w).all():
        i = int(np.flatnonzero(~np.isfinite(w))[0])
        raise InputError(source, f"non-finite weight {w[i]} at point {i} (0-based)")
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise InputError(
            source, f"negative weight {w[i]} at point {i} (0-based); masses must be ≥ 0"
        )
    with np.errstate(over="ignore"):
        total = w.sum()
    if np.isinf(total):  # each mass finite but the sum is not (1e308 each): scale first
        w = w / w.max()
        total = w.sum()
    if not total > 0:
        raise InputError(source, "all weights are zero; at least one point needs positive mass")
    return w / total


def as_cloud_list(clouds: object, weights: object | None, what: str) -> tuple[list[Cloud], bool]:
    """Accept one cloud or a list of clouds; say whether it was a list (a batch).

    The rule: a list or tuple is a batch when one of its items is a cloud of its own, that
    is a :class:`Cloud`, an array or tensor of any shape (``[a, b]`` with 1-D arrays ``a``,
    ``b`` is two 1-D clouds, even of equal length), or a nested list of 2-D points. A list
    of numbers, or of lists of numbers, is one cloud's points, as numpy reads it; so is an
    array of one or two dimensions. A 3-D array or tensor (B, n, d) is B clouds of n points
    (the mini-batch layout of PyTorch code), its weights then (B, n).
    """
    if getattr(clouds, "ndim", 0) == 3:
        clouds = list(clouds)  # type: ignore[call-overload]
        if weights is not None and getattr(weights, "ndim", 0) == 2:
            weights = list(weights)  # type: ignore[call-overload]
    is_batch = (
        isinstance(clouds, Sequence)
        and not isinstance(clouds, (str, bytes))
        and (len(clouds) == 0 or any(_is_one_cloud(c) for c in clouds))
    )
    if not is_batch:
        return [make_cloud(clouds, weights, what)], False
    if len(clouds) == 0:
        raise InputError(what, "empty list of clouds")
    if weights is None:
        ws: Sequence[object | None] = [None] * len(clouds)
    else:
        ws = list(weights)  # type: ignore[call-overload]
        if len(ws) != len(clouds):
            raise InputError(what, f"{len(clouds)} clouds but {len(ws)} weight vectors")
    out = []
    for k, (c, w) in enumerate(zip(clouds, ws, strict=True)):
        src = c.source if isinstance(c, Cloud) else f"{what}[{k}]"
        out.append(make_cloud(c, w, src))
    return out, True


def _is_one_cloud(item: object) -> bool:
    """Whether a list item is a cloud by itself (see :func:`as_cloud_list`)."""
    if isinstance(item, Cloud) or getattr(item, "ndim", 0) >= 1:  # arrays, tensors, frames
        return True
    try:
        return isinstance(item, Sequence) and np.ndim(item) == 2
    except ValueError:  # ragged nesting: one cloud's rows, refused when it is read
        return False


@dataclass(frozen=True)
class PaddedBatch:
    """Clouds of different sizes stacked into ``(B, n_max, d)``, padding weighted ``-inf``.

    Padding repeats the cloud's first point (so every cost stays finite, even ``cosine``);
    its log-weight of ``-inf`` removes it from every sum, so it never carries mass.
    ``sizes`` keeps each cloud's true length.
    """

    points: np.ndarray  # (B, n_max, d)
    log_weights: np.ndarray  # (B, n_max), -inf on padding
    sizes: np.ndarray  # (B,)


def pad_clouds(clouds: Sequence[Cloud]) -> PaddedBatch:
    """Stack clouds of one dimension into a padded batch."""
    dims = {c.dim for c in clouds}
    if len(dims) != 1:
        raise InputError(clouds[0].source, f"clouds in one batch have different dimensions {dims}")
    d = dims.pop()
    sizes = np.array([c.n for c in clouds], dtype=np.int64)
    n_max = int(sizes.max())
    pts = np.zeros((len(clouds), n_max, d))
    logw = np.full((len(clouds), n_max), -np.inf)
    for k, c in enumerate(clouds):
        pts[k, : c.n] = c.points
        pts[k, c.n :] = c.points[0]
        with np.errstate(divide="ignore"):
            logw[k, : c.n] = np.log(c.weights)
    return PaddedBatch(points=pts, log_weights=logw, sizes=sizes)

"""Moving points: the entropic transport map of a solved problem, for any points.

The potentials of a solve define where every point goes, not only the points solved on
(Pooladian & Niles-Weed, 2021). For a new point x,

    T(x) = Σ_j b_j e^{(g_j − C(x, y_j))/ε} y_j / Σ_j b_j e^{(g_j − C(x, y_j))/ε}

a softmin-weighted mean of B's points: at A's own points it is the barycentric projection
(P y)_i / (P 1)_i, which is (P y)_i / a_i once the marginals hold. The inverse map swaps the
roles (f, a and A's points; C(x_i, y) with the new point second). One log-sum-exp pass per
point: rows of new points are taken a block at a time, so memory is O(block · m), never the
whole n × m matrix.

The cost is evaluated exactly as the solver did (:func:`otcli.costs.working_cost`: points
centred on the result's ``centre``, in high precision, then C in the solve's dtype), so at
A's points the map is the row-normalised ``plan()`` to the last digits.

Unbalanced results: the formula holds with the unbalanced potentials; the weights are then
the plan's row normalised by the mass it actually transports, (P y)_i / (P 1)_i, so a point
is still sent to a full point of B's hull (mass created or destroyed does not shrink it).
Results of :func:`otcli.solve_matrix` have no coordinates to move: their ``transport`` is
an :class:`~otcli.errors.OptionError`.

:func:`entropic_map` works on arrays or tensors (the building block of barycenters);
:mod:`otcli.potentials` keeps a solved map in a small ``.npz`` so that later files are moved
without solving again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.errors import InputError, OptionError

if TYPE_CHECKING:
    import torch

    from otcli.costs import CostFn

#: Entries (new points × support points) one block of the map holds at once: about 2 MB per
#: float64 matrix, a few of them alive per block.
MAP_BLOCK_ENTRIES = 1 << 18


def entropic_map(
    points: Any,
    support: Any,
    weights: Any,
    potential: Any,
    eps: float,
    *,
    cost: str | CostFn = "sqeuclidean",
    p: float | None = None,
    centre: Any = None,
    dtype: str = "float64",
    device: str = "cpu",
    inverse: bool = False,
    block_entries: int = MAP_BLOCK_ENTRIES,
    progress: Callable[[int, int], None] | None = None,
    name: str = "points",
    threads: int | None = None,
) -> Any:
    """T(x) = Σ_j w_j e^{(h_j − C(x, s_j))/ε} s_j / Σ_j w_j e^{(h_j − C(x, s_j))/ε} for each x.

    ``points`` (k, d) are the points to move, ``support`` (m, d) the cloud they move onto
    with its ``weights`` (m,) (relative masses; zero-mass points take no part) and its dual
    ``potential`` h (m,) at regularisation ``eps``. ``cost`` is a registered cost name (with
    ``p``) or a cost object, evaluated as :func:`otcli.costs.working_cost` does: on points
    less ``centre`` (default 0), in ``dtype`` (the solve's, for a map that agrees with its
    plan to the last digit). ``inverse=True`` evaluates C(s_j, x) instead of C(x, s_j) (the
    map from B's side onto A, for costs that are not symmetric). Rows are moved a block of
    about ``block_entries`` / m at a time; ``progress(done, total)`` hears after each block.
    ``threads``: torch's CPU threads meanwhile (default: the cores other work leaves free,
    as for a solve, :func:`otcli.device.solve_threads`; the caller's setting is restored).

    Returns the moved points as ``points`` came: a numpy float64 array for arrays, a tensor
    of the points' floating dtype and device for tensors; (k,) for (k,) input when d = 1.
    Raises :class:`~otcli.errors.InputError` for points of another dimension or with NaN or
    infinite coordinates, named ``name`` (a file, a keyword).
    """
    import torch

    from otcli.costs import as_cost
    from otcli.device import solve_threads

    cost_fn = as_cost(cost, p)
    dev = torch.device(device)
    hi = torch.float32 if dev.type == "mps" else torch.float64
    work = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    sup = _as_float64(support, "support")
    if sup.ndim == 1:
        sup = sup[:, None]
    m, d = sup.shape
    x, like = _new_points(points, d, name)
    w = _as_float64(weights, "weights").reshape(-1)
    h = _as_float64(potential, "potential").reshape(-1)
    if w.shape != (m,) or h.shape != (m,):
        raise InputError(
            "support", f"{m} points need {m} weights and potentials; got {w.size} and {h.size}"
        )
    c0 = np.zeros(d) if centre is None else _as_float64(centre, "centre").reshape(d)
    if dev.type != "cpu":
        threads = torch.get_num_threads()
    with torch.no_grad(), solve_threads(threads):
        s_hi = torch.as_tensor(sup - c0, dtype=hi, device=dev)[None]  # (1, m, d), centred
        log_w = torch.log(torch.as_tensor(w, dtype=hi, device=dev))
        hk = (log_w + torch.as_tensor(h, dtype=hi, device=dev) / eps)[None, :]  # (1, m)
        s_out = torch.as_tensor(sup, dtype=hi, device=dev)  # (m, d), uncentred
        out = np.empty((x.shape[0], d))
        step = max(1, block_entries // max(m, 1))
        z_buf = torch.empty((min(step, x.shape[0]), m), dtype=hi, device=dev)  # reused
        for r0 in range(0, x.shape[0], step):
            xb = torch.as_tensor(x[r0 : r0 + step] - c0, dtype=hi, device=dev)[None]  # (1, r, d)
            c = _cost_block(cost_fn, xb, s_hi, work, inverse)  # (r, m): C(x_r, s_j)
            z = z_buf[: c.shape[0]].copy_(c).mul_(-1.0 / eps).add_(hk)  # log w_j + (h_j − C_rj)/ε
            del c
            z -= z.amax(dim=1, keepdim=True)  # softmax, stable: the largest term is e⁰
            e = z.exp_()
            moved = (e @ s_out) / e.sum(dim=1, keepdim=True)  # (r, d): Σ_j e_rj s_j / Σ_j e_rj
            out[r0 : r0 + moved.shape[0]] = moved.cpu().numpy()
            if progress is not None:
                progress(min(x.shape[0], r0 + step), x.shape[0])
    return _like(out, like)


def _cost_block(
    cost_fn: CostFn, x: torch.Tensor, s: torch.Tensor, dtype: torch.dtype, inverse: bool
) -> torch.Tensor:
    """(r, m) costs between the block's new points and the support, in the solve's dtype."""
    from otcli.costs import working_cost

    if inverse:
        return working_cost(cost_fn, s, x, dtype)[0].T  # C(s_j, x_r), transposed
    return working_cost(cost_fn, x, s, dtype)[0]


def result_map(result: Any, points: Any, *, inverse: bool = False, **kw: Any) -> Any:
    """The entropic map of a solved problem (a :class:`~otcli.result.SinkhornResult`, which
    this module does not import: results call it) at ``points``: A → B, or with ``inverse``
    B → A. Keywords go to :func:`entropic_map`."""
    if getattr(result.cost_fn, "name", "") == "matrix":
        raise OptionError(
            "transport",
            "this result was solved from a cost matrix (solve_matrix): it has no coordinates "
            "to move points with; solve the clouds themselves (otcli.solve) for a map",
        )
    if inverse:
        support, weights, potential = result.x, result.x.weights, result.f
    else:
        support, weights, potential = result.y, result.y.weights, result.g
    device = result.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            device = "cpu"
    return entropic_map(
        points, support.points, weights, potential, result.eps, cost=result.cost_fn,
        centre=result.centre, dtype=result.cost_dtype or result.dtype, device=device,
        inverse=inverse, **kw,
    )  # fmt: skip


def _as_float64(values: Any, name: str) -> np.ndarray:
    detach = getattr(values, "detach", None)
    if callable(detach):
        values = detach().cpu().double().numpy()
    return np.array(values, dtype=np.float64)  # a copy: O(m), and writable for torch


def _new_points(points: Any, d: int, name: str) -> tuple[np.ndarray, Any]:
    """(k, d) float64 points to move, checked, and how to give the result back."""
    from otcli.cloud import check_finite, real_values

    like: Any = ("numpy", None)
    if callable(getattr(points, "detach", None)):  # a torch tensor
        dt = points.dtype if points.dtype.is_floating_point else None
        like = ("torch", (dt, points.device))
    x = real_values(points, name, "points to move").astype(np.float64, copy=False)
    flat = x.ndim == 1
    if flat and d == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != d:
        shape = "×".join(map(str, x.shape))
        raise InputError(
            name, f"points of shape {shape}: the map moves points in {d}-D, give (k, {d})"
        )
    check_finite(x, name, "the map moves finite points only")
    return x, (like, flat and d == 1)


def _like(out: np.ndarray, like: Any) -> Any:
    (kind, info), flat = like
    if flat:
        out = out[:, 0]
    if kind == "numpy":
        return out
    import torch

    dtype, device = info
    return torch.as_tensor(out, dtype=dtype or torch.float64, device=device)


__all__ = ["entropic_map", "result_map"]

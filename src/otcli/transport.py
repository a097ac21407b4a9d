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
:func:`save_potentials` / :func:`load_potentials` keep a solved map in a small ``.npz`` so
that later files are moved without solving again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.errors import InputError, OptionError

if TYPE_CHECKING:
    import torch

    from otcli.costs import CostFn
    from otcli.result import SinkhornResult

#: Entries (new points × support points) one block of the map holds at once: about 2 MB per
#: float64 matrix, a few of them alive per block.
MAP_BLOCK_ENTRIES = 1 << 18

#: Format tag of a saved potentials file, checked on loading.
POTENTIALS_FORMAT = "otcli-potentials-1"


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
    threads = None if dev.type == "cpu" else torch.get_num_threads()
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


def result_map(result: SinkhornResult, points: Any, *, inverse: bool = False, **kw: Any) -> Any:
    """The entropic map of a solved problem at ``points`` (:meth:`SinkhornResult.transport`):
    A → B, or with ``inverse`` B → A."""
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
        centre=result.centre, dtype=result.dtype, device=device, inverse=inverse, **kw,
    )  # fmt: skip


def _as_float64(values: Any, name: str) -> np.ndarray:
    detach = getattr(values, "detach", None)
    if callable(detach):
        values = detach().cpu().double().numpy()
    return np.array(values, dtype=np.float64)  # a copy: O(m), and writable for torch


def _new_points(points: Any, d: int, name: str) -> tuple[np.ndarray, Any]:
    """(k, d) float64 points to move, checked, and how to give the result back."""
    from otcli.cloud import real_values

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
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(
            name,
            f"non-finite coordinate {x[i, j]} at point {i} (0-based), coordinate {j}; the map "
            "moves finite points only",
        )
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


# --- saved potentials: solve once, move many files later ---------------------------------


def save_potentials(result: SinkhornResult, path: str | os.PathLike[str]) -> None:
    """Write what rebuilds ``result``'s map exactly to ``path`` (``.npz``, no pickles):
    f, g, ε, the cost (name and p), centre, dtype, both clouds' points, weights and
    column labels, the figures of the solve and the otcli version. Written to a temporary
    file and renamed (no partial file). :func:`load_potentials` reads it back."""
    from otcli import __version__
    from otcli.io.writers import atomic_write

    cost_fn = result.cost_fn
    if type(cost_fn).__name__ in ("CallableCost", "MatrixCost"):
        raise OptionError(
            "--save-potentials",
            f"{cost_fn.describe()} cannot be saved (only named costs are): its map is "
            "available in this process only",
        )
    nan = float("nan")
    arrays: dict[str, Any] = {
        "format": np.array(POTENTIALS_FORMAT),
        "otcli_version": np.array(__version__),
        "f": result.f, "g": result.g, "eps": np.float64(result.eps),
        "cost": np.array(cost_fn.name), "p": np.float64(getattr(cost_fn, "p", nan)),
        "centre": np.asarray(result.centre, dtype=np.float64),
        "dtype": np.array(result.dtype), "device": np.array(result.device),
        "x_points": result.x.points, "x_weights": result.x.weights,
        "y_points": result.y.points, "y_weights": result.y.weights,
        "x_columns": np.array(result.x.columns, dtype=str),
        "y_columns": np.array(result.y.columns, dtype=str),
        "x_source": np.array(result.x.source), "y_source": np.array(result.y.source),
        "rho_a": np.float64(nan if result.rho_a is None else result.rho_a),
        "rho_b": np.float64(nan if result.rho_b is None else result.rho_b),
    }  # fmt: skip
    for name in ("cost", "objective", "marginal_error", "tol", "seconds", "cost_scale", "mass"):
        arrays[f"figure_{name}"] = np.float64(getattr(result, name))
    arrays["figure_iterations"] = np.int64(result.iterations)
    arrays["figure_converged"] = np.bool_(result.converged)
    arrays["geometry"] = np.array(result.geometry)
    arrays["engine"] = np.array(result.engine)
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as sink:
            np.savez(sink, **arrays)
    except OSError as exc:
        from otcli.io.common import os_reason

        raise OptionError(
            "--save-potentials", f"{os.fspath(path)!r}: cannot write ({os_reason(exc)})"
        ) from None


def load_potentials(path: str | os.PathLike[str]) -> SinkhornResult:
    """The :class:`~otcli.result.SinkhornResult` saved by :func:`save_potentials` at ``path``,
    loaded without pickles: its ``transport`` is the saved map, bit for bit. Raises
    :class:`~otcli.errors.InputError` for a file that is not such a file."""
    import zipfile

    from otcli.cloud import make_cloud
    from otcli.costs import get_cost
    from otcli.io.common import os_reason
    from otcli.result import SinkhornResult

    where = os.fspath(path)
    try:
        loaded = np.load(where, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a plain .npy array
            raise ValueError("one array, not an .npz archive")
        with loaded as archive:
            data = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise InputError(where, "no such file; check the path") from None
    except OSError as exc:
        raise InputError(where, f"cannot read the file ({os_reason(exc)})") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(
            where, f"is not a potentials file written by --save-potentials ({exc})"
        ) from None
    if str(data.get("format", "")) != POTENTIALS_FORMAT:
        raise InputError(
            where,
            "is not a potentials file written by otdist map --save-potentials (no "
            f"{POTENTIALS_FORMAT!r} tag)",
        )
    try:
        p = float(data["p"])
        cost_fn = get_cost(str(data["cost"]), None if np.isnan(p) else p)
        x = make_cloud(data["x_points"], data["x_weights"], str(data["x_source"]),
                       columns=[str(c) for c in data["x_columns"]])  # fmt: skip
        y = make_cloud(data["y_points"], data["y_weights"], str(data["y_source"]),
                       columns=[str(c) for c in data["y_columns"]])  # fmt: skip
        rho = [None if np.isnan(float(data[k])) else float(data[k]) for k in ("rho_a", "rho_b")]
        figures = {k.removeprefix("figure_"): data[k] for k in data if k.startswith("figure_")}
        result = SinkhornResult(
            x=x, y=y, cost_fn=cost_fn, eps=float(data["eps"]),
            f=np.asarray(data["f"], dtype=np.float64), g=np.asarray(data["g"], dtype=np.float64),
            cost=float(figures["cost"]), objective=float(figures["objective"]),
            iterations=int(figures["iterations"]),
            marginal_error=float(figures["marginal_error"]),
            converged=bool(figures["converged"]), tol=float(figures["tol"]),
            device=str(data["device"]), dtype=str(data["dtype"]),
            centre=np.asarray(data["centre"], dtype=np.float64),
            geometry=str(data["geometry"]), seconds=float(figures["seconds"]),
            engine=str(data["engine"]), cost_scale=float(figures["cost_scale"]),
            mass=float(figures["mass"]), rho_a=rho[0], rho_b=rho[1],
        )  # fmt: skip
    except KeyError as exc:
        raise InputError(
            where, f"a potentials file without {exc.args[0]!r}; save it again"
        ) from None
    if result.f.shape != (x.n,) or result.g.shape != (y.n,) or result.centre.shape != (x.dim,):
        raise InputError(where, "its potentials do not match its clouds; save it again")
    return result


__all__ = ["entropic_map", "load_potentials", "result_map", "save_potentials"]

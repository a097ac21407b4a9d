"""A solved map in a file: ``otdist map --save-potentials`` / ``--potentials``.

:func:`save_potentials` writes what rebuilds a :class:`~otcli.result.SinkhornResult` and so
its entropic map (:mod:`otcli.transport`) exactly, as plain arrays in an ``.npz``;
:func:`load_potentials` reads it back without pickles.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from otcli.errors import InputError, OptionError
from otcli.result import SinkhornResult

#: Format tag of a saved potentials file, checked on loading.
POTENTIALS_FORMAT = "otcli-potentials-1"


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
        "cost_dtype": np.array(result.cost_dtype),
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
            cost_dtype=str(data.get("cost_dtype", "")),  # files of otcli before it: ""
        )  # fmt: skip
    except KeyError as exc:
        raise InputError(
            where, f"a potentials file without {exc.args[0]!r}; save it again"
        ) from None
    if result.dtype not in ("float32", "float64") or result.cost_dtype not in (
        "",
        "float32",
        "float64",
    ):  # the names plan() and the map hand to torch
        raise InputError(
            where, f"unknown precision {result.dtype!r}/{result.cost_dtype!r}; save it again"
        )
    if result.f.shape != (x.n,) or result.g.shape != (y.n,) or result.centre.shape != (x.dim,):
        raise InputError(where, "its potentials do not match its clouds; save it again")
    return result


__all__ = ["POTENTIALS_FORMAT", "load_potentials", "save_potentials"]

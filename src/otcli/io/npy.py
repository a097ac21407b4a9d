"""NumPy ``.npy`` (one array) and ``.npz`` (arrays ``points`` and ``weights``) → points.

Files are loaded with ``allow_pickle=False`` always: a pickle can run code, so an object array
or a pickled file is refused with a message saying how to save plain numbers instead. The magic
bytes are checked first, so a mislabelled file gets a clear message rather than numpy's.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from otcli.errors import InputError
from otcli.io.common import ColumnKey, Picked, open_input, pick_columns, select_columns

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_REFUSED = "otcli never unpickles files; save a plain numeric array with np.save/np.savez"


def read_npy(
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    *,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
    data: bytes | None = None,
) -> Picked:
    """A ``.npy`` file's points and weights: a 2-D (or 1-D) numeric array, never a pickle.
    ``data``: the file's bytes (stdin)."""
    with open_input(where, data) as f:
        head = f.read(len(_NPY_MAGIC))
        if not head:
            raise InputError(where, "the file is empty")
        if head != _NPY_MAGIC:
            if head.startswith(b"\x80"):
                raise InputError(
                    where, f"holds pickled Python data, not a NumPy array; {_PICKLE_REFUSED}"
                )
            raise InputError(where, "is not a NumPy .npy file (wrong magic bytes)")
        f.seek(0)
        array = _load_member(lambda: np.load(f, allow_pickle=False), where, "the array")
    return _array_columns(array, None, columns, weights, where, exclude, id_column)


def read_npz(
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    *,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
    data: bytes | None = None,
) -> Picked:
    """An ``.npz`` archive's ``points`` (or its one array) and ``weights``, never a pickle.
    ``data``: the file's bytes (stdin)."""
    with open_input(where, data) as f:
        head = f.read(len(_ZIP_MAGIC))
        if not head:
            raise InputError(where, "the file is empty")
        if head == _NPY_MAGIC[: len(head)]:
            raise InputError(
                where, "is a single-array .npy file, not a .npz archive; rename it to .npy"
            )
        if head != _ZIP_MAGIC:
            raise InputError(where, "is not a NumPy .npz archive (not a zip file)")
        f.seek(0)
        try:
            archive = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(where, f"is not a valid .npz archive ({exc})") from None
        with archive:
            files = list(archive.files)
            if "points" in files:
                key = "points"
            elif len(files) == 1 and files[0] != "weights":
                key = files[0]
            else:
                found = ", ".join(files) or "none"
                raise InputError(
                    where,
                    f"holds no array named 'points' (found: {found}); save it with "
                    "np.savez(path, points=..., weights=...)",
                )
            points = _load_member(lambda: archive[key], where, f"array {key!r}")
            w = None
            if weights in (None, "weights") and "weights" in files:
                weights = None  # the archive's own weights array, not a column of points
                w = _load_member(lambda: archive["weights"], where, "array 'weights'")
                if w.ndim == 2 and 1 in w.shape:
                    w = w.reshape(-1)
                _check_array(w, where, "array 'weights'", max_ndim=1)
    return _array_columns(points, w, columns, weights, where, exclude, id_column)


def _load_member(load: Any, where: str, what: str) -> np.ndarray:
    """Run ``load`` (an ``np.load`` with pickles off), turning its failures into InputErrors."""
    import zipfile

    try:
        return np.asarray(load())
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(
                where, f"{what} holds Python objects (dtype=object); {_PICKLE_REFUSED}"
            ) from None
        raise InputError(where, f"{what} is corrupt or truncated ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(where, f"{what} is corrupt or truncated ({exc})") from None


def _check_array(array: np.ndarray, where: str, what: str, *, max_ndim: int = 2) -> None:
    kind = array.dtype.kind
    if kind == "b":
        raise InputError(where, f"{what} holds booleans, not numbers")
    if kind == "c":
        raise InputError(where, f"{what} holds complex numbers; save real coordinates")
    if kind not in "iuf":
        raise InputError(
            where, f"{what} has dtype {array.dtype}, not a numeric (integer or float) type"
        )
    if array.ndim == 0 or array.ndim > max_ndim:
        shape = f"has shape {'×'.join(map(str, array.shape))}" if array.ndim else "is a scalar"
        need = "a 1-D array" if max_ndim == 1 else "a 2-D array (n points × d coordinates)"
        raise InputError(where, f"{what} {shape}; expected {need}")


def _array_columns(
    array: np.ndarray,
    w: np.ndarray | None,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    where: str,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
) -> Picked:
    """Pick coordinate, weight and id columns of an (n, d) or (n,) array by 0-based index
    (ids: the numbers as text, integers without a decimal point)."""
    _check_array(array, where, "the points array")
    if array.ndim == 1:
        array = array[:, None]
    if array.shape[0] == 0:
        raise InputError(where, "the points array is empty (0 rows)")
    names = [str(k) for k in range(array.shape[1])]
    sel = select_columns(
        names, columns, weights, where, exclude=exclude, id_column=id_column, has_header=False
    )
    values = {k: array[:, k].astype(np.float64) for k in sel.numeric}
    ids = None
    if sel.ids is not None:
        column = array[:, sel.ids]
        whole = column.dtype.kind in "iu" or bool(np.all(np.mod(column, 1) == 0))
        ids = [str(int(v)) if whole else repr(float(v)) for v in column]
    picked = pick_columns(sel, values, ids, where)
    if sel.weights is None and w is not None:  # the archive's own weights array
        picked = replace(picked, weights=w.astype(np.float64))
    return picked

"""NumPy ``.npy`` (one array) and ``.npz`` (arrays ``points`` and ``weights``) → points.

Files are loaded with ``allow_pickle=False`` always: a pickle can run code, so an object array
or a pickled file is refused with a message saying how to save plain numbers instead. The magic
bytes are checked first, so a mislabelled file gets a clear message rather than numpy's; then
the header, so that a shape the file's bytes cannot hold (a truncated file, or a header
claiming 10¹³ rows) is refused before numpy allocates room for it.
"""

from __future__ import annotations

import math
import os
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
    array = load_npy_array(where, data)
    return _array_columns(array, None, columns, weights, where, exclude, id_column)


def load_npy_array(where: str, data: bytes | None = None) -> np.ndarray:
    """The one array of a ``.npy`` file, as it is stored (checked header, never a pickle)."""
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
        size = len(data) if data is not None else os.fstat(f.fileno()).st_size
        f.seek(0)
        return _load_member(lambda: _load_npy(f, size, where, "the array"), where, "the array")


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
    import zipfile

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
            archive = zipfile.ZipFile(f)
        except Exception as exc:  # an untrusted archive: zipfile's parser raises many kinds
            raise InputError(where, f"is not a valid .npz archive ({_reason(exc)})") from None
        with archive:
            # Members by name, ".npy" dropped, as np.load's NpzFile lists them.
            members: dict[str, zipfile.ZipInfo] = {}
            for info in archive.infolist():
                members.setdefault(info.filename.removesuffix(".npy"), info)
            files = list(members)
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
            points = _load_zip_member(archive, members[key], where, f"array {key!r}")
            w = None
            if weights in (None, "weights") and "weights" in files:
                weights = None  # the archive's own weights array, not a column of points
                w = _load_zip_member(archive, members["weights"], where, "array 'weights'")
                if w.ndim == 2 and 1 in w.shape:
                    w = w.reshape(-1)
                _check_array(w, where, "array 'weights'", max_ndim=1)
    return _array_columns(points, w, columns, weights, where, exclude, id_column)


def _load_zip_member(archive: Any, info: Any, where: str, what: str) -> np.ndarray:
    """One ``.npy`` member of an archive, its header checked before anything is allocated."""

    def load() -> np.ndarray:
        with archive.open(info) as fp:
            if fp.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise InputError(where, f"{what} is not a NumPy array (no .npy header)")
            fp.seek(0)
            return _load_npy(fp, info.file_size, where, what)

    return _load_member(load, where, what)


def _load_npy(fp: Any, size: int, where: str, what: str) -> np.ndarray:
    """Read the ``.npy`` data at ``fp`` (``size`` bytes in all), pickles off.

    The header is read first: an object dtype is refused without loading anything, and a
    shape whose data would not fit in the ``size`` bytes there are (a truncated file, or a
    header claiming 10¹³ rows) is refused before numpy allocates room for it.
    """
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fp)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        # Versions 2.0 and 3.0 differ only in the header's text encoding.
        read_header = npformat.read_array_header_1_0
        if version != (1, 0):
            read_header = npformat.read_array_header_2_0
        shape, _fortran, dtype = read_header(fp)
        start = fp.tell()
    except Exception as exc:  # an untrusted header: numpy's parser raises many kinds
        raise InputError(where, f"{what} has a broken .npy header ({_reason(exc)})") from None
    if dtype.hasobject:
        raise InputError(where, f"{what} holds Python objects (dtype=object); {_PICKLE_REFUSED}")
    if dtype.kind not in "biufc":  # booleans and complex numbers are refused once loaded
        raise InputError(where, f"{what} has dtype {dtype}, not a numeric (integer or float) type")
    shown = "×".join(map(str, shape)) or "() (a scalar)"
    if any(n < 0 for n in shape):
        raise InputError(where, f"{what} has a broken .npy header (shape {shown})")
    need = math.prod(shape) * dtype.itemsize
    if need > size - start:
        raise InputError(
            where,
            f"{what} is corrupt or truncated: its header says shape {shown} of {dtype} "
            f"({need:,} bytes) but only {max(size - start, 0):,} bytes of data follow",
        )
    fp.seek(0)
    return npformat.read_array(fp, allow_pickle=False)


def _load_member(load: Any, where: str, what: str) -> np.ndarray:
    """Run ``load`` (a read with pickles off), turning its failures into InputErrors."""
    import zipfile

    try:
        return np.asarray(load())
    except InputError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(
                where, f"{what} holds Python objects (dtype=object); {_PICKLE_REFUSED}"
            ) from None
        raise InputError(where, f"{what} is corrupt or truncated ({_reason(exc)})") from None
    except NotImplementedError as exc:  # zipfile: a compression method it does not know
        raise InputError(
            where,
            f"{what} cannot be unpacked ({_reason(exc)}); save it with np.savez or "
            "np.savez_compressed",
        ) from None
    except RuntimeError as exc:  # zipfile: an encrypted member
        raise InputError(where, f"{what} cannot be read ({_reason(exc)})") from None
    except (OSError, EOFError, OverflowError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(where, f"{what} is corrupt or truncated ({_reason(exc)})") from None
    except MemoryError:
        raise InputError(where, f"{what} does not fit in memory") from None


def _reason(exc: BaseException) -> str:
    """An exception's message as a short single line (numpy quotes whole headers)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


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
    with np.errstate(over="ignore", invalid="ignore"):  # too large → inf, refused later
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

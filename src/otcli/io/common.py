"""What every cloud reader shares: opening a file, and choosing its columns.

Opening turns the OS's refusals (missing file, directory, permissions) into one-line
:class:`~otcli.errors.InputError` messages; column selection resolves ``--columns``,
``--exclude``, ``--weights`` and ``--id`` (names, 0-based indices, index ranges) the same way
for text, Parquet and NumPy files, so every format reports a wrong column in the same words.
After the values are read, :func:`pick_columns` stacks the coordinates and decides what the
user should hear about them: a pandas index column dropped, a class-label column kept.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import numpy as np

from otcli.errors import InputError

#: A column as the user names it: a header name, a 0-based index, or (as text) an inclusive
#: index range such as ``"0-3"`` or ``"2-"`` (to the last column).
ColumnKey = str | int


def os_reason(exc: OSError) -> str:
    """The OS's reason for ``exc`` in a few words (``"No such file or directory"``)."""
    return exc.strerror or str(exc) or type(exc).__name__


# ``s3://bucket/key``, ``gs://...``, ``file:///...``, chained ``simplecache::s3://...``.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(::[A-Za-z][A-Za-z0-9+.-]*)*://")


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (read through fsspec), not a path on this machine."""
    return _URL.match(path) is not None


def _open_url(where: str) -> BinaryIO:
    """A URL opened through fsspec; a missing fsspec or filesystem package is an InputError."""
    try:
        import fsspec
    except ImportError:
        raise InputError(
            where, "URLs are read through fsspec: pip install fsspec (and s3fs, gcsfs, ...)"
        ) from None
    try:
        return fsspec.open(where, "rb").open()
    except ImportError as exc:  # fsspec knows the scheme, its package is not installed
        raise InputError(where, f"cannot open the URL ({exc})") from None
    except ValueError as exc:  # an unknown scheme
        raise InputError(where, f"cannot open the URL ({exc})") from None


@contextlib.contextmanager
def open_input(where: str, data: bytes | None = None) -> Iterator[BinaryIO]:
    """Open a file (or an fsspec URL) for reading, turning refusals into one-line InputErrors.

    With ``data`` (standard input, already read) it yields those bytes as a file instead."""
    if data is not None:
        yield io.BytesIO(data)
        return
    try:
        f = _open_url(where) if is_url(where) else open(where, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise InputError(where, "no such file; check the path") from None
    except IsADirectoryError:
        raise InputError(where, "is a directory, not a file") from None
    except PermissionError:
        raise InputError(where, "permission denied; check the file's read permission") from None
    except OSError as exc:
        raise InputError(where, f"cannot open the file ({os_reason(exc)})") from None
    with f:
        yield f


#: Header names pandas gives its index column: ``to_csv()`` writes an empty one,
#: ``read_csv()`` then calls it ``Unnamed: 0``, ``to_parquet()`` of a non-range index stores
#: it as ``__index_level_0__``.
PANDAS_INDEX_NAMES = ("", "Unnamed: 0", "__index_level_0__")
#: Column names (lower case) that say "class label", not "coordinate".
LABEL_NAMES = frozenset({"target", "label", "labels", "class", "classes", "y_true"})
_RANGE = re.compile(r"(\d+)\s*-\s*(\d*)")


@dataclass(frozen=True)
class Selection:
    """A file's columns resolved from the options, before any value is read.

    ``coords``, ``weights`` and ``ids`` are 0-based indices into ``names``; ``by_default``
    says the coordinates were not named with ``--columns`` (so the reader may still drop a
    pandas index column and should point out a label column).
    """

    names: list[str]
    coords: list[int]
    weights: int | None
    ids: int | None
    by_default: bool
    has_header: bool

    def without(self, dropped: Sequence[int]) -> Selection:
        """The same selection less the coordinates ``dropped`` (text columns a reader found)."""
        return replace(self, coords=[k for k in self.coords if k not in dropped])

    @property
    def numeric(self) -> list[int]:
        """The columns to read as numbers: coordinates, then the weights column."""
        return list(
            dict.fromkeys([*self.coords, *([] if self.weights is None else [self.weights])])
        )


@dataclass(frozen=True)
class Picked:
    """What a reader hands :func:`~otcli.cloud.make_cloud`: values, labels, ids and notes;
    ``coords``: the 0-based positions of the coordinate columns in the file, in the order
    of ``points``' columns (what ``otdist map`` replaces when it writes the file back)."""

    points: np.ndarray
    weights: np.ndarray | None
    columns: list[str]
    ids: list[str] | None
    notes: list[str]
    coords: tuple[int, ...] = ()


def require_regular_file(where: str, suffix: str) -> None:
    """Refuse a FIFO, device or socket named like a ``suffix`` file: that format is read by
    seeking in a file, which a stream cannot do. A missing file is left to :func:`open_input`."""
    try:
        mode = os.stat(where).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    if stat.S_ISFIFO(mode):
        what = "a FIFO (named pipe)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a device"
    else:
        what = "a socket or other special file"
    raise InputError(
        where,
        f"is {what}, not a regular file; {suffix} files can only be read from a regular "
        "file: save the data to one first",
    )


def select_columns(
    names: Sequence[str],
    columns: Sequence[ColumnKey] | ColumnKey | None,
    weights: ColumnKey | None,
    where: str,
    *,
    exclude: Sequence[ColumnKey] | ColumnKey | None = None,
    id_column: ColumnKey | None = None,
    has_header: bool = True,
) -> Selection:
    """Resolve ``columns``/``exclude``/``weights``/``id_column`` to 0-based indices into ``names``.

    Columns are header names, 0-based indices, or inclusive index ranges (``"0-3"``, ``"2-"``:
    to the last column). By default every column but the weights and id columns is a
    coordinate; ranges skip those two as well; ``exclude`` then removes columns (same syntax).
    """
    names = list(names)
    w_idx = None if weights is None else _resolve(weights, names, where, "weights column")
    id_idx = None if id_column is None else _resolve(id_column, names, where, "--id column")
    if id_idx is not None and id_idx == w_idx:
        raise InputError(where, f"column {names[id_idx]!r} cannot be both --id and --weights")
    roles = {k for k in (w_idx, id_idx) if k is not None}
    if columns is None:
        coords = [k for k in range(len(names)) if k not in roles]
    else:
        items = [columns] if isinstance(columns, (str, int)) else list(columns)
        if len(items) == 0:
            raise InputError(where, "no columns selected; give at least one column to --columns")
        coords = _expand(items, names, where, "column", roles)
        if id_idx is not None and id_idx in coords:
            raise InputError(
                where,
                f"column {names[id_idx]!r} is the --id column; it cannot also be a coordinate",
            )
    if exclude is not None:
        items = [exclude] if isinstance(exclude, (str, int)) else list(exclude)
        dropped = set(_expand(items, names, where, "column to --exclude", set()))
        coords = [k for k in coords if k not in dropped]
    if not coords:
        if exclude is not None:
            raise InputError(where, "--exclude leaves no coordinate columns; exclude fewer")
        kept = " and ".join(
            what
            for what, k in (("the weights column", w_idx), ("the --id column", id_idx))
            if k is not None
        )
        if not names:  # a Parquet file of rows without columns
            raise InputError(where, "has no columns, so no coordinates")
        if not kept:
            raise InputError(where, "has no coordinate columns")
        raise InputError(where, f"no coordinates are left beside {kept}")
    return Selection(names, coords, w_idx, id_idx, columns is None, has_header)


def _expand(
    items: Sequence[ColumnKey], names: list[str], where: str, role: str, skip: set[int]
) -> list[int]:
    """Names, indices and ranges → indices in the order given, each once (ranges skip ``skip``)."""
    out: list[int] = []
    for item in items:
        if isinstance(item, str) and item.strip() not in names:
            match = _RANGE.fullmatch(item.strip())
            if match is not None:
                out += [k for k in _span(match, names, where) if k not in skip]
                continue
        out.append(_resolve(item, names, where, role))
    return list(dict.fromkeys(out))


def _span(match: re.Match[str], names: list[str], where: str) -> range:
    first = int(match[1])
    last = int(match[2]) if match[2] else len(names) - 1
    text = match[0]
    if first > last and match[2]:
        raise InputError(where, f"column range {text!r} runs backwards; write it as {last}-{first}")
    if first >= len(names) or last >= len(names):
        raise InputError(
            where, f"column range {text!r} goes past the last column; {_describe_columns(names)}"
        )
    return range(first, last + 1)


def text_note(names: Sequence[str], dropped: Sequence[int], what: str) -> str:
    """The note for text columns a reader left out of the default coordinates."""
    listed = ", ".join(repr(names[k]) for k in dropped)
    return (
        f"left out column{'s' if len(dropped) > 1 else ''} {listed} ({what}, not numbers): "
        "coordinates are the numeric columns; use --columns to choose them"
    )


def pick_columns(
    sel: Selection,
    values: Mapping[int, np.ndarray],
    ids: Sequence[str] | None,
    where: str,
    notes: Sequence[str] = (),
) -> Picked:
    """Stack the coordinates read (``values`` by column index) into points.

    With the default selection a pandas index column (see :data:`PANDAS_INDEX_NAMES`, holding
    distinct non-negative integers) and columns named like a class label
    (:data:`LABEL_NAMES`: a diabetes answer went from 918 to 18,785 with its ``target``) are
    left out while another coordinate remains, each with a note for the user; ``notes`` are
    the reader's own (text columns it left out).
    """
    coords, notes = list(sel.coords), list(notes)
    if sel.by_default and sel.has_header:
        levels = _pandas_multiindex(sel, coords, values)
        k = None if levels else _pandas_index(sel, coords, values)
        if levels:
            coords = [c for c in coords if c not in levels]
            notes.append(
                f"dropped columns {', '.join(map(str, levels))} (a pandas MultiIndex of "
                f"{len(levels)} levels: {', '.join(_index_header(sel.names[c]) for c in levels)}"
                "); use --columns to keep them"
            )
        if k is not None:
            coords.remove(k)
            notes.append(
                f"dropped column {k} (a pandas index: {_index_header(sel.names[k])}, "
                f"{_index_values(values[k])}); use --columns to keep it"
            )
        labels = [k for k in coords if sel.names[k].strip().lower() in LABEL_NAMES]
        if labels and len(labels) < len(coords):
            coords = [k for k in coords if k not in labels]
            listed = ", ".join(repr(sel.names[k]) for k in labels)
            plural = len(labels) > 1
            notes.append(
                f"left out column{'s' if plural else ''} {listed} (named like a class label, "
                f"not a coordinate); use --columns to keep {'them' if plural else 'it'}"
            )
    points = np.column_stack([values[k] for k in coords])
    w = None if sel.weights is None else values[sel.weights]
    return Picked(
        points,
        w,
        [sel.names[k] for k in coords],
        None if ids is None else list(ids),
        notes,
        tuple(coords),
    )


def _pandas_index(
    sel: Selection, coords: list[int], values: Mapping[int, np.ndarray]
) -> int | None:
    """The first coordinate column that pandas wrote as its index, if any (never the only one)."""
    if len(coords) < 2:
        return None
    for k in coords:
        if sel.names[k] in PANDAS_INDEX_NAMES:
            v = values[k]
            whole = bool(np.all(v >= 0) and np.all(v == np.floor(v)))
            return k if whole and np.unique(v).size == v.size else None
    return None


_LEVEL_NAME = re.compile(r"__index_level_\d+__|Unnamed: \d+|")


def _pandas_multiindex(
    sel: Selection, coords: list[int], values: Mapping[int, np.ndarray]
) -> list[int]:
    """The coordinate columns that pandas wrote as the levels of a MultiIndex, if any: two or
    more ``__index_level_k__`` columns (Parquet), or two or more leading unnamed columns of
    whole numbers whose rows are distinct (``to_csv``). Used as coordinates they changed a
    cost from 0.0841 to 0.3038."""
    named = [k for k in coords if sel.names[k].startswith("__index_level_")]
    if 2 <= len(named) < len(coords) and all(_LEVEL_NAME.fullmatch(sel.names[k]) for k in named):
        return named  # pandas' own names for them (last in its Parquet files): no doubt
    run = []  # to_csv writes the levels first, under empty headers
    for pos, k in enumerate(coords):
        if k != pos or not _LEVEL_NAME.fullmatch(sel.names[k]):
            break
        run.append(k)
    if len(run) < 2 or len(run) == len(coords):
        return []
    block = np.column_stack([values[k] for k in run])
    if not np.all(block == np.floor(block)):
        return []
    return run if np.unique(block, axis=0).shape[0] == block.shape[0] else []


def _index_header(name: str) -> str:
    return "empty header" if name == "" else f"header {name!r}"


def _index_values(v: np.ndarray) -> str:
    lo, hi = int(v.min()), int(v.max())
    if np.array_equal(v, np.arange(lo, lo + v.size)):
        return f"values {lo}..{hi}"
    return f"{v.size} distinct integers in {lo}..{hi}"


def _resolve(item: ColumnKey, names: Sequence[str], where: str, role: str) -> int:
    """One column by name, else by 0-based index (an int, or a string of digits)."""
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if 0 <= int(item) < len(names):
            return int(item)
    else:
        key = str(item).strip()
        hits = [k for k, name in enumerate(names) if name == key]
        if len(hits) > 1:
            raise InputError(
                where,
                f"column name {key!r} appears {len(hits)} times (0-based indices "
                f"{', '.join(map(str, hits))}); select it by index instead",
            )
        if hits:
            return hits[0]
        if key.isascii() and key.isdigit() and int(key) < len(names):
            return int(key)
    raise InputError(where, f"no {role} {item!r}; available: {_describe_columns(names)}")


def _describe_columns(names: Sequence[str]) -> str:
    span = f"0-based indices 0-{len(names) - 1}" if len(names) > 1 else "0-based index 0"
    if list(names) == [str(k) for k in range(len(names))]:
        return span
    labels = [name if name else "''" for name in names[:20]]  # an empty header, visibly
    shown = ", ".join(labels) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    return f"{shown} (or {span})"


def column_label(names: Sequence[str], k: int, has_header: bool) -> str:
    """Column ``k`` as a message names it: by header name, else by 0-based index."""
    return f"column {names[k]!r}" if has_header else f"column {k} (0-based)"


def arrow_numbers(column: Any) -> np.ndarray:
    """A null-free numeric pyarrow (chunked) array as a numpy array, read from its buffers.

    pyarrow's own ``to_numpy`` imports pandas when it is installed (160 ms here, a tenth of
    a small run), to check for pandas types no point cloud holds.
    """
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        typ = chunk.type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ)) or chunk.null_count:
            return column.to_numpy(zero_copy_only=False)  # not plain numbers: pyarrow's way
        unsigned = pa.types.is_unsigned_integer(typ)
        kind = "f" if pa.types.is_floating(typ) else "u" if unsigned else "i"
        dtype = np.dtype(f"{kind}{typ.bit_width // 8}")
        data = np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk) + chunk.offset)
        parts.append(data[chunk.offset :])
    return np.concatenate(parts) if parts else np.empty(0)


def arrow_array(values: Sequence[Any] | np.ndarray, typ: Any) -> Any:
    """``values`` as a pyarrow Array of type ``typ`` (int64, float64, bool or string; None
    is null), built from buffers.

    The mirror of :func:`arrow_numbers`: ``pyarrow.array`` imports pandas when it is
    installed (130 ms of an ``otdist batch`` run here) to check for pandas objects that
    otcli's rows and plans never hold.
    """
    import pyarrow as pa

    n = len(values)
    numeric = isinstance(values, np.ndarray) and values.dtype.kind in "fiub"
    if numeric and not pa.types.is_string(typ):
        validity, nulls = None, 0
        filled: Any = values
    else:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        nulls = n - int(valid.sum())
        packed = pa.py_buffer(np.packbits(valid, bitorder="little"))
        validity = packed if nulls else None
        fill = "" if pa.types.is_string(typ) else 0
        filled = [fill if v is None else v for v in values]
    if pa.types.is_string(typ):
        try:
            data = [str(v).encode("utf-8") for v in filled]
        except UnicodeEncodeError:  # lone surrogates: pyarrow's own way (and its error)
            return pa.array([None if v is None else str(v) for v in values], type=typ)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(b) for b in data], out=offsets[1:])
        if offsets[-1] >= 2**31:  # beyond a string array's 32-bit offsets
            return pa.array([None if v is None else str(v) for v in values], type=typ)
        buffers = [pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(data))]
        return pa.Array.from_buffers(typ, n, [validity, *buffers], null_count=nulls)
    if pa.types.is_boolean(typ):
        bits = np.packbits(np.asarray(filled, dtype=bool), bitorder="little")
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(bits)], null_count=nulls)
    if str(typ) not in _NUMPY_OF:  # not a type otcli writes: pyarrow's own way
        return pa.array(values, type=typ)
    data = np.ascontiguousarray(np.asarray(filled, dtype=_NUMPY_OF[str(typ)]))
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(data)], null_count=nulls)


#: The numpy dtypes of the numeric Arrow types :func:`arrow_array` builds.
_NUMPY_OF = {"int64": np.dtype(np.int64), "double": np.dtype(np.float64)}

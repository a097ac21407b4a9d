"""What every cloud reader shares: opening a file, and choosing its columns.

Opening turns the OS's refusals (missing file, directory, permissions) into one-line
:class:`~otcli.errors.InputError` messages; column selection resolves ``--columns`` and
``--weights`` (names or 0-based indices) the same way for text, Parquet and NumPy files, so
every format reports a wrong column in the same words.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np

from otcli.errors import InputError

#: A column as the user names it: a header name, or a 0-based index.
ColumnKey = str | int


def os_reason(exc: OSError) -> str:
    """The OS's reason for ``exc`` in a few words (``"No such file or directory"``)."""
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.contextmanager
def open_input(where: str) -> Iterator[BinaryIO]:
    """Open a file for reading, turning the OS's refusals into one-line InputErrors."""
    try:
        f = open(where, "rb")  # noqa: SIM115 (closed below; the with must not catch the body)
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
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    where: str,
) -> tuple[list[int], int | None]:
    """Resolve ``columns``/``weights`` to 0-based indices into ``names``."""
    w_idx = None if weights is None else _resolve(weights, names, where, "weights column")
    if columns is None:
        coords = [k for k in range(len(names)) if k != w_idx]
        if not coords:
            raise InputError(
                where, "the only column is the weights column; no coordinates are left"
            )
        return coords, w_idx
    if isinstance(columns, (str, int)):
        columns = [columns]
    if len(columns) == 0:
        raise InputError(where, "no columns selected; give at least one column to --columns")
    return [_resolve(c, names, where, "column") for c in columns], w_idx


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
    span = f"0-based indices 0–{len(names) - 1}" if len(names) > 1 else "0-based index 0"
    if list(names) == [str(k) for k in range(len(names))]:
        return span
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    return f"{shown} (or {span})"


def column_label(names: Sequence[str], k: int, has_header: bool) -> str:
    """Column ``k`` as a message names it: by header name, else by 0-based index."""
    return f"column {names[k]!r}" if has_header else f"column {k} (0-based)"

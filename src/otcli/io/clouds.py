"""``read_cloud``: any supported file (or CSV on stdin) → a validated :class:`~otcli.cloud.Cloud`.

The extension picks the reader (:mod:`otcli.io.text`, :mod:`otcli.io.parquet`,
:mod:`otcli.io.npy`); each returns ``(points, weights)`` arrays and :func:`~otcli.cloud.make_cloud`
checks them, so every format ends in the same validation and the same messages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from otcli.cloud import Cloud, make_cloud
from otcli.errors import InputError
from otcli.io.common import ColumnKey, require_regular_file
from otcli.io.npy import read_npy, read_npz
from otcli.io.parquet import read_parquet
from otcli.io.text import CSV, TEXT_FORMATS, read_bytes, read_stream, read_text

#: Extensions :func:`read_cloud` understands (matched case-insensitively).
INPUT_SUFFIXES = (
    ".csv",
    ".tsv",
    ".txt",
    ".csv.gz",
    ".tsv.gz",
    ".txt.gz",
    ".parquet",
    ".npy",
    ".npz",
)


def read_cloud(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[ColumnKey] | None = None,
    weights: ColumnKey | None = None,
    stdin: BinaryIO | None = None,
) -> Cloud:
    """Read a point cloud from a file, choosing the format by its extension.

    ``path`` ``"-"`` reads CSV from ``stdin`` (default ``sys.stdin.buffer``). Supported:
    ``.csv``, ``.tsv``, ``.txt`` (whitespace-separated, ``#`` comments), each optionally
    gzipped (``.csv.gz``...), ``.parquet``, ``.npy`` (2-D array, or 1-D for points on a line)
    and ``.npz`` (arrays ``points`` and optional ``weights``).

    ``columns`` picks the coordinate columns, each by header name or 0-based index (indices
    are the only names of headerless text and NumPy arrays); by default every column except
    the weights column. ``weights`` names one column of per-point masses; for ``.npz`` the
    archive's ``weights`` array is used when ``weights`` is not given (or is ``"weights"``).

    A text file's first non-empty, non-comment line is a header when one of its fields is not
    a number, unless each such field also holds a non-number in the next line (then it is a
    label column of headerless data, and the line is data).

    Raises :class:`~otcli.errors.InputError` naming the file and what is wrong.
    """
    name = os.fspath(path)
    if name == "-":
        where = "<stdin>"
        stream = sys.stdin.buffer if stdin is None else stdin
        points, w = read_text(read_stream(stream, where), CSV, where, columns, weights)
        return make_cloud(points, w, where)
    where = str(name)
    if os.path.isdir(where):
        raise InputError(where, "is a directory, not a file")
    suffix = _input_suffix(where)
    if suffix in (".parquet", ".npy", ".npz"):
        require_regular_file(where, suffix)  # these readers seek; a text reader streams
    if suffix == ".parquet":
        points, w = read_parquet(where, columns, weights)
    elif suffix == ".npy":
        points, w = read_npy(where, columns, weights)
    elif suffix == ".npz":
        points, w = read_npz(where, columns, weights)
    else:
        data = read_bytes(where, gzipped=suffix.endswith(".gz"))
        fmt = TEXT_FORMATS[suffix.removesuffix(".gz")]
        points, w = read_text(data, fmt, where, columns, weights)
    return make_cloud(points, w, where)


def _input_suffix(where: str) -> str:
    """The supported extension ``where`` ends with (lower case), or an InputError listing them."""
    lower = where.lower()
    for suffix in sorted(INPUT_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    ext = "".join(Path(where).suffixes[-2:])
    what = f"unknown file type {ext!r}" if ext else "no file extension to tell the format"
    raise InputError(
        where, f"{what}; supported: .csv, .tsv, .txt (each also .gz), .parquet, .npy, .npz"
    )

"""``read_cloud``: any supported file (or stdin) → a validated :class:`~otcli.cloud.Cloud`.

The extension picks the reader (:mod:`otcli.io.text`, :mod:`otcli.io.parquet`,
:mod:`otcli.io.npy`); for standard input its first bytes do. Each reader returns the points,
weights, column labels, ids and notes, and :func:`~otcli.cloud.make_cloud` checks them, so every
format ends in the same validation and the same messages.
"""

from __future__ import annotations

import codecs
import gzip
import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from otcli.cloud import Cloud, make_cloud
from otcli.errors import InputError
from otcli.io.common import ColumnKey, Picked, os_reason, require_regular_file
from otcli.io.npy import _NPY_MAGIC, _ZIP_MAGIC, read_npy, read_npz
from otcli.io.parquet import read_parquet
from otcli.io.text import (
    _BINARY,
    CSV,
    TEXT_FORMATS,
    TSV,
    TextFormat,
    read_bytes,
    read_stream,
    read_text,
)

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
_SNIFF_BYTES = 1 << 16  # how much of stdin is checked for being text


def read_cloud(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[ColumnKey] | None = None,
    weights: ColumnKey | None = None,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
    stdin: BinaryIO | None = None,
) -> Cloud:
    """Read a point cloud from a file, choosing the format by its extension.

    Supported: ``.csv``, ``.tsv``, ``.txt`` (whitespace-separated, ``#`` comments), each
    optionally gzipped (``.csv.gz``...), ``.parquet``, ``.npy`` (2-D array, or 1-D for points
    on a line) and ``.npz`` (arrays ``points`` and optional ``weights``). ``path`` ``"-"``
    reads ``stdin`` (default ``sys.stdin.buffer``), whose format is told by its first bytes:
    Parquet, NPY, NPZ, gzip (of text), else text: TSV when its first line has tabs and no
    commas, else CSV.

    ``columns`` picks the coordinate columns, each by header name, 0-based index or inclusive
    index range (``"0-3"``, ``"2-"`` to the last column; indices are the only names of
    headerless text and NumPy arrays); by default every column except the weights and id
    columns. ``exclude`` leaves columns out (same forms). ``weights`` names one column of
    per-point masses; for ``.npz`` the archive's ``weights`` array is used when ``weights`` is
    not given (or is ``"weights"``). ``id_column`` names a column of point ids, read as text
    into :attr:`Cloud.ids <otcli.cloud.Cloud.ids>` and never used as a coordinate.

    By default (no ``columns``) a pandas index column (empty header or ``Unnamed: 0``, holding
    distinct integers such as 0..n−1: what ``DataFrame.to_csv()`` writes) is dropped, and a
    coordinate named like a class label (``target``, ``label``, ``class``) is kept but pointed
    out; both are said in :attr:`Cloud.notes <otcli.cloud.Cloud.notes>`, and
    :attr:`Cloud.columns <otcli.cloud.Cloud.columns>` lists the columns used.

    A text file's first non-empty, non-comment line is a header when one of its fields is not
    a number, unless each such field also holds a non-number in the next line (then it is a
    label column of headerless data, and the line is data).

    Raises :class:`~otcli.errors.InputError` naming the file and what is wrong.
    """
    name = os.fspath(path)
    select = {"exclude": exclude, "id_column": id_column}
    if name == "-":
        where = "<stdin>"
        stream = sys.stdin.buffer if stdin is None else stdin
        try:
            data = _read_stdin_bytes(stream, where)
        except OSError as exc:
            raise InputError(where, f"cannot read standard input ({os_reason(exc)})") from None
        picked = _read_stdin(data, where, columns, weights, select)
        return _cloud(picked, where)
    where = str(name)
    if os.path.isdir(where):
        raise InputError(where, "is a directory, not a file")
    suffix = _input_suffix(where)
    if suffix in (".parquet", ".npy", ".npz"):
        require_regular_file(where, suffix)  # these readers seek; a text reader streams
    if suffix == ".parquet":
        picked = read_parquet(where, columns, weights, **select)
    elif suffix == ".npy":
        picked = read_npy(where, columns, weights, **select)
    elif suffix == ".npz":
        picked = read_npz(where, columns, weights, **select)
    else:
        data = read_bytes(where, gzipped=suffix.endswith(".gz"))
        fmt = TEXT_FORMATS[suffix.removesuffix(".gz")]
        picked = read_text(data, fmt, where, columns, weights, **select)
    return _cloud(picked, where)


def _cloud(picked: Picked, where: str) -> Cloud:
    return make_cloud(
        picked.points, picked.weights, where,
        columns=picked.columns, ids=picked.ids, notes=picked.notes,
    )  # fmt: skip


#: What standard input may hold, told apart by its first bytes (gzip holding text).
STDIN_FORMATS = "CSV or TSV text (UTF-8, optionally gzipped), Parquet, NPY or NPZ"
_GZIP_MAGIC = b"\x1f\x8b"


class _Prefixed:
    """A stream whose first bytes were already read: ``head``, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        head, self._head = self._head, b""
        if size is not None and 0 <= size <= len(head):
            self._head = head[size:]
            return head[:size]
        more = self._stream.read(-1 if size is None or size < 0 else size - len(head))
        return head + (more.encode() if isinstance(more, str) else bytes(more))


def _read_stdin_bytes(stream: BinaryIO, where: str) -> bytes:
    """All of standard input. Binary formats (told by their first bytes) are read whole;
    text goes through :func:`~otcli.io.text.read_stream`'s bounds (a NUL byte, or 64 MiB
    without a complete row, stops it: ``/dev/zero`` piped in is refused, not read forever)."""
    head = stream.read(8)  # the longest magic, and what a refusal shows
    head = head.encode() if isinstance(head, str) else bytes(head)
    if head.startswith((b"PAR1", _NPY_MAGIC, _ZIP_MAGIC, _GZIP_MAGIC)):
        rest = stream.read()
        return head + (rest.encode() if isinstance(rest, str) else bytes(rest))
    try:
        return read_stream(_Prefixed(head, stream), where)  # type: ignore[arg-type]
    except InputError as exc:
        if exc.what != _BINARY:
            raise
        raise InputError(
            where,
            f"is binary data in no format standard input takes (it starts with bytes "
            f"{head.hex(' ')}); stdin takes {STDIN_FORMATS}, told apart by their first "
            "bytes; give other files by path",
        ) from None


def _read_stdin(
    data: bytes,
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    select: dict[str, Any],
    *,
    unzipped: bool = False,
) -> Picked:
    """Standard input by content: Parquet ``PAR1``, NPY ``\\x93NUMPY``, NPZ (zip) ``PK``,
    gzip ``1f 8b`` (decompressed, then told apart again), else CSV or TSV text."""
    if data.startswith(b"PAR1"):
        return read_parquet(where, columns, weights, data=data, **select)
    if data.startswith(_NPY_MAGIC):
        return read_npy(where, columns, weights, data=data, **select)
    if data.startswith(_ZIP_MAGIC):
        return read_npz(where, columns, weights, data=data, **select)
    if data.startswith(_GZIP_MAGIC) and not unzipped:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(where, f"is not valid gzip data ({exc})") from None
        return _read_stdin(inner, where, columns, weights, select, unzipped=True)
    head = data[:_SNIFF_BYTES]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) <= _SNIFF_BYTES)
        text = b"\x00" not in head
    except UnicodeDecodeError:
        text = False
    if not text:
        gz = "gzip holding " if unzipped else ""
        raise InputError(
            where,
            f"is {gz}binary data in no format standard input takes (it starts with bytes "
            f"{data[:8].hex(' ')}); stdin takes {STDIN_FORMATS}, told apart by their first "
            "bytes; give other files by path",
        )
    return read_text(data, _text_format(head), where, columns, weights, **select)


def _text_format(head: bytes) -> TextFormat:
    """TSV when the first line that is not blank or a comment has tabs and no commas, else CSV."""
    for line in head.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            return TSV if b"\t" in line and b"," not in line else CSV
    return CSV


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

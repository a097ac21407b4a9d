"""Point-cloud readers and matrix writers, chosen by file extension.

Readers turn a file (or CSV on stdin) into a validated :class:`~otcli.cloud.Cloud`; writers put
coupling and cost matrices on disk block by block, through a temporary file that is renamed
into place only when the write finished, so a failed run leaves no partial output.

Everything the user can get wrong raises :class:`~otcli.errors.InputError` (reading) or
:class:`~otcli.errors.OptionError` (output paths) with a message that names the file, the line or
column, and the fix; no raw pyarrow, numpy or OS exception escapes a reader.

This module never imports torch or rich, and imports pyarrow only inside the functions that need
it, so ``otdist --help`` (which imports the CLI, which imports this) stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
import os
import re
import secrets
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np

from otcli.cloud import Cloud, make_cloud
from otcli.errors import InputError, OptionError, OtcliError

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "atomic_write",
    "check_output_path",
    "read_cloud",
    "write_matrix",
]

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
#: Extensions :func:`write_matrix` understands: ``.npy`` dense, the others long format.
OUTPUT_SUFFIXES = (".npy", ".csv", ".tsv", ".parquet")

ColumnKey = str | int

# What pyarrow's CSV reader accepts as a float64 (checked against it): used to detect a header
# and, on the slow error path, to find the cell pyarrow refused.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.I)
# Whole-line comments and whitespace-only lines in CSV/TSV, blanked so pyarrow skips them;
# the regex is slow, so it runs only when some line starts with a blank or '#'.
_BLANKABLE_LINE = re.compile(rb"(?m)^(?:[ \t]+|[ \t]*#[^\r\n]*)\r?$")
_COMMENT = re.compile(rb"#[^\r\n]*")
_IS_BLANK = np.zeros(256, dtype=bool)  # byte → is a field gap in TXT
_IS_BLANK[list(b" \t\f\v\r")] = True
_NON_SPACE = re.compile(rb"\S")
_UTF8_BOM = b"\xef\xbb\xbf"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_LONG_CHUNK = 1 << 20  # entries per record batch when writing long format


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


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
        try:
            raw = stream.read()
        except OSError as exc:
            raise InputError(where, f"cannot read standard input ({_os_reason(exc)})") from None
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        points, w = _read_text(data, _CSV, where, columns, weights)
        return make_cloud(points, w, where)
    where = str(name)
    if os.path.isdir(where):
        raise InputError(where, "is a directory, not a file")
    suffix = _input_suffix(where)
    if suffix == ".parquet":
        points, w = _read_parquet(where, columns, weights)
    elif suffix == ".npy":
        points, w = _read_npy(where, columns, weights)
    elif suffix == ".npz":
        points, w = _read_npz(where, columns, weights)
    else:
        data = _read_bytes(where, gzipped=suffix.endswith(".gz"))
        fmt = {".csv": _CSV, ".tsv": _TSV, ".txt": _TXT}[suffix.removesuffix(".gz")]
        points, w = _read_text(data, fmt, where, columns, weights)
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


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.contextmanager
def _open(where: str) -> Iterator[BinaryIO]:
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
        raise InputError(where, f"cannot open the file ({_os_reason(exc)})") from None
    with f:
        yield f


def _read_bytes(where: str, *, gzipped: bool) -> bytes:
    with _open(where) as f:
        try:
            data = f.read()
        except OSError as exc:
            raise InputError(where, f"cannot read the file ({_os_reason(exc)})") from None
    if gzipped and data:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(
                where, f"is not a valid gzip file ({exc}); decompress it or drop the .gz suffix"
            ) from None
    return data


# --- column selection (all formats) ---------------------------------------------------------


def _select(
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


def _column_label(names: Sequence[str], k: int, has_header: bool) -> str:
    return f"column {names[k]!r}" if has_header else f"column {k} (0-based)"


# --- CSV / TSV / TXT ------------------------------------------------------------------------


@dataclass(frozen=True)
class _TextFormat:
    """How one text flavour splits a line: ``delimiter`` (after normalising) and quoting."""

    name: str
    delimiter: str
    quoted: bool  # CSV-style "quoted fields"
    whitespace: bool  # any run of spaces/tabs separates fields; '#' starts a comment


_CSV = _TextFormat("comma", ",", quoted=True, whitespace=False)
_TSV = _TextFormat("tab", "\t", quoted=True, whitespace=False)
_TXT = _TextFormat("whitespace", " ", quoted=False, whitespace=True)


def _normalise_text(data: bytes, fmt: _TextFormat) -> bytes:
    """Blank comments and whitespace-only lines, keeping line numbers, so pyarrow can parse.

    For TXT every gap between fields becomes one space and lines lose their leading and
    trailing blanks. Regexes run only where they are known to match: one over every line of
    a large file costs seconds, the numpy scans a few hundredths.
    """
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if not fmt.whitespace:
        if _some_line_starts_blank(data):
            data = _BLANKABLE_LINE.sub(b"", data)
        return data
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    return _squeeze_blanks(data)


def _squeeze_blanks(data: bytes) -> bytes:
    """Each run of blanks becomes one space; blanks at the start or end of a line go."""
    raw = np.frombuffer(data, dtype=np.uint8)
    blank = _IS_BLANK[raw]
    keep = ~blank
    keep[1:] |= ~blank[:-1]  # the first blank of each run stays...
    squeezed = raw[keep]
    squeezed[_IS_BLANK[squeezed]] = ord(" ")  # ...as a space
    edge = np.ones(len(squeezed) + 2, dtype=bool)  # line breaks, and the ends of the text
    edge[1:-1] = squeezed == ord("\n")
    drop = squeezed == ord(" ")
    drop &= edge[:-2] | edge[2:]
    return squeezed[~drop].tobytes()


def _some_line_starts_blank(data: bytes) -> bool:
    """Whether a line starts with a space, tab or '#' (a vectorised scan: ~20 ms per 100 MB)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = np.flatnonzero(raw[:-1] == ord("\n")) + 1
    firsts = np.concatenate([raw[:1], raw[starts]])
    return bool(np.isin(firsts, np.frombuffer(b" \t#", dtype=np.uint8)).any())


def _content_lines(data: bytes, pos: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(start, end, line)`` for each non-empty line from byte ``pos`` on."""
    size = len(data)
    while pos < size:
        nl = data.find(b"\n", pos)
        end = size if nl < 0 else nl
        line = data[pos:end].rstrip(b"\r")
        if line:
            yield pos, end, line
        pos = end + 1


def _split(line: str, fmt: _TextFormat) -> list[str]:
    if fmt.quoted:
        return next(csv.reader([line], delimiter=fmt.delimiter), [""])
    return line.split(fmt.delimiter)


def _is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell.strip()) is not None


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """A header has a non-number field, unless it is a label column of headerless data."""
    words = [k for k, cell in enumerate(first) if cell.strip() and not _is_number(cell)]
    if not words:
        return False
    filled = sum(1 for cell in first if cell.strip())
    if second is None or len(second) != len(first) or len(words) == filled:
        return True
    # A mixed line (numbers and words): a header if some word sits above a number.
    return any(_is_number(second[k]) for k in words)


def _line_number(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def _decode_line(line: bytes, lineno: int, where: str) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            where,
            f"line {lineno} is not UTF-8 text; is this a binary file, or text in another "
            "encoding? Save it as UTF-8",
        ) from None


def _read_text(
    data: bytes,
    fmt: _TextFormat,
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """CSV/TSV/TXT bytes → (points, weights): pyarrow parses, Python explains failures."""
    if _NON_SPACE.search(data) is None:
        raise InputError(where, "the file is empty")
    if b"\x00" in data:
        raise InputError(
            where,
            "looks like a binary file, not text (it contains NUL bytes, as UTF-16 text also "
            "does); check the file and its extension, and save text as UTF-8",
        )
    data = _normalise_text(data, fmt)
    lines = _content_lines(data, 0)
    first = next(lines, None)
    if first is None:
        raise InputError(where, "holds no data (only comments and blank lines)")
    first_no = _line_number(data, first[0])
    first_fields = _split(_decode_line(first[2], first_no, where), fmt)
    second = next(lines, None)
    second_fields = None
    if second is not None:
        second_fields = _split(second[2].decode("utf-8", "replace"), fmt)
    has_header = _is_header(first_fields, second_fields)
    if has_header:
        names = [cell.strip() for cell in first_fields]
        if second is None:
            raise InputError(where, f"has a header line (line {first_no}) but no data rows")
        body = first[1] + 1
    else:
        names = [str(k) for k in range(len(first_fields))]
        body = first[0]
    coords, w_idx = _select(names, columns, weights, where)
    needed = list(dict.fromkeys([*coords, *([] if w_idx is None else [w_idx])]))

    def explain(reason: str) -> NoReturn:
        _explain_text(data, fmt, body, names, needed, has_header, first_no, where, reason)

    table = _arrow_parse(data, body, fmt, len(names), needed, explain)
    cols = {k: table.column(f"c{k}") for k in needed}
    if any(col.null_count for col in cols.values()):
        explain("a value is missing")
    arrays = {k: col.to_numpy() for k, col in cols.items()}
    points = np.column_stack([arrays[k] for k in coords])
    w = None if w_idx is None else arrays[w_idx]
    if not np.isfinite(points).all() or (w is not None and not np.isfinite(w).all()):
        explain("a value is not a finite number")
    return points, w


def _arrow_parse(
    data: bytes,
    body: int,
    fmt: _TextFormat,
    n_cols: int,
    needed: list[int],
    explain: Callable[[str], NoReturn],
) -> Any:
    """Parse the data lines with pyarrow, reading only the ``needed`` columns as float64."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    internal = [f"c{k}" for k in range(n_cols)]  # header names may repeat or be empty
    try:
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[body:]),
            read_options=pacsv.ReadOptions(column_names=internal),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                quote_char='"' if fmt.quoted else False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=[internal[k] for k in needed],
                column_types={internal[k]: pa.float64() for k in needed},
                null_values=[""],
            ),
        )
    except pa.ArrowException as exc:
        explain(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _explain_text(
    data: bytes,
    fmt: _TextFormat,
    body: int,
    names: list[str],
    needed: list[int],
    has_header: bool,
    first_no: int,
    where: str,
    reason: str,
) -> NoReturn:
    """Slow path after pyarrow refused the data: find the first bad line and say what is wrong.

    ``reason`` (pyarrow's complaint) is the message only if no line shows the problem.
    """
    for start, _end, raw in _content_lines(data, body):
        fields = _split(raw.decode("utf-8", "replace"), fmt)
        if len(fields) != len(names):
            lineno = _line_number(data, start)
            what = "the header" if has_header else "the first row"
            raise InputError(
                where,
                f"line {lineno} has {_fields(len(fields))} but {what} (line {first_no}) has "
                f"{len(names)}; every row needs the same number of {fmt.name}-separated fields",
            )
        for k in needed:
            cell = fields[k].strip()
            problem = _cell_problem(cell, fmt, len(names) == 1)
            if problem:
                lineno = _line_number(data, start)
                label = _column_label(names, k, has_header)
                raise InputError(where, f"line {lineno}, {label}: {problem}")
    raise InputError(where, f"cannot read the {fmt.name}-separated text ({reason})")


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"


def _cell_problem(cell: str, fmt: _TextFormat, one_column: bool) -> str | None:
    if not cell:
        return "the value is empty; fill it in or drop the row"
    if not _is_number(cell):
        hint = "use --columns to pick only the numeric columns (leave out label columns)"
        if one_column and re.search(r"[,;\t |]", cell):
            hint += f"; is the file really {fmt.name}-separated?"
        return f"{cell!r} is not a number; {hint}"
    if not math.isfinite(float(cell)):
        return f"{cell!r} is not a finite number; clean the data or drop the row"
    return None


# --- Parquet ---------------------------------------------------------------------------------


def _read_parquet(
    where: str, columns: Sequence[ColumnKey] | None, weights: ColumnKey | None
) -> tuple[np.ndarray, np.ndarray | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def invalid(exc: Exception) -> InputError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InputError(where, f"is not a valid Parquet file ({reason})")

    with _open(where) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise InputError(where, "the file is empty")
        try:
            pfile = pq.ParquetFile(f)
            schema = pfile.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise invalid(exc) from None
        names = list(schema.names)
        coords, w_idx = _select(names, columns, weights, where)
        needed = list(dict.fromkeys([*coords, *([] if w_idx is None else [w_idx])]))
        for k in needed:
            _check_parquet_type(schema.field(k).type, names[k], where)
        try:
            table = pfile.read(columns=[names[k] for k in needed])
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise invalid(exc) from None
    if table.num_rows == 0:
        raise InputError(where, "has no data rows")
    arrays = {}
    for pos, k in enumerate(needed):
        col = table.column(pos)
        if col.null_count:
            row = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
            raise InputError(
                where,
                f"column {names[k]!r} has {col.null_count} missing value(s), the first at row "
                f"{row} (0-based); fill them in or drop those rows",
            )
        values = col.cast(pa.float64(), safe=False).to_numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(
                where,
                f"column {names[k]!r} holds {values[bad[0]]} at row {int(bad[0])} (0-based), "
                "not a finite number; clean the data or drop those rows",
            )
        arrays[k] = values
    points = np.column_stack([arrays[k] for k in coords])
    return points, None if w_idx is None else arrays[w_idx]


def _check_parquet_type(typ: Any, name: str, where: str) -> None:
    import pyarrow as pa

    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return
    raise InputError(
        where,
        f"column {name!r} has type {typ}, not a number; use --columns to pick only the "
        "numeric columns",
    )


# --- NPY / NPZ -------------------------------------------------------------------------------

_PICKLE_REFUSED = "otcli never unpickles files; save a plain numeric array with np.save/np.savez"


def _read_npy(
    where: str, columns: Sequence[ColumnKey] | None, weights: ColumnKey | None
) -> tuple[np.ndarray, np.ndarray | None]:
    with _open(where) as f:
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
    return _array_columns(array, None, columns, weights, where)


def _read_npz(
    where: str, columns: Sequence[ColumnKey] | None, weights: ColumnKey | None
) -> tuple[np.ndarray, np.ndarray | None]:
    with _open(where) as f:
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
    return _array_columns(points, w, columns, weights, where)


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
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pick coordinate and weight columns of an (n, d) or (n,) array by 0-based index."""
    _check_array(array, where, "the points array")
    if array.ndim == 1:
        array = array[:, None]
    if array.shape[0] == 0:
        raise InputError(where, "the points array is empty (0 rows)")
    coords, w_idx = _select([str(k) for k in range(array.shape[1])], columns, weights, where)
    points = array[:, coords].astype(np.float64)
    if w_idx is not None:
        w = array[:, w_idx].astype(np.float64)
    return points, w


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def check_output_path(
    path: str | os.PathLike[str], option: str, suffixes: Sequence[str] = OUTPUT_SUFFIXES
) -> Path:
    """Check an output path before any long work, so a typo fails in a second, not an hour.

    The extension must be one of ``suffixes`` (default :data:`OUTPUT_SUFFIXES`), the parent
    directory must exist and be writable, and the path must not be a directory. Raises
    :class:`~otcli.errors.OptionError` naming ``option`` (e.g. ``--coupling``) and the path.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in suffixes:
        raise OptionError(
            option,
            f"{str(path)!r} has unsupported file type {suffix or '(none)'!r}; use one of "
            f"{', '.join(suffixes)}",
        )
    if out.is_dir():
        raise OptionError(option, f"{str(path)!r} is a directory; give a file name")
    parent = out.parent
    if not parent.exists():
        raise OptionError(
            option, f"directory {str(parent)!r} of {str(path)!r} does not exist; create it first"
        )
    if not parent.is_dir():
        raise OptionError(option, f"{str(parent)!r} in {str(path)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(option, f"cannot write to directory {str(parent)!r} (permission denied)")
    return out


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary name is ``.<name>.<random>.tmp<suffix>``: hidden, unique, in the same
    directory (so :func:`os.replace` is an atomic rename) and ending in the real suffix (so
    writers such as ``np.save`` do not append another). On any exception, including
    ``KeyboardInterrupt``, the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


Block = tuple[int, int, np.ndarray]


def write_matrix(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    shape: tuple[int, int],
    *,
    threshold: float,
    dense_limit_bytes: int | None = None,
) -> None:
    """Write an ``(n, m)`` matrix given as ``(i0, j0, block)`` pieces, by the path's extension.

    The pieces let a matrix too large for memory be written as it is computed; a dense matrix
    is one piece ``(0, 0, M)``. ``.npy`` gets the dense float64 array (written through a
    memory map, block by block; refused with an OptionError beyond ``dense_limit_bytes``).
    ``.csv``/``.tsv``/``.parquet`` get long format ``i, j, value`` holding the entries with
    ``value > threshold`` (every entry when ``threshold < 0``), ordered by ``i`` then ``j``
    within each block. The file appears only once it is complete.
    """
    where = str(path)
    suffix = Path(path).suffix.lower()
    n, m = (int(s) for s in shape)
    if suffix not in OUTPUT_SUFFIXES:
        raise OptionError(
            where,
            f"unsupported output type {suffix or '(none)'!r}; use {', '.join(OUTPUT_SUFFIXES)}",
        )
    try:
        if suffix == ".npy":
            _write_npy(path, blocks, n, m, dense_limit_bytes)
        else:
            _write_long(path, blocks, n, m, threshold, suffix)
    except OSError as exc:
        raise OtcliError(where, f"cannot write the file ({_os_reason(exc)})") from exc


def _checked_block(i0: int, j0: int, block: Any, n: int, m: int) -> np.ndarray:
    b = np.asarray(block, dtype=np.float64)
    if b.ndim != 2 or i0 < 0 or j0 < 0 or i0 + b.shape[0] > n or j0 + b.shape[1] > m:
        raise ValueError(f"block at ({i0}, {j0}) of shape {b.shape} is outside the {n}×{m} matrix")
    return b


def _write_npy(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    n: int,
    m: int,
    limit: int | None,
) -> None:
    nbytes = n * m * np.dtype(np.float64).itemsize
    if limit is not None and nbytes > limit:
        raise OptionError(
            str(path),
            f"a dense {n}×{m} float64 matrix needs {nbytes / 1e9:.2f} GB, over the "
            f"{limit / 1e9:.2f} GB limit; write long format instead (.parquet or .csv, "
            "entries above the threshold)",
        )
    with atomic_write(path) as tmp:
        if n * m == 0:  # a zero-length file cannot be memory-mapped
            np.save(tmp, np.zeros((n, m)))
            return
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n, m))
        try:
            for i0, j0, block in blocks:
                b = _checked_block(i0, j0, block, n, m)
                out[i0 : i0 + b.shape[0], j0 : j0 + b.shape[1]] = b
            out.flush()
        finally:
            del out


def _long_batches(blocks: Iterable[Block], n: int, m: int, threshold: float) -> Iterator[Any]:
    """Record batches ``(i, j, value)`` of the kept entries, a bounded number of rows at once."""
    import pyarrow as pa

    for i0, j0, block in blocks:
        b = _checked_block(i0, j0, block, n, m)
        h, w = b.shape
        step = max(1, _LONG_CHUNK // max(w, 1))
        for r0 in range(0, h, step):
            part = b[r0 : r0 + step]
            if threshold < 0:
                ii, jj = np.divmod(np.arange(part.size, dtype=np.int64), w)
                values = part.reshape(-1)
            else:
                ii, jj = np.nonzero(part > threshold)  # row-major: by i, then j
                values = part[ii, jj]
            if values.size:
                yield pa.record_batch(
                    [
                        pa.array(ii.astype(np.int64) + (i0 + r0)),
                        pa.array(jj.astype(np.int64) + j0),
                        pa.array(values),
                    ],
                    names=["i", "j", "value"],
                )


def _write_long(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    n: int,
    m: int,
    threshold: float,
    suffix: str,
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema([("i", pa.int64()), ("j", pa.int64()), ("value", pa.float64())])
    with atomic_write(path) as tmp:
        if suffix == ".parquet":
            with pq.ParquetWriter(str(tmp), schema) as writer:
                for batch in _long_batches(blocks, n, m, threshold):
                    writer.write_batch(batch)
            return
        delimiter = "\t" if suffix == ".tsv" else ","
        with pa.OSFile(str(tmp), "wb") as sink:
            sink.write(delimiter.join(schema.names).encode() + b"\n")  # unquoted header
            options = pacsv.WriteOptions(include_header=False, delimiter=delimiter)
            with pacsv.CSVWriter(sink, schema, write_options=options) as writer:
                for batch in _long_batches(blocks, n, m, threshold):
                    writer.write_batch(batch)

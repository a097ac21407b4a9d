"""CSV, TSV and whitespace-separated TXT (optionally gzipped, or CSV on stdin) → points.

pyarrow parses the numbers (fast on large files); Python only prepares the bytes (comments and
blank lines blanked, keeping line numbers), decides whether the first line is a header, and,
when pyarrow refuses the data, finds the first bad line and explains it: wrong field count,
an empty cell, a word where a number belongs, a non-finite value.

pyarrow is imported inside the functions that parse, so importing this module stays light.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn

import numpy as np

from otcli.errors import InputError
from otcli.io.common import (
    ColumnKey,
    Picked,
    arrow_numbers,
    column_label,
    open_input,
    os_reason,
    pick_columns,
    select_columns,
    text_note,
)

# What pyarrow's CSV reader accepts as a float64 (checked against it): used to detect a header
# and, on the slow error path, to find the cell pyarrow refused.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.I)
# Whole-line comments and whitespace-only lines in CSV/TSV, blanked so pyarrow skips them;
# the regex is slow, so it runs only when some line starts with a blank or '#'.
# '#' starts a comment, but not a spreadsheet's error value in a cell (#N/A, #DIV/0!, #VALUE!,
# #REF!, #NAME?, #NUM!, #NULL!...): a row that starts with one is data, refused as not a number
# (it was dropped as a comment: 2 points read where the file has 3).
_NOT_A_CELL_ERROR = rb"(?!N/A|[A-Z][A-Z0-9_/]*[!?])"
_BLANKABLE_LINE = re.compile(rb"(?m)^(?:[ \t]+|[ \t]*#" + _NOT_A_CELL_ERROR + rb"[^\r\n]*)\r?$")
_COMMENT = re.compile(rb"#" + _NOT_A_CELL_ERROR + rb"[^\r\n]*")
_CELL_ERROR = re.compile(r"#(?:N/A|[A-Z][A-Z0-9_/]*[!?])")
_IS_BLANK = np.zeros(256, dtype=bool)  # byte → is a field gap in TXT
_IS_BLANK[list(b" \t\f\v\r")] = True
_NON_SPACE = re.compile(rb"\S")
_UTF8_BOM = b"\xef\xbb\xbf"


#: Bytes read at a time: a source that never ends (a FIFO, /dev/zero) is judged while it
#: streams, not after it filled the memory.
READ_CHUNK = 1 << 20
#: Most bytes a text reader takes before it has seen one complete row (a line with data, ended
#: by a line break): a binary stream or a gzip bomb of blanks is refused once past this.
MAX_HEAD_BYTES = 64 << 20
# A line whose first non-blank character starts data (not a '#' comment), ended by a break.
_COMPLETE_ROW = re.compile(rb"(?:\A|(?<=[\r\n]))[ \t\f\v]*[^\s#][^\r\n]*[\r\n]")
_BINARY = (
    "looks like a binary file, not text (it contains NUL bytes, as UTF-16 text also "
    "does); check the file and its extension, and save text as UTF-8"
)


def read_bytes(where: str, *, gzipped: bool) -> bytes:
    """A text file's bytes, gunzipped when ``gzipped``; read and gzip errors as InputErrors.

    Bounded like :func:`read_stream`: a FIFO, a device or a gzip bomb behind a text name is
    refused once it shows it is not text, instead of being read until memory runs out.
    """
    with open_input(where) as f:
        return read_stream(f, where, gzipped=gzipped)


def read_stream(stream: BinaryIO, where: str, *, gzipped: bool = False) -> bytes:
    """Everything ``stream`` holds, read in pieces of :data:`READ_CHUNK` bytes.

    A NUL byte stops the read at once (text never holds one: binary data, UTF-16); so does
    a head of :data:`MAX_HEAD_BYTES` without a complete row. Past the first row the text is
    read to its end (a plain file in one read, as before); if it does not fit in memory that
    is said, not a MemoryError.
    """
    source: Any = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream
    plain = not gzipped and _is_plain_file(stream)
    origin = stream.tell() if plain else 0
    parts: list[bytes] = []
    size = 0
    scan = 0  # where the search for the first complete row resumes (a line start)
    row_seen = False
    try:
        while True:
            if row_seen and plain:
                stream.seek(origin)  # one read of the whole file: no second copy of it
                return stream.read()
            chunk = source.read(READ_CHUNK)
            if not chunk:
                break
            if isinstance(chunk, str):  # a text stream (stdin in tests)
                chunk = chunk.encode()
            if b"\x00" in chunk:
                raise InputError(where, _BINARY)
            parts.append(chunk)
            size += len(chunk)
            if not row_seen:
                head = b"".join(parts)
                parts = [head]
                row_seen = _COMPLETE_ROW.search(head, scan) is not None
                scan = max(head.rfind(b"\n"), head.rfind(b"\r")) + 1
                if not row_seen and size > MAX_HEAD_BYTES:
                    raise InputError(
                        where,
                        f"no complete row (a line of data ended by a line break) in the first "
                        f"{MAX_HEAD_BYTES >> 20} MiB; is this really a text file?",
                    )
        return b"".join(parts)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(
            where, f"is not a valid gzip file ({exc}); decompress it or drop the .gz suffix"
        ) from None
    except OSError as exc:
        raise InputError(where, f"cannot read the file ({os_reason(exc)})") from None
    except MemoryError:
        raise InputError(where, "does not fit in memory; split the file") from None


def _is_plain_file(stream: BinaryIO) -> bool:
    """Whether ``stream`` is a regular file (seekable, of a known, finite size)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, AttributeError, ValueError):  # io.BytesIO has no file descriptor
        return False


@dataclass(frozen=True)
class TextFormat:
    """How one text flavour splits a line: ``delimiter`` (after normalising) and quoting."""

    name: str
    delimiter: str
    quoted: bool  # CSV-style "quoted fields"
    whitespace: bool  # any run of spaces/tabs separates fields; '#' starts a comment


CSV = TextFormat("comma", ",", quoted=True, whitespace=False)
TSV = TextFormat("tab", "\t", quoted=True, whitespace=False)
TXT = TextFormat("whitespace", " ", quoted=False, whitespace=True)
#: The format of each text extension (without ``.gz``).
TEXT_FORMATS = {".csv": CSV, ".tsv": TSV, ".txt": TXT}


def _normalise_text(data: bytes, fmt: TextFormat) -> bytes:
    """Blank comments and whitespace-only lines, keeping line numbers, so pyarrow can parse.

    For TXT every gap between fields becomes one space and lines lose their leading and
    trailing blanks. Regexes run only where they are known to match: one over every line of
    a large file costs seconds, the numpy scans a few hundredths.
    """
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # Bare CR line ends (classic Mac OS): each ends a line, as pandas reads them.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
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


#: Bytes :func:`_some_line_starts_blank` compares at a time: its temporaries stay a few MB
#: (a whole 70 MB file at once made a 70 MB mask beside the text).
_SCAN_BYTES = 1 << 23


def _some_line_starts_blank(data: bytes) -> bool:
    """Whether a line starts with a space, tab or '#' (a vectorised scan: ~20 ms per 100 MB)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    blanks = np.frombuffer(b" \t#", dtype=np.uint8)
    if raw[:1].size and raw[0] in blanks:
        return True
    for start in range(0, max(0, raw.size - 1), _SCAN_BYTES):
        part = raw[start : start + _SCAN_BYTES + 1]  # one byte more: the next line's first
        starts = np.flatnonzero(part[:-1] == ord("\n")) + 1
        if np.isin(part[starts], blanks).any():
            return True
    return False


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


def _split(line: str, fmt: TextFormat, where: str, lineno: int) -> list[str]:
    """One line's fields; a line Python's csv module cannot split is refused, naming it."""
    if not fmt.quoted:
        return line.split(fmt.delimiter)
    try:
        return next(csv.reader([line], delimiter=fmt.delimiter), [""])
    except csv.Error as exc:
        if "field limit" in str(exc):
            why = (
                f"a field is longer than {csv.field_size_limit():,} characters; is the file "
                f"really {fmt.name}-separated text?"
            )
        else:
            why = f"cannot split it into {fmt.name}-separated fields ({exc})"
        raise InputError(where, f"line {lineno}: {why}") from None


def _is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell.strip()) is not None


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """A header has a non-number field, unless it is a label column of headerless data. A
    spreadsheet's error value (#N/A, #DIV/0!) names no column: a first row holding one is
    data (then refused), never a header that would drop that row silently."""
    words = [k for k, cell in enumerate(first) if cell.strip() and not _is_number(cell)]
    if not words or any(_CELL_ERROR.fullmatch(first[k].strip()) for k in words):
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


def read_text(
    data: bytes,
    fmt: TextFormat,
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    *,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
    streaming: bool = False,
) -> Picked:
    """CSV/TSV/TXT bytes → points, weights, column labels and point ids (the ``id_column``,
    read as text): pyarrow parses, Python explains failures. ``streaming``: parse with
    bounded temporaries (see :func:`_arrow_parse`), for files of millions of rows."""
    data, names, has_header, body, first_no, second_fields = _layout(data, fmt, where)
    sel = select_columns(
        names, columns, weights, where, exclude=exclude, id_column=id_column,
        has_header=has_header,
    )  # fmt: skip
    # With the default selection, coordinates whose first value is not a number may be text
    # columns (a species name): read as text, they are left out if no value is a number.
    maybe_text = []
    if sel.by_default and has_header and second_fields is not None:
        maybe_text = [
            k
            for k in sel.coords
            if k < len(second_fields) and not _is_number(second_fields[k].strip())
        ]
        if len(maybe_text) == len(sel.coords):
            maybe_text = []  # no numeric column would be left: the error names the cell
    needed = [k for k in sel.numeric if k not in maybe_text]

    def explain(reason: str) -> NoReturn:
        _explain_text(data, fmt, body, names, needed, has_header, first_no, where, reason)

    ids = [] if sel.ids is None else [sel.ids]
    table = _arrow_parse(
        data, body, fmt, len(names), needed, explain, text=ids + maybe_text, streaming=streaming
    )
    notes = []
    if maybe_text:
        numbers = [k for k in maybe_text if _holds_a_number(table.column(f"c{k}"))]
        if numbers:  # a numeric column with a bad value: read as numbers, and explained
            needed = sorted([*needed, *numbers])
            explain(f"column {column_label(names, numbers[0], has_header)} is not numeric")
        notes.append(text_note(names, maybe_text, "text"))
        sel = sel.without(maybe_text)
    cols = {k: table.column(f"c{k}") for k in needed}
    if any(col.null_count for col in cols.values()):
        explain("a value is missing")
    arrays = {k: arrow_numbers(col) for k, col in cols.items()}
    if not all(np.isfinite(v).all() for v in arrays.values()):
        explain("a value is not a finite number")
    ids = None if sel.ids is None else table.column(f"c{sel.ids}").to_pylist()  # type: ignore[assignment]
    return pick_columns(sel, arrays, ids, where, notes)


def read_text_cells(
    data: bytes, fmt: TextFormat, where: str, skip: Sequence[int] = ()
) -> tuple[list[str], bool, dict[int, Any]]:
    """The columns of CSV/TSV/TXT bytes as text, exactly as written (quotes removed), but
    those in ``skip``: the column names, whether they came from a header, and the pyarrow
    string columns by position, one row per data row, as :func:`read_text` counts them.
    For writing a file's rows back with some columns replaced (``otdist map``)."""
    data, names, has_header, body, first_no, _ = _layout(data, fmt, where)

    def explain(reason: str) -> NoReturn:
        _explain_text(data, fmt, body, names, [], has_header, first_no, where, reason)

    keep = [k for k in range(len(names)) if k not in set(skip)]
    if not keep:  # pyarrow would read every column for an empty list
        return names, has_header, {}
    table = _arrow_parse(data, body, fmt, len(names), [], explain, text=keep, streaming=True)
    return names, has_header, {k: table.column(f"c{k}") for k in keep}


def _layout(
    data: bytes, fmt: TextFormat, where: str
) -> tuple[bytes, list[str], bool, int, int, list[str] | None]:
    """The normalised bytes, the column names, whether line one is a header, the byte where
    the data rows start, the first line's number and the second line's fields."""
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
    first_fields = _split(_decode_line(first[2], first_no, where), fmt, where, first_no)
    second = next(lines, None)
    second_fields = None
    if second is not None:
        second_no = _line_number(data, second[0])
        second_fields = _split(second[2].decode("utf-8", "replace"), fmt, where, second_no)
    has_header = _is_header(first_fields, second_fields)
    if has_header:
        names = [cell.strip() for cell in first_fields]
        if second is None:
            raise InputError(where, f"has a header line (line {first_no}) but no data rows")
        body = first[1] + 1
    else:
        names = [str(k) for k in range(len(first_fields))]
        body = first[0]
    return data, names, has_header, body, first_no, second_fields


def _holds_a_number(column: Any) -> bool:
    """Whether any value of a text column reads as a number (or is empty, a missing one)."""
    return any(v is None or not v.strip() or _is_number(v.strip()) for v in column.to_pylist())


def _arrow_parse(
    data: bytes,
    body: int,
    fmt: TextFormat,
    n_cols: int,
    needed: list[int],
    explain: Callable[[str], NoReturn],
    text: Sequence[int] = (),
    streaming: bool = False,
) -> Any:
    """Parse the data lines with pyarrow, reading only the ``needed`` columns as float64
    (and the columns ``text``, the points' ids and possible label columns, as strings).
    ``streaming`` converts block by block (pyarrow's streaming reader): a little slower,
    but its temporaries are a few blocks, not about the size of the text (+40 MB instead
    of +100 MB for a 70 MB CSV of a million points)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    internal = [f"c{k}" for k in range(n_cols)]  # header names may repeat or be empty
    types = {internal[k]: pa.float64() for k in needed}
    for k in text:
        types[internal[k]] = pa.string()
    try:
        reader = (pacsv.open_csv if streaming else pacsv.read_csv)(
            pa.BufferReader(pa.py_buffer(data)[body:]),
            read_options=pacsv.ReadOptions(column_names=internal),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                quote_char='"' if fmt.quoted else False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(types),
                column_types=types,
                null_values=[""],
            ),
        )
        return reader.read_all() if streaming else reader
    except pa.ArrowException as exc:
        explain(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _explain_text(
    data: bytes,
    fmt: TextFormat,
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
    lineno, counted = 1, 0  # the line number at byte ``counted``, kept up as lines go by
    for start, _end, raw in _content_lines(data, body):
        lineno += data.count(b"\n", counted, start)
        counted = start
        fields = _split(raw.decode("utf-8", "replace"), fmt, where, lineno)
        if len(fields) != len(names):
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
                label = column_label(names, k, has_header)
                raise InputError(where, f"line {lineno}, {label}: {problem}")
    raise InputError(where, f"cannot read the {fmt.name}-separated text ({reason})")


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"


def _cell_problem(cell: str, fmt: TextFormat, one_column: bool) -> str | None:
    if not cell:
        return "the value is empty; fill it in or drop the row"
    if not _is_number(cell):
        hint = (
            "use --columns to pick only the numeric columns, or --exclude to leave out label "
            "columns (--id for a column of point ids)"
        )
        if one_column and re.search(r"[,;\t |]", cell):
            hint += f"; is the file really {fmt.name}-separated?"
        return f"{cell!r} is not a number; {hint}"
    if not math.isfinite(float(cell)):
        return f"{cell!r} is not a finite number; clean the data or drop the row"
    return None

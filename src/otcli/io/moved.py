"""A file of points read whole and written back with its coordinates moved (``otdist map``).

:func:`read_point_table` reads a file with the project's readers, so its coordinates get
the same checks and messages as any cloud (a NaN names its line and column), and keeps
every column of the file beside them, in order: text columns exactly as written, Parquet
columns with their types, NPY columns as numbers. :func:`write_moved` writes the rows back a
chunk at a time, the coordinate columns replaced by what ``move`` returns for the chunk and
every other column (ids, labels, weights) carried through unchanged, in the format of the
output's extension. The file appears only once complete (:func:`~otcli.io.writers.atomic_write`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from otcli.cloud import Cloud
from otcli.errors import InputError, OptionError, OtcliError
from otcli.io.common import ColumnKey, arrow_array, open_input, os_reason, require_regular_file

#: Extensions a moved file may be written as.
MOVED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".npy")
#: Rows moved and written at a time: the memory a chunk needs is a few MB whatever the file.
CHUNK_ROWS = 1 << 14
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": " "}


@dataclass(frozen=True)
class PointTable:
    """A file's points (``cloud``, checked as every reader checks them) and all its columns.

    ``names`` are the file's column names (a header's, else 0-based indices as text),
    ``header`` whether they came from one, ``coords`` the positions of the coordinate
    columns (in ``cloud.points``' order) and ``carried`` every other column by position, as
    pyarrow arrays. ``flat``: a 1-D ``.npy`` (points on a line), written back 1-D.
    """

    cloud: Cloud
    names: tuple[str, ...]
    header: bool
    coords: tuple[int, ...]
    carried: dict[int, Any]
    flat: bool = False
    metadata: dict[bytes, bytes] | None = None

    @property
    def n(self) -> int:
        return self.cloud.n


def read_point_table(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[ColumnKey] | None = None,
    weights: ColumnKey | None = None,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
) -> PointTable:
    """Read ``path`` (.csv .tsv .txt, each also .gz, .parquet, .npy) whole: its cloud, with
    the columns, weights and ids chosen as :func:`~otcli.io.read_cloud` chooses them, and
    every other column of the file. Raises :class:`~otcli.errors.InputError` naming the
    file."""

    from otcli.io.clouds import _cloud, _input_suffix
    from otcli.io.npy import _array_columns, load_npy_array
    from otcli.io.parquet import read_parquet
    from otcli.io.text import TEXT_FORMATS, read_bytes, read_text, read_text_cells

    where = os.fspath(path)
    if os.path.isdir(where):
        raise InputError(where, "is a directory, not a file")
    options = {"exclude": exclude, "id_column": id_column}
    suffix = _input_suffix(where)
    flat = False
    if suffix == ".npz":
        raise InputError(
            where,
            "an .npz archive cannot be written back with its points moved; save its points "
            "array as .npy (np.save), or as .csv or .parquet",
        )
    metadata = None
    if suffix == ".npy":
        require_regular_file(where, suffix)
        array = load_npy_array(where)
        picked = _array_columns(array, None, columns, weights, where, **options)
        flat = array.ndim == 1
        full = array[:, None] if flat else array
        names, header = [str(k) for k in range(full.shape[1])], False
        carried = {k: arrow_array(np.ascontiguousarray(full[:, k]), _arrow_type(full))
                   for k in range(full.shape[1]) if k not in picked.coords}  # fmt: skip
        del array, full
    elif suffix == ".parquet":
        require_regular_file(where, suffix)
        picked = read_parquet(where, columns, weights, **options)
        names, carried, metadata = _parquet_columns(where, picked.coords)
        header = True
    else:
        data = read_bytes(where, gzipped=suffix.endswith(".gz"))
        fmt = TEXT_FORMATS[suffix.removesuffix(".gz")]
        picked = read_text(data, fmt, where, columns, weights, **options, streaming=True)
        names, header, carried = read_text_cells(data, fmt, where, skip=picked.coords)
        del data
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # the parsers' temporaries (~100 MB for 70 MB)
    rows, coords = picked.points.shape[0], picked.coords
    for column in carried.values():
        if len(column) != rows:  # the two reads parse the same bytes: never
            raise InputError(where, f"read {len(column)} rows beside {rows} points")
    cloud = _cloud(picked, where)
    del picked
    return PointTable(cloud, tuple(names), header, coords, carried, flat, metadata)


def _arrow_type(array: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.float64() if array.dtype.kind == "f" else pa.from_numpy_dtype(array.dtype)


def _parquet_columns(
    where: str, coords: tuple[int, ...]
) -> tuple[list[str], dict[int, Any], dict[bytes, bytes] | None]:
    """A Parquet file's column names, its columns other than ``coords`` (by position, with
    their types) and its schema metadata (pandas', kept for the output)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_input(where) as f:
        try:
            pfile = pq.ParquetFile(f)
            names = list(pfile.schema_arrow.names)
            keep = [k for k in range(len(names)) if k not in coords]
            unique = len(set(names)) == len(names)
            if unique:
                table = pfile.read(columns=[names[k] for k in keep])
                carried = {k: table.column(pos) for pos, k in enumerate(keep)}
            else:  # repeated names: by name pyarrow reads the first; go by position
                table = pfile.read()
                carried = {k: table.column(k) for k in keep}
        except (pa.ArrowException, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(where, f"is not a valid Parquet file ({reason})") from None
    return names, carried, pfile.schema_arrow.metadata


def check_moved_output(table: PointTable, path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output that cannot hold ``table``'s columns: ``.npy``
    holds numbers only, so a text column (ids, labels) needs a table format."""
    if Path(path).suffix.lower() != ".npy":
        return
    for k, column in table.carried.items():
        if _numbers(column) is None:
            name = table.names[k]
            shown = f"column {name!r}" if table.header else f"column {k} (0-based)"
            raise OptionError(
                option,
                f"{os.fspath(path)!r}: .npy holds numbers only, and {shown} of "
                f"{table.cloud.source} is not numeric; write .csv, .tsv or .parquet to keep it",
            )


def _numbers(column: Any) -> np.ndarray | None:
    """A column as float64 numbers, or None where it holds something else (text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        return None
    try:
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def write_moved(
    path: str | os.PathLike[str],
    table: PointTable,
    move: Callable[[np.ndarray], np.ndarray],
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``table``'s rows to ``path`` with the coordinate columns replaced by
    ``move(points)`` ((r, d) → (r, d), called on chunks of ``chunk_rows`` rows) and every
    other column as it was, in order. The format is ``path``'s extension
    (:data:`MOVED_SUFFIXES`); ``progress(done, total)`` hears after each chunk."""
    from otcli.io.writers import atomic_write

    where = os.fspath(path)
    suffix = Path(where).suffix.lower()
    check_moved_output(table, path, "-o")
    chunks = _chunks(table, move, chunk_rows, progress)
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as sink:
            if suffix == ".npy":
                _write_npy(sink, table, chunks)
            elif suffix == ".parquet":
                _write_parquet(sink, table, chunks)
            else:
                _write_text(sink, table, chunks, _DELIMITERS[suffix])
    except OSError as exc:
        raise OtcliError(where, f"cannot write the file ({os_reason(exc)})") from None


def _chunks(
    table: PointTable,
    move: Callable[[np.ndarray], np.ndarray],
    chunk_rows: int,
    progress: Callable[[int, int], None] | None,
) -> Any:
    """Record batches of the output: the file's columns, the coordinates moved."""
    import pyarrow as pa

    n, points = table.n, table.cloud.points
    position = {k: pos for pos, k in enumerate(table.coords)}
    for r0 in range(0, n, max(1, chunk_rows)):
        r1 = min(n, r0 + chunk_rows)
        moved = np.asarray(move(points[r0:r1]), dtype=np.float64)  # (r, d)
        arrays = []
        for k in range(len(table.names)):
            if k in position:
                arrays.append(arrow_array(np.ascontiguousarray(moved[:, position[k]]),
                                          pa.float64()))  # fmt: skip
            else:
                column = table.carried[k].slice(r0, r1 - r0)
                arrays.append(getattr(column, "combine_chunks", lambda c=column: c)())
        yield pa.record_batch(arrays, names=list(table.names))
        if progress is not None:
            progress(r1, n)


def _write_text(sink: Any, table: PointTable, chunks: Any, delimiter: str) -> None:
    """Rows of delimited text: a header where X had one, every cell quoted only where it
    must be (a delimiter, quote or line break in it), as X's own cells were written."""
    if table.header:
        line = io.StringIO()
        csv.writer(line, delimiter=delimiter, lineterminator="\n").writerow(table.names)
        sink.write(line.getvalue().encode())
    for batch in chunks:
        rows = _text_rows(batch, delimiter)
        sink.write(("\n".join(rows) + "\n").encode())


def _text_rows(batch: Any, delimiter: str) -> list[str]:
    """One line of text per row of ``batch`` (numbers in their shortest round-trip form)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    special = "[" + "".join({delimiter, '"', "\n", "\r"}).replace("\t", "\\t") + "]"
    cells = []
    for column in batch.columns:
        text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        cells.append(pc.if_else(pc.match_substring_regex(text, special), quoted, text))
    joined = pc.binary_join_element_wise(
        *cells, delimiter, null_handling="replace", null_replacement=""
    )
    return joined.to_pylist()


def _write_parquet(sink: Any, table: PointTable, chunks: Any) -> None:
    import pyarrow.parquet as pq

    writer = None
    for batch in chunks:
        if writer is None:
            writer = pq.ParquetWriter(sink, batch.schema.with_metadata(table.metadata))
        writer.write_batch(batch)
    if writer is not None:
        writer.close()


def _write_npy(sink: Any, table: PointTable, chunks: Any) -> None:
    """Float64 rows (1-D for a 1-D input), written a chunk at a time after the header."""
    shape = (table.n,) if table.flat else (table.n, len(table.names))
    np.lib.format.write_array_header_1_0(
        sink, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    for batch in chunks:
        block = np.column_stack([_numbers(c) for c in batch.columns]).astype("<f8")
        sink.write(np.ascontiguousarray(block).tobytes())


__all__ = [
    "CHUNK_ROWS",
    "MOVED_SUFFIXES",
    "PointTable",
    "check_moved_output",
    "read_point_table",
    "write_moved",
]

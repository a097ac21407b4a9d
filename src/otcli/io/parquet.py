"""Parquet → points: the chosen columns only, checked for numeric type, nulls and finiteness.

Only the needed columns are read. pyarrow is imported inside the reader, so importing this
module stays light; its exceptions become :class:`~otcli.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from otcli.errors import InputError
from otcli.io.common import (
    ColumnKey,
    Picked,
    arrow_numbers,
    open_input,
    pick_columns,
    select_columns,
    text_note,
)


def read_parquet(
    where: str,
    columns: Sequence[ColumnKey] | None,
    weights: ColumnKey | None,
    *,
    exclude: Sequence[ColumnKey] | None = None,
    id_column: ColumnKey | None = None,
    data: bytes | None = None,
) -> Picked:
    """A Parquet file's points and weights (numeric columns only, no nulls, all finite), with
    the column names used and the ``id_column`` as text. ``data``: the file's bytes (stdin)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def invalid(exc: Exception) -> InputError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InputError(where, f"is not a valid Parquet file ({reason})")

    with open_input(where, data) as f:
        if f.seek(0, os.SEEK_END) == 0:  # a file object: also an fsspec URL's
            raise InputError(where, "the file is empty")
        f.seek(0)
        try:
            pfile = pq.ParquetFile(f)
            schema = pfile.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise invalid(exc) from None
        names = list(schema.names)
        sel = select_columns(names, columns, weights, where, exclude=exclude, id_column=id_column)
        notes = []
        index = _pandas_index_columns(schema, names)
        if sel.by_default and index and len(index) < len(sel.coords):
            listed = ", ".join(repr(names[k]) for k in index)
            notes.append(
                f"dropped column{'s' if len(index) > 1 else ''} {listed} (the pandas index, as "
                "the file's pandas metadata says); use --columns to keep "
                f"{'them' if len(index) > 1 else 'it'}"
            )
            sel = sel.without(index)
        text = [k for k in sel.coords if not _is_numeric(schema.field(k).type)]
        if sel.by_default and text and len(text) < len(sel.coords):
            kinds = sorted({str(schema.field(k).type) for k in text})
            notes.append(text_note(names, text, "of type " + " / ".join(kinds)))
            sel = sel.without(text)
        needed = sel.numeric
        for k in needed:
            _check_parquet_type(schema.field(k).type, names[k], where)
        wanted = needed + ([] if sel.ids is None else [sel.ids])
        try:
            if len(set(names)) == len(names):
                table = pfile.read(columns=[names[k] for k in wanted])
                position = {k: pos for pos, k in enumerate(wanted)}
            else:  # repeated names (x, y, x): by name pyarrow reads the first; go by position
                table = pfile.read()
                position = {k: k for k in wanted}
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise invalid(exc) from None
    if table.num_rows == 0:
        raise InputError(where, "has no data rows")
    arrays = {}
    for k in needed:
        col = table.column(position[k])
        if col.null_count:
            row = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
            raise InputError(
                where,
                f"column {names[k]!r} has {col.null_count} missing value(s), the first at row "
                f"{row} (0-based); fill them in or drop those rows",
            )
        values = arrow_numbers(col.cast(pa.float64(), safe=False))
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(
                where,
                f"column {names[k]!r} holds {values[bad[0]]} at row {int(bad[0])} (0-based), "
                "not a finite number; clean the data or drop those rows",
            )
        arrays[k] = values
    ids = None
    if sel.ids is not None:
        column = table.column(position[sel.ids]).to_pylist()
        ids = ["" if v is None else str(v) for v in column]
    return pick_columns(sel, arrays, ids, where, notes)


def _pandas_index_columns(schema: Any, names: list[str]) -> list[int]:
    """Columns the file's pandas metadata lists as the DataFrame's index (a named index
    such as ``sample_no`` was used as a coordinate: a cost of 1e6 instead of 8.45)."""
    try:
        meta = schema.pandas_metadata or {}
    except (ValueError, TypeError):  # metadata that is not pandas' JSON: no index known
        return []
    listed = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    return [k for k, name in enumerate(names) if name in listed and names.count(name) == 1]


def _is_numeric(typ: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def _check_parquet_type(typ: Any, name: str, where: str) -> None:
    if _is_numeric(typ):
        return
    raise InputError(
        where,
        f"column {name!r} has type {typ}, not a number; use --columns to pick only the "
        "numeric columns, or --exclude to leave it out (--id if it holds point ids)",
    )

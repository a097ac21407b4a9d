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
from otcli.io.common import ColumnKey, open_input, select_columns


def read_parquet(
    where: str, columns: Sequence[ColumnKey] | None, weights: ColumnKey | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A Parquet file's (points, weights): numeric columns only, no nulls, all finite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def invalid(exc: Exception) -> InputError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InputError(where, f"is not a valid Parquet file ({reason})")

    with open_input(where) as f:
        if f.seek(0, os.SEEK_END) == 0:  # a file object: also an fsspec URL's
            raise InputError(where, "the file is empty")
        f.seek(0)
        try:
            pfile = pq.ParquetFile(f)
            schema = pfile.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise invalid(exc) from None
        names = list(schema.names)
        coords, w_idx = select_columns(names, columns, weights, where)
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

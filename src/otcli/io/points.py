"""A point cloud out: ``(n, d)`` points with column names, in the format the path names.

What ``otdist barycenter`` writes. ``.npy`` holds the float64 array; ``.csv``/``.tsv`` a
header of the column names, then one row per point (floats as pyarrow writes them, which
read back to the same float64); ``.parquet`` one float64 column per coordinate. The file
appears only once complete (:func:`~otcli.io.writers.atomic_write`). pyarrow is imported
inside.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

import numpy as np

from otcli.errors import OtcliError
from otcli.io.common import arrow_array, os_reason
from otcli.io.writers import atomic_write

#: Extensions :func:`write_points` understands.
POINT_SUFFIXES = (".csv", ".tsv", ".parquet", ".npy")


def write_points(path: str | os.PathLike[str], points: np.ndarray, columns: Sequence[str]) -> None:
    """Write ``points`` (n, d) to ``path`` by its extension (:data:`POINT_SUFFIXES`, checked
    beforehand with :func:`~otcli.io.writers.check_output_path`), the coordinates named
    ``columns`` in the tables. Raises :class:`~otcli.errors.OtcliError` naming the file if
    the write fails (a full disk); the file is then left as it was."""
    data = np.ascontiguousarray(points, dtype=np.float64)
    if data.ndim != 2 or len(columns) != data.shape[1]:
        raise ValueError(f"{len(columns)} column names for points of shape {data.shape}")
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    try:
        with atomic_write(path) as tmp:
            if suffix == "npy":
                np.save(tmp, data)
            else:
                _write_table(tmp, data, columns, suffix)
    except OSError as exc:
        raise OtcliError(os.fspath(path), f"cannot write the file ({os_reason(exc)})") from exc


def _write_table(
    tmp: os.PathLike[str], data: np.ndarray, columns: Sequence[str], suffix: str
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.table(
        [arrow_array(data[:, k], pa.float64()) for k in range(data.shape[1])],
        names=[str(c) for c in columns],
    )
    # Python file objects, not path strings: pyarrow cannot open a name that is not UTF-8.
    with open(tmp, "wb") as sink:
        if suffix == "parquet":
            pq.write_table(table, sink)
            return
        delimiter = "\t" if suffix == "tsv" else ","
        header = io.StringIO()  # quoted only where a name needs it (a comma, a quote)
        csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(table.column_names)
        sink.write(header.getvalue().encode())
        options = pacsv.WriteOptions(include_header=False, delimiter=delimiter)
        pacsv.write_csv(table, sink, write_options=options)


__all__ = ["POINT_SUFFIXES", "write_points"]

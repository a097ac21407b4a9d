"""Files written earlier, read back for ``otdist show``: matrices and result tables.

What a run writes, recognised by extension and columns:

- a dense matrix: ``.npy`` (coupling, cost matrix, or a pairwise N×N matrix), memory-mapped so
  a matrix larger than memory can still be summarised block by block;
- a long-format matrix: ``.parquet``/``.csv``/``.tsv`` with columns ``i, j, value`` (absent
  entries are zero);
- a pairwise matrix with file labels: ``.csv`` whose header starts with ``file``;
- a result table: ``otdist batch`` output (``.parquet``/``.csv``/``.jsonl``, one row per pair)
  or the ``otdist pairwise`` long table (``.parquet``, columns ``i, j, a, b, cost, ...``).

numpy loads without pickles, always; pyarrow is imported inside the readers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from otcli.errors import InputError
from otcli.io.npy import _NPY_MAGIC, _PICKLE_REFUSED, _check_array
from otcli.io.tables import Journal, read_table

#: Extensions ``otdist show`` reads.
STORED_SUFFIXES = (".npy", ".parquet", ".csv", ".tsv", ".jsonl")


#: Indices of a long matrix stay below this, so that n = largest index + 1 is an int64.
MAX_INDEX = 2**63 - 1


@dataclass(frozen=True)
class DenseMatrix:
    """An n×m matrix held whole (``values`` may be a read-only memory map of the file);
    ``labels`` name the rows and columns of a labelled square pairwise matrix, else empty;
    ``row_labels`` and ``col_labels`` those of a rectangular one (``--against``)."""

    path: str
    values: np.ndarray
    labels: tuple[str, ...] = ()
    row_labels: tuple[str, ...] = ()
    col_labels: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


@dataclass(frozen=True)
class LongMatrix:
    """An n×m matrix as ``(rows[k], cols[k], values[k])`` entries; absent entries are zero.

    ``info`` is what otdist records in a ``.parquet`` file's metadata (``otcli.n``,
    ``otcli.m``, ``otcli.kind``, ``otcli.kept_sum``, ...; see
    :func:`otcli.export.matrix_metadata`). Without it (CSV, other writers) n and m are the
    largest indices plus one, so trailing rows or columns whose entries were all left out
    (below the threshold) are not counted.
    """

    path: str
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    info: dict[str, str] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        """Whether the file itself says n and m (otdist's Parquet metadata)."""
        return "otcli.n" in self.info and "otcli.m" in self.info

    @property
    def shape(self) -> tuple[int, int]:
        if self.declared:
            return int(self.info["otcli.n"]), int(self.info["otcli.m"])
        n = int(self.rows.max()) + 1 if self.rows.size else 0
        m = int(self.cols.max()) + 1 if self.cols.size else 0
        return n, m


@dataclass(frozen=True)
class ResultTable:
    """Rows of an ``otdist batch`` output (``kind`` ``batch``) or of the ``otdist pairwise``
    long table (``kind`` ``pairwise``, with ``i``, ``j``, ``a``, ``b`` per row)."""

    path: str
    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def read_stored(path: str | os.PathLike[str]) -> DenseMatrix | LongMatrix | ResultTable:
    """The matrix or result table in ``path``, told apart by extension and columns."""
    where = os.fspath(path)
    suffix = Path(where).suffix.lower()
    if suffix not in STORED_SUFFIXES:
        raise InputError(
            where,
            f"unknown file type {suffix or '(none)'!r}; otdist show reads a coupling or cost "
            "matrix (.npy, or .parquet/.csv/.tsv with columns i, j, value) or a batch or "
            "pairwise output (.parquet, .csv, .jsonl)",
        )
    if not os.path.isfile(where):
        reason = "is a directory, not a file" if os.path.isdir(where) else "no such file"
        raise InputError(where, f"{reason}; check the path")
    if suffix == ".npy":
        return _read_dense_npy(where)
    if suffix == ".jsonl":
        return _result_table(where, Journal.read(Path(where))[1], set())
    if suffix == ".csv" and _first_header_cell(where) == "file":
        return _read_labelled_csv(where)
    table = read_table(where, "table")
    names = set(table.column_names)
    if {"i", "j", "value"} <= names:
        return _long_matrix(where, table, _otcli_metadata(where) if suffix == ".parquet" else {})
    return _result_table(where, table.to_pylist(), names)


def _read_dense_npy(where: str) -> DenseMatrix:
    """The array, memory-mapped read-only where it can be (an empty one cannot be)."""
    import zipfile

    with open(where, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise InputError(where, "is not a NumPy .npy file (wrong magic bytes)")
    try:
        try:
            array = np.load(where, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "Python objects" not in str(exc):  # numpy's words for an object array
                raise
            array = np.load(where, allow_pickle=False)  # refuses it in its own words
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise InputError(
                where, f"holds Python objects (dtype=object); {_PICKLE_REFUSED}"
            ) from None
        raise InputError(where, f"the array is corrupt or truncated ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(where, f"the array is corrupt or truncated ({exc})") from None
    if array.ndim != 2:
        raise InputError(where, f"holds a {array.ndim}-D array; a matrix is 2-D (n × m)")
    _check_array(array, where, "the array")
    return DenseMatrix(where, array)


def _otcli_metadata(where: str) -> dict[str, str]:
    """The ``otcli.*`` keys of a Parquet file's metadata (empty if none, or unreadable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = pq.read_metadata(where).metadata or {}
    except (pa.ArrowException, OSError, ValueError):
        return {}
    info = {}
    for key, value in raw.items():
        name, text = key.decode("utf-8", "replace"), value.decode("utf-8", "replace")
        if name.startswith("otcli."):
            info[name] = text
    try:  # a damaged or foreign value is ignored, not trusted
        if "otcli.n" in info and (int(info["otcli.n"]) < 0 or int(info["otcli.m"]) < 0):
            raise ValueError
    except (KeyError, ValueError):
        info.pop("otcli.n", None)
        info.pop("otcli.m", None)
    return info


def _long_matrix(where: str, table: Any, info: dict[str, str]) -> LongMatrix:
    try:
        rows = table.column("i").to_numpy(zero_copy_only=False)
        cols = table.column("j").to_numpy(zero_copy_only=False)
        values = np.asarray(table.column("value").to_numpy(zero_copy_only=False), np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(where, f"columns i, j, value are not numbers ({exc})") from None
    for name, idx in (("i", rows), ("j", cols)):
        if idx.dtype.kind not in "iu" or (idx.size and idx.min() < 0):
            raise InputError(where, f"column {name} must hold row/column indices (integers ≥ 0)")
        if idx.size and int(idx.max()) >= MAX_INDEX:  # n = index + 1 must be an int64
            raise InputError(
                where,
                f"column {name} holds the index {int(idx.max())}, beyond the largest a matrix "
                f"can have ({MAX_INDEX - 1} = 2^63 − 2)",
            )
    if not np.isfinite(values).all():
        raise InputError(where, "column value holds NaN or infinite entries")
    matrix = LongMatrix(where, rows.astype(np.int64), cols.astype(np.int64), values, info)
    if matrix.declared:
        n, m = matrix.shape
        if (rows.size and rows.max() >= n) or (cols.size and cols.max() >= m):
            matrix = LongMatrix(where, matrix.rows, matrix.cols, values)  # metadata disagrees
    return matrix


def _result_table(where: str, rows: list[dict[str, Any]], names: set[str]) -> ResultTable:
    names = names or {k for r in rows for k in r}
    if not {"cost", "status"} <= names:
        raise InputError(
            where,
            "is neither a matrix (columns i, j, value) nor a batch or pairwise output "
            f"(columns cost, status); found columns {', '.join(sorted(names)) or 'none'}",
        )
    kind = "batch"
    if {"i", "j", "a", "b"} <= names:
        kind = "pairwise --against" if _rectangular(rows) else "pairwise"
    return ResultTable(where, kind, rows)


def _rectangular(rows: list[dict[str, Any]]) -> bool:
    """Whether a long pairwise table is |A|×|B| (``--against``): pairs with i > j, or an
    index naming one file as a row and another as a column. A square one has i ≤ j and one
    file per index."""
    names: dict[int, Any] = {}
    for r in rows:
        i, j = r.get("i"), r.get("j")
        if not isinstance(i, int) or not isinstance(j, int):
            continue
        if i > j or names.setdefault(i, r.get("a")) != r.get("a"):
            return True
        if names.setdefault(j, r.get("b")) != r.get("b"):
            return True
    return False


def _first_header_cell(where: str) -> str:
    with open(where, encoding="utf-8", errors="replace") as f:
        return f.readline().split(",", 1)[0].strip().strip('"')


def _read_labelled_csv(where: str) -> DenseMatrix:
    """The pairwise ``.csv``: header ``file, <label>...``, one labelled row per file (the
    same files as the columns, or with ``--against`` those of the other list)."""
    import csv

    with open(where, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    labels = tuple(lines[0][1:])
    body = lines[1:]
    if not body or any(len(r) != len(labels) + 1 for r in body):
        raise InputError(
            where, f"is not a labelled matrix (a row without {len(labels)} values, one per label)"
        )
    try:
        values = np.array([[float(v) if v else np.nan for v in r[1:]] for r in body])
    except ValueError as exc:
        raise InputError(where, f"holds a value that is not a number ({exc})") from None
    rows = tuple(r[0] for r in body)
    values = values.reshape(len(body), len(labels))
    if rows == labels:
        return DenseMatrix(where, values, labels)
    return DenseMatrix(where, values, row_labels=rows, col_labels=labels)


__all__ = ["STORED_SUFFIXES", "DenseMatrix", "LongMatrix", "ResultTable", "read_stored"]

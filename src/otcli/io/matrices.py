"""A cost matrix from a file: ``.npy`` dense n×m, or a long table ``i, j, value``.

The long formats (``.parquet``, ``.csv``, ``.tsv``) are the ones ``--cost-matrix`` writes:
0-based integer columns ``i`` and ``j`` and a numeric ``value``, one row per entry. A cost
matrix has no default entry, so every (i, j) of the n×m matrix (n − 1 and m − 1 the largest
indices) must be listed exactly once. Every value must be finite.

The size is known before the n×m array is built (from a ``.npy`` header, from the index
columns of a table), and the caller's ``check_size(n, m)`` may refuse it there, so a matrix
that will not fit is refused without being loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from otcli.errors import InputError
from otcli.io.common import open_input
from otcli.io.npy import _NPY_MAGIC, _PICKLE_REFUSED, _check_array, _load_member

#: Extensions :func:`read_cost_matrix` understands.
MATRIX_SUFFIXES = (".npy", ".parquet", ".csv", ".tsv")

SizeCheck = Callable[[int, int], None]


def read_cost_matrix(
    path: str | os.PathLike[str], check_size: SizeCheck | None = None
) -> np.ndarray:
    """The (n, m) float64 cost matrix in ``path``; InputError naming the file otherwise."""
    where = os.fspath(path)
    suffix = Path(where).suffix.lower()
    if suffix not in MATRIX_SUFFIXES:
        raise InputError(
            where,
            f"unknown cost-matrix type {suffix or '(none)'!r}; use .npy (dense n×m) or "
            ".parquet, .csv, .tsv (long format: columns i, j, value)",
        )
    if os.path.isdir(where):
        raise InputError(where, "is a directory, not a file")
    matrix = _read_npy(where, check_size) if suffix == ".npy" else _read_long(where, check_size)
    bad = ~np.isfinite(matrix)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(where, f"non-finite cost {matrix[i, j]} at i={i}, j={j} (0-based)")
    return matrix


def _read_npy(where: str, check_size: SizeCheck | None) -> np.ndarray:
    with open_input(where) as f:
        head = f.read(len(_NPY_MAGIC))
        if not head:
            raise InputError(where, "the file is empty")
        if head != _NPY_MAGIC:
            raise InputError(where, "is not a NumPy .npy file (wrong magic bytes)")
        f.seek(0)
        fmt = np.lib.format
        try:  # the header alone: the shape, before the array is read
            version = fmt.read_magic(f)
            read = fmt.read_array_header_2_0 if version == (2, 0) else fmt.read_array_header_1_0
            shape, _, dtype = read(f)
        except ValueError as exc:
            raise InputError(where, f"has a corrupt .npy header ({exc})") from None
        if dtype.hasobject:
            raise InputError(where, f"the cost matrix holds Python objects; {_PICKLE_REFUSED}")
        if len(shape) != 2:
            raise InputError(
                where, f"holds an array of shape {shape}; a cost matrix is 2-D (n rows × m columns)"
            )
        _check_size(where, *shape, check_size)
        f.seek(0)
        matrix = _load_member(lambda: np.load(f, allow_pickle=False), where, "the cost matrix")
    _check_array(matrix, where, "the cost matrix")
    return matrix.astype(np.float64, copy=False)


def _read_long(where: str, check_size: SizeCheck | None) -> np.ndarray:
    import pyarrow as pa

    from otcli.io.tables import read_table

    table = read_table(where, "cost matrix")
    missing = [c for c in ("i", "j", "value") if c not in table.column_names]
    if missing:
        raise InputError(
            where,
            f"a long cost matrix needs columns i, j, value; missing {', '.join(missing)} "
            f"(found: {', '.join(table.column_names) or 'none'})",
        )
    cols = {}
    for name in ("i", "j", "value"):
        column = table.column(name)
        if column.null_count:  # pyarrow reads empty cells, NA and nan as nulls
            k = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(where, f"column {name} is empty or NaN in row {k}")
        integer = pa.types.is_integer(column.type)
        if name != "value" and not integer:
            raise InputError(where, f"column {name} holds {column.type}, not 0-based integers")
        if name == "value" and not (integer or pa.types.is_floating(column.type)):
            raise InputError(where, f"column value holds {column.type}, not numbers")
        cols[name] = column.to_numpy()
    i, j, values = cols["i"].astype(np.int64), cols["j"].astype(np.int64), cols["value"]
    if len(values) == 0:
        raise InputError(where, "the cost matrix is empty (no rows)")
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(where, f"non-finite cost {values[k]} at i={i[k]}, j={j[k]} (0-based)")
    if i.min() < 0 or j.min() < 0:
        k = int(np.flatnonzero((i < 0) | (j < 0))[0])
        raise InputError(
            where, f"negative index i={i[k]}, j={j[k]} in row {k}; indices are 0-based"
        )
    n, m = int(i.max()) + 1, int(j.max()) + 1
    if len(values) != n * m:
        raise InputError(
            where,
            f"lists {len(values)} entries, but its largest indices make it {n}×{m} = {n * m}; "
            "a cost matrix lists every (i, j) once",
        )
    _check_size(where, n, m, check_size)
    matrix = np.full((n, m), np.nan)
    matrix[i, j] = values
    if np.isnan(matrix).any():  # as many rows as entries, so a gap means a repeat
        gi, gj = np.argwhere(np.isnan(matrix))[0]
        raise InputError(where, f"entry i={gi}, j={gj} is missing (another (i, j) is listed twice)")
    return matrix


def _check_size(where: str, n: int, m: int, check_size: SizeCheck | None) -> None:
    if n == 0 or m == 0:
        raise InputError(where, f"the cost matrix is empty ({n}×{m})")
    if check_size is not None:
        check_size(n, m)


__all__ = ["MATRIX_SUFFIXES", "read_cost_matrix"]

"""What ``otdist show`` says about a file written earlier: figures computed with numpy.

A matrix (coupling or cost, dense or long format) gets its shape, sum, sparsity, value range,
row and column sums and largest entries; a result table (``otdist batch`` or ``pairwise``)
gets its counts of ok, failed and unconverged rows and the ranges of cost and iterations.
Dense matrices are read in row blocks, so a memory-mapped file larger than memory works.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from otcli.io.stored import DenseMatrix, LongMatrix, ResultTable

#: Entries summed per block when a dense matrix is read piece by piece.
BLOCK_ENTRIES = 1 << 22
#: A matrix is called a coupling when its entries are ≥ 0 and sum to 1 within this.
MASS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MatrixSummary:
    """Figures of an n×m matrix. ``coupling`` is a guess from the numbers (entries ≥ 0 that
    sum to 1): a coupling's sums are masses and its largest entries its strongest links.
    ``exact_shape`` is False for long files without otdist's metadata, whose n and m are the
    largest indices + 1; with it, n, m and "coupling" are the file's own word."""

    path: str
    layout: str
    n: int
    m: int
    exact_shape: bool
    stored: int
    nonzero: int
    total: float
    min: float
    max: float
    row_min: float
    row_max: float
    col_min: float
    col_max: float
    top: list[tuple[int, int, float]]
    coupling: bool
    # From otdist's Parquet metadata: what share of the plan's mass the file keeps, and how
    # it was cut (``--coupling-topk K`` or a threshold); None where the file does not say.
    kept_share: float | None = None
    kept_by: str | None = None
    # Empty (NaN) entries: a pairwise matrix's failed pairs; left out of the sums above.
    missing: int = 0

    @property
    def sparsity(self) -> float:
        """The share of the n×m entries that are zero (absent from a long file counts as 0;
        an empty NaN entry does not)."""
        size = self.n * self.m
        return 1.0 - (self.nonzero + self.missing) / size if size else 0.0

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "sparsity": self.sparsity}


@dataclass(frozen=True)
class TableSummary:
    """Counts and ranges of a result table's rows; ``errors`` and ``unconverged`` list the
    first few (id or ``i,j`` label, message or marginal error)."""

    path: str
    kind: str
    rows: int
    ok: int
    failed: int
    not_converged: int
    cost: tuple[float, float, float]
    iterations: tuple[float, float, float]
    eps: tuple[float, ...]
    errors: list[tuple[str, str]]
    unconverged: list[tuple[str, float]]

    def fields(self) -> dict[str, Any]:
        return asdict(self)


def summarise(stored: DenseMatrix | LongMatrix | ResultTable, top: int = 10) -> Any:
    """The summary that fits what was read: :class:`MatrixSummary` or :class:`TableSummary`."""
    if isinstance(stored, ResultTable):
        return summarise_table(stored)
    return summarise_matrix(stored, top)


def summarise_matrix(matrix: DenseMatrix | LongMatrix, top: int = 10) -> MatrixSummary:
    """Shape, sum, nonzeros, range, row/column sums and the ``top`` largest entries."""
    n, m = matrix.shape
    missing = 0
    if isinstance(matrix, LongMatrix):
        rows, cols, vals = matrix.rows, matrix.cols, matrix.values
        row_range, col_range = _sums_range(rows, vals, n), _sums_range(cols, vals, m)
        total = float(vals.sum())
        stored, nonzero = int(vals.size), int(np.count_nonzero(vals))
        absent = n * m > stored  # missing entries are zeros
        lo = min(float(vals.min()), 0.0) if absent else float(vals.min(initial=np.inf))
        hi = max(float(vals.max()), 0.0) if absent else float(vals.max(initial=-np.inf))
        best = _top_entries(rows, cols, vals, top)
        layout, exact = "long i, j, value", matrix.declared
    else:
        row_sums, col_sums = np.zeros(n), np.zeros(m)
        nonzero, lo, hi, best = 0, math.inf, -math.inf, []
        step = max(1, BLOCK_ENTRIES // max(m, 1))
        for i0 in range(0, n, step):
            blk = np.asarray(matrix.values[i0 : i0 + step], dtype=np.float64)  # (b, m)
            row_sums[i0 : i0 + blk.shape[0]] = np.nansum(blk, axis=1)
            col_sums += np.nansum(blk, axis=0)
            gaps = int(np.isnan(blk).sum())
            missing += gaps
            nonzero += int(np.count_nonzero(blk)) - gaps
            if blk.size:
                lo, hi = min(lo, float(np.nanmin(blk))), max(hi, float(np.nanmax(blk)))
            best = _merge_top(best, _top_block(blk, i0, top))
        stored = n * m
        labelled = matrix.labels or matrix.row_labels
        layout, exact = "labelled .csv" if labelled else "dense .npy", True
        row_range, col_range = (_min(row_sums), _max(row_sums)), (_min(col_sums), _max(col_sums))
        total = float(row_sums.sum())
    coupling = lo >= 0 and abs(total - 1.0) <= MASS_TOLERANCE
    kept_share, kept_by = None, None
    info = getattr(matrix, "info", {})
    if info.get("otcli.kind") == "coupling":
        coupling = True
        with contextlib.suppress(KeyError, ValueError, ZeroDivisionError):
            kept_share = total / float(info["otcli.plan_mass"])
        cuts = []
        if "otcli.topk" in info:
            cuts.append(f"--coupling-topk {info['otcli.topk']}")
        if "otcli.threshold" in info:
            cuts.append(f"entries above {float(info['otcli.threshold']):.3g}")
        kept_by = ", ".join(cuts) or None
    return MatrixSummary(
        path=matrix.path, layout=layout, n=n, m=m, exact_shape=exact, stored=stored,
        nonzero=nonzero, total=total, min=lo, max=hi,
        row_min=row_range[0], row_max=row_range[1],
        col_min=col_range[0], col_max=col_range[1], top=best, coupling=coupling,
        kept_share=kept_share, kept_by=kept_by, missing=missing,
    )  # fmt: skip


def _sums_range(index: np.ndarray, vals: np.ndarray, size: int) -> tuple[float, float]:
    """(smallest, largest) sum of ``vals`` per index over ``size`` rows (or columns), the
    absent ones summing to 0. Over the indices present, not an array of ``size`` sums: a
    long file may name row 2^62 (a dense array of sums was a MemoryError)."""
    if size == 0:
        return math.nan, math.nan
    _, slot = np.unique(index, return_inverse=True)
    sums = np.bincount(slot.reshape(-1), weights=vals)
    if sums.size < size:  # rows with no entry sum to 0
        sums = np.append(sums, 0.0)
    return _min(sums), _max(sums)


def _min(x: np.ndarray) -> float:
    return float(x.min()) if x.size else math.nan


def _max(x: np.ndarray) -> float:
    return float(x.max()) if x.size else math.nan


def _top_entries(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int
) -> list[tuple[int, int, float]]:
    """The k largest entries (NaN left out), largest first, ties by position."""
    finite = ~np.isnan(vals)
    rows, cols, vals = rows[finite], cols[finite], vals[finite]
    if vals.size > k:
        keep = np.argpartition(-vals, k - 1)[:k] if k > 0 else np.array([], dtype=np.int64)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, rows, -vals))
    return [(int(rows[o]), int(cols[o]), float(vals[o])) for o in order]


def _top_block(blk: np.ndarray, i0: int, k: int) -> list[tuple[int, int, float]]:
    """The k largest entries of a dense block whose first row is row ``i0``."""
    flat = np.where(np.isnan(blk), -np.inf, blk).ravel()
    if flat.size > k:
        flat_idx = np.argpartition(-flat, k - 1)[:k] if k > 0 else np.array([], np.int64)
    else:
        flat_idx = np.arange(flat.size)
    ii, jj = np.divmod(flat_idx, max(blk.shape[1], 1))
    return _top_entries(ii + i0, jj, blk[ii, jj], k)


def _merge_top(
    a: list[tuple[int, int, float]], b: list[tuple[int, int, float]]
) -> list[tuple[int, int, float]]:
    k = max(len(a), len(b))
    return sorted(a + b, key=lambda e: (-e[2], e[0], e[1]))[:k]


def table_label(row: dict[str, Any], kind: str) -> str:
    """How a row is named: its id (batch) or ``i,j`` (pairwise)."""
    return f"{row.get('i')},{row.get('j')}" if kind.startswith("pairwise") else str(row.get("id"))


def summarise_table(table: ResultTable, listed: int = 5) -> TableSummary:
    """Counts of ok / failed / unconverged rows and min, median, max of cost and iterations
    over the ok rows; the first ``listed`` failed and unconverged rows."""
    ok = [r for r in table.rows if r.get("status") == "ok"]
    bad = [r for r in table.rows if r.get("status") != "ok"]
    slow = [r for r in ok if r.get("converged") is False]
    return TableSummary(
        path=table.path, kind=table.kind, rows=len(table.rows), ok=len(ok), failed=len(bad),
        not_converged=len(slow),
        cost=_spread([r.get("cost") for r in ok]),
        iterations=_spread([r.get("iterations") for r in ok]),
        eps=tuple(sorted({float(r["eps"]) for r in ok if _number(r.get("eps"))})),
        errors=[(table_label(r, table.kind), str(r.get("error"))) for r in bad[:listed]],
        unconverged=[
            (table_label(r, table.kind), _float(r.get("marginal_error")))
            for r in slow[:listed]
        ],
    )  # fmt: skip


def _float(v: Any) -> float:
    return float(v) if _number(v) else math.nan


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _spread(values: list[Any]) -> tuple[float, float, float]:
    """(min, median, max) of the finite numbers among ``values``; NaNs when there are none."""
    x = np.array([float(v) for v in values if _number(v)])
    if not x.size:
        return (math.nan, math.nan, math.nan)
    return float(x.min()), float(np.median(x)), float(x.max())


__all__ = ["MatrixSummary", "TableSummary", "summarise", "summarise_matrix", "summarise_table"]

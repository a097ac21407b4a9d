"""Pictures of many pairs and of stored files: the pairwise matrix with a classical MDS map of
the files, histograms of a batch's costs and iterations, and any stored matrix as a heat map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.errors import InputError
from otcli.io.stored import DenseMatrix, LongMatrix, ResultTable
from otcli.plot.common import (
    MAX_CELLS,
    BlockImage,
    block_rows,
    heat_map,
    new_figure,
    short_name,
    size_or,
)
from otcli.summary import summarise_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIRWISE_SIZE = (13.0, 5.5)
#: The most rows (or columns) a stored matrix's heat map bins: 2^26, about 1.5 GB of bins.
MAX_PLOT_SIDE = 1 << 26
BATCH_SIZE = (12.0, 4.5)
MATRIX_SIZE = (7.0, 5.5)
#: Files named on the heat map's axes and next to their MDS points, at most.
MAX_LABELS = 40


def classical_mds(d: np.ndarray, *, squared: bool = False) -> tuple[np.ndarray, float]:
    """Classical (Torgerson) MDS of a dissimilarity matrix into the plane.

    ``d`` is symmetrised and its diagonal set to 0; ``squared`` says its entries are already
    squared distances (W₂² from the squared-Euclidean cost is). B = −½ J D² J with
    J = I − 11ᵀ/N; the embedding is the top two eigenvectors scaled by √λ. Returns the
    (N, 2) coordinates and the share of B's positive spectrum the two axes hold.
    """
    d = 0.5 * (np.asarray(d, dtype=np.float64) + np.asarray(d, dtype=np.float64).T)
    np.fill_diagonal(d, 0.0)
    d2 = d if squared else d**2
    size = len(d)
    j = np.eye(size) - 1.0 / size
    b = -0.5 * j @ d2 @ j
    eigval, eigvec = np.linalg.eigh(b)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    top = np.clip(eigval[:2], 0.0, None)
    coords = np.zeros((size, 2))
    coords[:, : len(top)] = eigvec[:, : len(top)] * np.sqrt(top)
    positive = eigval[eigval > 0].sum()
    return coords, float(top.sum() / positive) if positive > 0 else 0.0


def pairwise_figure(
    matrix: np.ndarray,
    labels: Sequence[str],
    *,
    what: str = "cost",
    size: tuple[float, float] | None = None,
) -> Figure:
    """The N×N ``matrix`` as a heat map with the files as labels, beside the files' 2-D
    classical MDS embedding (left out, with the reason, when a pair failed).

    One rule wherever a pairwise matrix is drawn (``pairwise --plot``, ``otdist show``,
    which cannot tell the cost a file was made with): the map embeds √value, the entries
    taken as squared distances. With the default squared-Euclidean cost that is W₂ (and
    √S for the divergence); for other costs a monotone transform of the same order."""
    fig = new_figure(size_or(size, PAIRWISE_SIZE))
    ax_m, ax_e = fig.subplots(1, 2, width_ratios=[1.15, 1])
    names = [short_name(s) for s in labels]
    size_n = len(matrix)
    heat_map(fig, ax_m, matrix, label=what, gid="matrix")
    if size_n <= MAX_LABELS:
        ax_m.set_xticks(range(size_n), names, rotation=90, fontsize="small")
        ax_m.set_yticks(range(size_n), names, fontsize="small")
    ax_m.set_title(f"pairwise {what}, {size_n} files", fontsize="small")
    failed = int(np.isnan(matrix).sum())
    if failed:
        ax_e.text(0.5, 0.5, f"no embedding: {failed} entries failed (NaN)", ha="center")
        ax_e.set_axis_off()
        return fig
    coords, share = classical_mds(matrix, squared=True)
    ax_e.scatter(coords[:, 0], coords[:, 1], s=30, c="tab:blue", zorder=3, gid="mds")
    if size_n <= MAX_LABELS:
        for (u, v), name in zip(coords, names, strict=True):
            ax_e.annotate(name, (u, v), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax_e.set_title(
        f"classical MDS of √{what}\n({share:.0%} of the positive spectrum)", fontsize="small"
    )
    ax_e.set_xlabel("MDS axis 1")
    ax_e.set_ylabel("MDS axis 2")
    ax_e.set_aspect("equal", adjustable="datalim")
    ax_e.margins(0.15)
    return fig


def table_matrix(table: ResultTable) -> tuple[np.ndarray, list[str], str]:
    """A pairwise long table as its N×N matrix (divergence if present, else cost; NaN where a
    pair failed), the file labels and the value's name."""
    what = "divergence" if any(r.get("divergence") is not None for r in table.rows) else "cost"
    size = 1 + max((max(int(r["i"]), int(r["j"])) for r in table.rows), default=-1)
    mat = np.full((size, size), np.nan)
    labels = [""] * size
    for r in table.rows:
        i, j = int(r["i"]), int(r["j"])
        labels[i], labels[j] = str(r["a"]), str(r["b"])
        value = r.get(what)
        if r.get("status") == "ok" and value is not None:
            mat[i, j] = mat[j, i] = float(value)
    return mat, labels, what


def batch_figure(table: ResultTable, *, size: tuple[float, float] | None = None) -> Figure:
    """Histograms of cost and iterations over the ok rows, converged and not converged
    stacked in two colours; failed rows (no cost) counted in the title, the first named."""
    s = summarise_table(table)
    ok = [r for r in table.rows if r.get("status") == "ok"]
    fig = new_figure(size_or(size, BATCH_SIZE))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("cost", "iterations"), strict=True):
        good = _finite([r.get(key) for r in ok if r.get("converged") is not False])
        slow = _finite([r.get(key) for r in ok if r.get("converged") is False])
        both = np.concatenate([good, slow])
        edges = np.histogram_bin_edges(both, bins=min(40, max(5, int(math.sqrt(both.size)))))
        ax.hist(
            [good, slow], bins=edges, stacked=True, color=["tab:blue", "tab:red"],
            label=[f"converged ({good.size})", f"not converged ({slow.size})"], gid=key,
        )  # fmt: skip
        ax.set_xlabel(key)
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    title = f"{short_name(table.path)}: {s.rows} pairs, {s.ok} ok"
    title += f", {s.not_converged} not converged, {s.failed} failed (no cost, not drawn)"
    if s.errors:
        first, message = s.errors[0]
        title += f"\nfirst failure: {first}: {message[:120]}"
    fig.suptitle(title, fontsize="medium")
    return fig


def _finite(values: list[Any]) -> np.ndarray:
    x = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    return x[np.isfinite(x)]


def matrix_figure(
    matrix: DenseMatrix | LongMatrix,
    *,
    cells: int = MAX_CELLS,
    size: tuple[float, float] | None = None,
) -> Figure:
    """A stored matrix as a heat map in file order, block means beyond ``cells`` a side.

    The image bins every row and column index (O(n + m) memory), so a long file whose
    indices (or metadata) make it wider than :data:`MAX_PLOT_SIDE` is refused: row 2^62
    was a numpy MemoryError.
    """
    n, m = matrix.shape
    if max(n, m) > MAX_PLOT_SIDE:
        raise InputError(
            matrix.path,
            f"a heat map of a {n:,} × {m:,} matrix bins every row and column in memory; "
            f"it draws at most {MAX_PLOT_SIDE:,} a side (the summary itself has no limit)",
        )
    image = BlockImage(n, m, cells)
    if isinstance(matrix, LongMatrix):
        image.add_entries(matrix.rows, matrix.cols, matrix.values)
    else:
        step = block_rows(m)
        for i0 in range(0, n, step):
            image.add_rows(i0, np.asarray(matrix.values[i0 : i0 + step], dtype=np.float64))
    fig = new_figure(size_or(size, MATRIX_SIZE))
    ax = fig.subplots()
    heat_map(fig, ax, image.image(), label="value", gid="matrix", shape=(n, m))
    what = f"{short_name(matrix.path)}: {n}×{m}"
    if image.averaged:
        what += f" (block means, {image.cells[0]}×{image.cells[1]})"
    ax.set_title(what, fontsize="medium")
    ax.set_xlabel("j (column)")
    ax.set_ylabel("i (row)")
    return fig

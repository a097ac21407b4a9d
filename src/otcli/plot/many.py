"""Pictures of many pairs and of stored files: the pairwise matrix with a classical MDS map of
the files, histograms of a batch's costs and iterations, and any stored matrix as a heat map.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.errors import InputError
from otcli.io.stored import DenseMatrix, LongMatrix, ResultTable
from otcli.plot.common import (
    MAX_CELLS,
    BlockImage,
    block_label,
    block_rows,
    distinct_names,
    heat_map,
    new_figure,
    short_name,
    size_or,
    wrap_title,
)
from otcli.summary import summarise_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIRWISE_SIZE = (13.0, 5.5)
#: The most rows (or columns) a stored matrix's heat map bins: 2^26, about 1.5 GB of bins.
MAX_PLOT_SIDE = 1 << 26
BATCH_SIZE = (12.0, 4.5)
MATRIX_SIZE = (7.0, 5.5)
#: Files named on the heat map's axes and next to their MDS points, at most; beyond, they
#: are numbered and a key names them.
MAX_NAMED = 20
#: Lines per column of that key.
KEY_ROWS = 40


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


def failed_pairs(matrix: np.ndarray) -> int:
    """Pairs i ≤ j with no value (NaN): the count ``otdist pairwise`` warns of (it solves
    the N(N+1)/2 pairs i ≤ j, the diagonal included)."""
    missing = np.isnan(matrix) | np.isnan(matrix.T)
    return int(missing[np.triu_indices(len(matrix))].sum())


def mappable_files(matrix: np.ndarray) -> np.ndarray:
    """The files an MDS map can place: greedily leave out the file with the most missing
    (NaN) entries until none is left among the rest. Returns their indices."""
    keep = np.arange(len(matrix))
    missing = np.isnan(matrix) | np.isnan(matrix.T)
    while keep.size:
        sub = missing[np.ix_(keep, keep)]
        counts = sub.sum(axis=1)
        if not counts.any():
            break
        keep = np.delete(keep, int(np.argmax(counts)))
    return keep


def pairwise_figure(
    matrix: np.ndarray,
    labels: Sequence[str],
    *,
    what: str = "cost",
    size: tuple[float, float] | None = None,
) -> Figure:
    """The N×N ``matrix`` as a heat map with the files as labels, beside the files' 2-D
    classical MDS embedding.

    One rule wherever a pairwise matrix is drawn (``pairwise --plot``, ``otdist show``,
    which cannot tell the cost a file was made with): the map embeds √value, the entries
    taken as squared distances. With the default squared-Euclidean cost that is W₂ (and
    √S for the divergence); for other costs a monotone transform of the same order.

    Files are named by their shortest distinct path suffix (:func:`distinct_names`); above
    :data:`MAX_NAMED` files they are numbered on both panels and a key beside the map names
    them, so 30-100 labels do not smear. Failed pairs (NaN) are grey cells with a legend
    entry and the count of pairs i ≤ j the run warned of; the map leaves out the files
    whose pairs failed (:func:`mappable_files`) and says which."""
    size_n = len(matrix)
    names = distinct_names(list(labels))
    numbered = size_n > MAX_NAMED
    if numbered:
        columns = -(-size_n // KEY_ROWS)
        key_width = columns * (0.6 + 0.062 * max(len(name) for name in names))  # inches
        default = (PAIRWISE_SIZE[0] + key_width, max(PAIRWISE_SIZE[1], 0.9 + 0.13 * KEY_ROWS))
        fig = new_figure(size_or(size, default))
        ratio = key_width / (PAIRWISE_SIZE[0] / 2.15)  # the two panels share 13 inches
        ax_m, ax_e, ax_k = fig.subplots(1, 3, width_ratios=[1.15, 1, ratio])
    else:
        fig = new_figure(size_or(size, PAIRWISE_SIZE))
        ax_m, ax_e = fig.subplots(1, 2, width_ratios=[1.15, 1])
    tags = [str(k + 1) for k in range(size_n)] if numbered else names
    heat_map(fig, ax_m, matrix, label=what, gid="matrix")
    if numbered:
        step = max(1, -(-size_n // 30))
        ticks = list(range(0, size_n, step))
        ax_m.set_xticks(ticks, [tags[t] for t in ticks], rotation=90, fontsize="x-small")
        ax_m.set_yticks(ticks, [tags[t] for t in ticks], fontsize="x-small")
        ax_m.set_xlabel("file number (key on the right)")
        _draw_key(ax_k, names)
    else:
        ax_m.set_xticks(range(size_n), names, rotation=90, fontsize="small")
        ax_m.set_yticks(range(size_n), names, fontsize="small")
    ax_m.set_title(f"pairwise {what}, {size_n} files", fontsize="small")
    failed = failed_pairs(matrix)
    if failed:
        from matplotlib.patches import Patch

        total = size_n * (size_n + 1) // 2
        grey = Patch(facecolor="0.85", edgecolor="0.5", label=f"failed: {failed} of {total} pairs")
        below = (0.0, -0.1 if numbered else -0.3)  # under the tick labels, over no cell
        ax_m.legend(
            handles=[grey], loc="upper left", bbox_to_anchor=below, fontsize="small", frameon=False
        )
    keep = mappable_files(matrix)
    if keep.size < 2:
        ax_e.text(0.5, 0.5, f"no map: {failed} pairs failed", ha="center", gid="no map")
        ax_e.set_axis_off()
        return fig
    coords, share = classical_mds(matrix[np.ix_(keep, keep)], squared=True)
    ax_e.scatter(coords[:, 0], coords[:, 1], s=18 if numbered else 30, c="tab:blue", zorder=3,
                 gid="mds")  # fmt: skip
    for (u, v), k in zip(coords, keep, strict=True):
        ax_e.annotate(tags[k], (u, v), textcoords="offset points", xytext=(3, 2),
                      fontsize=6.5 if numbered else 8, gid="mds label")  # fmt: skip
    title = f"classical MDS of √{what}\n({share:.0%} of the positive spectrum)"
    if keep.size < size_n:
        left = sorted(set(range(size_n)) - set(keep.tolist()))
        shown = ", ".join(tags[k] for k in left[:6]) + (", …" if len(left) > 6 else "")
        files = "file" if len(left) == 1 else "files"
        title += f"\n{len(left)} {files} left out (pairs failed): {shown}"
    ax_e.set_title(title, fontsize="small", wrap=True)
    ax_e.set_xlabel("MDS axis 1")
    ax_e.set_ylabel("MDS axis 2")
    ax_e.set_aspect("equal", adjustable="datalim")
    ax_e.margins(0.15)
    return fig


def _draw_key(ax: Any, names: Sequence[str]) -> None:
    """The numbered files, in columns of :data:`KEY_ROWS`."""
    ax.set_axis_off()
    columns = -(-len(names) // KEY_ROWS)
    for c in range(columns):
        chunk = names[c * KEY_ROWS : (c + 1) * KEY_ROWS]
        text = "\n".join(f"{c * KEY_ROWS + k + 1:>3}  {name}" for k, name in enumerate(chunk))
        ax.text(c / columns, 1.0, text, va="top", ha="left", fontsize=6.5, family="monospace",
                transform=ax.transAxes, gid="key")  # fmt: skip


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


#: Histograms put their x axis on a log scale when the positive values span this ratio or more
#: (costs from 0.2 to 3e5 fell in one linear bin).
LOG_RANGE = 10**2.5
#: Characters per title line before it wraps (at a word, never inside one).
TITLE_WIDTH = 110


def histogram_bins(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Bin edges for ``values`` and whether the axis is logarithmic: log-spaced edges when
    every value is positive and they span :data:`LOG_RANGE` or more, else linear ones."""
    count = min(40, max(5, int(math.sqrt(values.size))))
    if values.size and values.min() > 0 and values.max() >= LOG_RANGE * values.min():
        lo, hi = np.log10(values.min()), np.log10(values.max())
        return np.logspace(lo, hi, count + 1), True
    return np.histogram_bin_edges(values, bins=count), False


def batch_figure(table: ResultTable, *, size: tuple[float, float] | None = None) -> Figure:
    """Histograms of cost and iterations over the ok rows, converged and not converged
    stacked in two colours, counts on integer ticks, a log x axis where the values span
    decades; failed rows (no cost) counted in the title, the first named (wrapped at words)."""
    import textwrap

    from matplotlib.ticker import MaxNLocator

    s = summarise_table(table)
    ok = [r for r in table.rows if r.get("status") == "ok"]
    fig = new_figure(size_or(size, BATCH_SIZE))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("cost", "iterations"), strict=True):
        good = _finite([r.get(key) for r in ok if r.get("converged") is not False])
        slow = _finite([r.get(key) for r in ok if r.get("converged") is False])
        edges, log = histogram_bins(np.concatenate([good, slow]))
        ax.hist(
            [good, slow], bins=edges, stacked=True, color=["tab:blue", "tab:red"],
            label=[f"converged ({good.size})", f"not converged ({slow.size})"], gid=key,
        )  # fmt: skip
        if log:
            ax.set_xscale("log")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{key} (log scale)" if log else key)
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    title = f"{short_name(table.path)}: {s.rows} pairs, {s.ok} ok"
    title += f", {s.not_converged} not converged, {s.failed} failed (no cost, not drawn)"
    if s.errors:
        first, message = s.errors[0]
        said = textwrap.shorten(
            f"first failure: {first}: {message}", 2 * TITLE_WIDTH, placeholder=" …"
        )
        title += "\n" + "\n".join(textwrap.wrap(said, TITLE_WIDTH, break_long_words=False))
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize="medium")
    return fig


def _finite(values: list[Any]) -> np.ndarray:
    x = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    return x[np.isfinite(x)]


#: Entries × steps the reordering of a stored matrix may spend (a 25,000,000-entry coupling
#: gets the fewest steps, :data:`SERIATION_MIN`; a small one :data:`SERIATION_MAX`).
SERIATION_WORK = 2 * 10**8
SERIATION_MIN, SERIATION_MAX = 12, 40
#: Rows or columns beyond which a stored matrix is drawn in file order: the reordering holds
#: 2 × steps vectors of that length.
SERIATION_SIDE = 1 << 22


def seriation(
    matrix: DenseMatrix | LongMatrix, steps: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Row and column keys that put a nonnegative matrix's structure on the diagonal: the
    first nontrivial axis of its correspondence analysis, the second singular pair of
    S = D_r^{-1/2} P D_c^{-1/2} (r, c the row and column sums; the first pair, √r and √c
    with singular value 1, says nothing). A coupling stored in the clouds' file order
    (arbitrary) looks like noise; ordered by these keys, its band shows. Beyond
    :data:`SERIATION_SIDE` rows or columns it is not reordered.

    Lanczos on S Sᵀ with √r projected out and full reorthogonalisation, ``steps`` products
    with P and Pᵀ (streamed: a dense matrix row block by row block, a long one as sums over
    its entries): a smooth band's axes have singular values close together, and the power
    method alone folded the order. ``None`` where the matrix has a negative entry or no
    mass (then it is drawn in file order)."""
    n, m = matrix.shape
    if max(n, m) > SERIATION_SIDE:
        return None
    if isinstance(matrix, LongMatrix):
        if matrix.values.size and matrix.values.min() < 0:
            return None
        rows, cols, vals = matrix.rows, matrix.cols, matrix.values

        def pv(v: np.ndarray) -> np.ndarray:  # P v, (n,)
            return np.bincount(rows, vals * v[cols], minlength=n)

        def ptu(u: np.ndarray) -> np.ndarray:  # Pᵀ u, (m,)
            return np.bincount(cols, vals * u[rows], minlength=m)

        r, c = pv(np.ones(m)), ptu(np.ones(n))
    else:
        step = block_rows(m)
        values = matrix.values

        def blocks() -> Iterator[tuple[int, np.ndarray]]:
            for i0 in range(0, n, step):
                yield i0, np.nan_to_num(np.asarray(values[i0 : i0 + step], dtype=np.float64))

        if any(blk.size and blk.min() < 0 for _, blk in blocks()):
            return None

        def pv(v: np.ndarray) -> np.ndarray:
            return np.concatenate([blk @ v for _, blk in blocks()]) if n else np.zeros(0)

        def ptu(u: np.ndarray) -> np.ndarray:
            out = np.zeros(m)
            for i0, blk in blocks():
                out += u[i0 : i0 + len(blk)] @ blk
            return out

        r, c = pv(np.ones(m)), ptu(np.ones(n))
    if not (r.sum() > 0):
        return None
    rs = np.sqrt(np.maximum(r, 0.0))
    cs = np.sqrt(np.maximum(c, 0.0))
    ir = np.divide(1.0, rs, out=np.zeros(n), where=rs > 0)
    ic = np.divide(1.0, cs, out=np.zeros(m), where=cs > 0)
    trivial = rs / np.linalg.norm(rs)

    def s_st(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S Sᵀ x, Sᵀ x)."""
        right = ptu(x * ir) * ic  # Sᵀ x, (m,)
        return pv(right * ic) * ir, right

    if steps is None:
        work = SERIATION_WORK // max(int(matrix.values.size), 1)
        steps = int(np.clip(work, SERIATION_MIN, SERIATION_MAX))
    steps = max(1, min(steps, n - 1, m - 1)) if min(n, m) > 1 else 1
    basis = np.zeros((steps, n))
    images = np.zeros((steps, n))
    q = np.random.default_rng(seed).standard_normal(n)
    for k in range(steps):
        q -= (q @ trivial) * trivial
        q -= basis[:k].T @ (basis[:k] @ q)  # full reorthogonalisation
        norm = float(np.linalg.norm(q))
        if norm < 1e-12:
            basis, images = basis[:k], images[:k]
            break
        basis[k] = q / norm
        images[k] = s_st(basis[k])[0]
        q = images[k].copy()
    if len(basis) == 0:
        return None
    small = basis @ images.T  # Qᵀ (S Sᵀ) Q
    _, eigvec = np.linalg.eigh(0.5 * (small + small.T))  # ascending: the last is σ₂²
    left = eigvec[:, -1] @ basis  # the second left singular vector of S, (n,)
    right = s_st(left)[1]  # ∝ the second right one, (m,)
    u, v = left * ir, right * ic  # CA's standard coordinates
    if n > 1 and u.std() > 0 and np.corrcoef(np.arange(n), u)[0, 1] < 0:
        u, v = -u, -v  # one orientation: a matrix already in order keeps it
    u = np.where(r > 0, u, np.inf)  # empty rows and columns go last
    v = np.where(c > 0, v, np.inf)
    return u, v


def matrix_figure(
    matrix: DenseMatrix | LongMatrix,
    *,
    cells: int = MAX_CELLS,
    size: tuple[float, float] | None = None,
    reorder: bool = True,
) -> Figure:
    """A stored matrix as a heat map, block means beyond ``cells`` a side, each entry placed
    by its (i, j) wherever it stands in the file. A nonnegative matrix is shown with rows and
    columns reordered by :func:`seriation` (``reorder``; the axes say so: their ticks count
    positions, not indices), on a log scale where its entries span decades.

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
    keys = seriation(matrix) if reorder and n > 1 and m > 1 else None
    image = BlockImage(n, m, cells, *(keys or (None, None)))
    if isinstance(matrix, LongMatrix):
        image.add_entries(matrix.rows, matrix.cols, matrix.values)
    else:
        step = block_rows(m)
        for i0 in range(0, n, step):
            image.add_rows(i0, np.asarray(matrix.values[i0 : i0 + step], dtype=np.float64))
    fig = new_figure(size_or(size, MATRIX_SIZE))
    ax = fig.subplots()
    heat_map(fig, ax, image.image(), label=block_label("value", (n, m), image.cells),
             gid="matrix", shape=(n, m))  # fmt: skip
    what = f"{short_name(matrix.path)}: {n}×{m}"
    if image.averaged:
        what += f" (block means, {image.cells[0]}×{image.cells[1]})"
    if keys is not None:
        what += "\nrows and columns reordered to show structure (correspondence analysis)"
        ax.set_xlabel("columns j, reordered (position, not index)")
        ax.set_ylabel("rows i, reordered (position, not index)")
    else:
        ax.set_xlabel("j (column)")
        ax.set_ylabel("i (row)")
    ax.set_title(what, fontsize="medium")
    return fig

"""Pieces every picture shares: a headless figure, block-averaged heat maps, colour bars.

matplotlib is imported inside the functions, so this module (and the numbers it computes,
such as :class:`BlockImage`) loads without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Largest side of a heat map in cells; bigger matrices are shown as block means.
MAX_CELLS = 80
#: Entries per block when a matrix is streamed row block by row block.
BLOCK_ENTRIES = 1 << 22


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure on matplotlib's Agg canvas: no pyplot, no display, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def block_rows(m: int) -> int:
    """Rows per streamed block so that one block holds about :data:`BLOCK_ENTRIES` entries."""
    return max(1, BLOCK_ENTRIES // max(m, 1))


def rank_bins(key: np.ndarray | None, size: int, cells: int) -> np.ndarray:
    """The cell of each of ``size`` indices: by rank of ``key`` (identity order without it),
    ``cells`` cells of near-equal counts."""
    rank = np.arange(size) if key is None else np.argsort(np.argsort(key, kind="stable"))
    return rank * cells // max(size, 1)


class BlockImage:
    """An n×m matrix shrunk to at most ``cells``×``cells`` block means, fed piece by piece.

    Rows and columns are first put in the order of ``row_key``/``col_key`` (e.g. the points'
    coordinate along a principal axis), then grouped into cells of near-equal size; a matrix
    no larger than ``cells`` on a side is kept entry for entry (in that order). Only the
    cells are held in memory, never the n×m matrix.
    """

    def __init__(
        self,
        n: int,
        m: int,
        cells: int = MAX_CELLS,
        row_key: np.ndarray | None = None,
        col_key: np.ndarray | None = None,
    ) -> None:
        self.shape = (n, m)
        self.cells = (min(n, cells), min(m, cells))
        self.row_bin = rank_bins(row_key, n, self.cells[0])
        col_bin = rank_bins(col_key, m, self.cells[1])
        self._col_perm = np.argsort(col_bin, kind="stable")
        self._col_edges = np.searchsorted(col_bin[self._col_perm], np.arange(self.cells[1]))
        self._row_count = np.bincount(self.row_bin, minlength=self.cells[0])
        self._col_count = np.bincount(col_bin, minlength=self.cells[1])
        self._col_bin = col_bin
        self._sum = np.zeros(self.cells)

    @property
    def averaged(self) -> bool:
        return self.cells != self.shape

    def add_rows(self, i0: int, block: np.ndarray) -> None:
        """Add the dense rows ``i0 .. i0 + len(block)`` of the matrix."""
        if block.size:
            by_col = np.add.reduceat(block[:, self._col_perm], self._col_edges, axis=1)  # (b, cm)
            np.add.at(self._sum, self.row_bin[i0 : i0 + block.shape[0]], by_col)

    def add_entries(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Add sparse entries (the others are zero)."""
        np.add.at(self._sum, (self.row_bin[rows], self._col_bin[cols]), values)

    def image(self) -> np.ndarray:
        """The cells: each the mean of the entries it covers."""
        return self._sum / np.outer(self._row_count, self._col_count)


def stream_image(blocks: Iterable[tuple[int, int, np.ndarray]], image: BlockImage) -> BlockImage:
    """Feed ``(i0, 0, rows)`` blocks into ``image``; return it."""
    for i0, _, blk in blocks:
        image.add_rows(i0, np.asarray(blk, dtype=np.float64))
    return image


def heat_map(
    fig: Figure,
    ax: Axes,
    image: np.ndarray,
    *,
    label: str,
    cmap: str = "viridis",
    gid: str = "",
    shape: tuple[int, int] | None = None,
) -> Any:
    """``image`` drawn cell for cell with a colour bar spanning exactly its finite range;
    NaN cells are left blank (grey). ``shape`` (n, m) is the matrix the cells stand for, so
    that the axes count rows and columns, not cells, when the image holds block means."""
    from matplotlib.ticker import MaxNLocator

    finite = image[np.isfinite(image)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    shown = np.ma.masked_invalid(image)
    n, m = image.shape if shape is None else shape
    im = ax.imshow(
        shown, aspect="auto", interpolation="nearest", cmap=cmap, vmin=lo, vmax=hi, gid=gid,
        extent=(-0.5, m - 0.5, n - 0.5, -0.5),
    )  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    ax.set_facecolor("0.85")
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(label)
    return im


def size_or(size: tuple[float, float] | None, default: tuple[float, float]) -> tuple[float, float]:
    return default if size is None else size


def short_name(path: str, width: int = 28) -> str:
    """The file name of ``path``, shortened to ``width`` characters for labels."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1] or path
    return name if len(name) <= width else name[: width - 1] + "…"

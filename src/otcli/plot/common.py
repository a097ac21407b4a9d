"""Pieces every picture shares: a headless figure, block-averaged heat maps, colour bars.

matplotlib is imported inside the functions, so this module (and the numbers it computes,
such as :class:`BlockImage`) loads without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Largest side of a heat map in cells; bigger matrices are shown as block means.
MAX_CELLS = 80
#: Entries per block when a matrix is streamed row block by row block.
BLOCK_ENTRIES = 1 << 22


#: Dots per inch of a PNG by default (``--plot-dpi``), and the most it may ask for: 100 inches
#: at 1200 dpi is a 120,000-pixel side, beyond what Agg draws (2^16), so the product of the
#: two is checked too (:func:`check_dpi`).
DPI = 100
MAX_DPI = 1200
#: The longest side Agg can render, in pixels.
MAX_PIXELS = 1 << 16


def check_dpi(dpi: int, size: tuple[float, float] | None = None) -> int:
    """``dpi`` within 1 .. :data:`MAX_DPI`, and ``size`` (inches) at that dpi within Agg's
    :data:`MAX_PIXELS` a side; an :class:`~otcli.errors.OptionError` naming ``--plot-dpi``
    otherwise."""
    from otcli.errors import OptionError

    if not 1 <= dpi <= MAX_DPI:
        raise OptionError("--plot-dpi", f"must be 1 to {MAX_DPI} dots per inch, got {dpi}")
    if size is not None and max(size) * dpi >= MAX_PIXELS:
        raise OptionError(
            "--plot-dpi",
            f"{max(size):g} inches at {dpi} dpi is {max(size) * dpi:,.0f} pixels, over the "
            f"{MAX_PIXELS - 1:,} a picture can have; lower --plot-dpi or --plot-size",
        )
    return dpi


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


#: A heat map switches to a log scale when its positive entries span this ratio or more.
LOG_SPAN = 1e3
#: The floor of a log-scale heat map, as a fraction of its largest entry: a coupling at small ε
#: holds entries down to 1e-300, and a scale that spanned them would show nothing.
LOG_FLOOR = 1e-3


@dataclass(frozen=True)
class Scale:
    """How a heat map maps values to colours: ``log`` (with entries below ``floor`` drawn at
    the floor's colour) or linear, over ``[vmin, vmax]``; ``describe`` says it in words for
    the colour bar."""

    log: bool
    vmin: float
    vmax: float
    floor: float = 0.0

    @property
    def describe(self) -> str:
        if not self.log:
            return "linear scale"
        return f"log scale, floor max/{1 / LOG_FLOOR:,.0f}" if self.floor > 0 else "log scale"


def choose_scale(image: np.ndarray, scale: str = "auto") -> Scale:
    """A log scale (floored at :data:`LOG_FLOOR` × max) for a nonnegative image whose positive
    entries span :data:`LOG_SPAN` or more (a coupling: a few bright cells would hide the band
    on a linear scale), else linear over the finite range. ``scale`` forces ``log``/``linear``;
    a log scale needs a positive entry and no negative one, or it falls back to linear."""
    finite = image[np.isfinite(image)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    positive = finite[finite > 0]
    loggable = lo >= 0 and positive.size > 0
    want_log = scale == "log" or (
        scale == "auto" and loggable and float(positive.max()) >= LOG_SPAN * float(positive.min())
    )
    if not (want_log and loggable):
        return Scale(False, lo, hi if hi > lo else lo + 1.0)
    top = float(positive.max())
    floor = top * LOG_FLOOR
    low = float(positive.min())
    if low >= floor and lo > 0:
        return Scale(True, low, top if top > low else low * 10)
    return Scale(True, floor, top, floor)


def block_label(what: str, shape: tuple[int, int], cells: tuple[int, int]) -> str:
    """The colour bar's name for an image of ``what`` (``P_ij``) shrunk from ``shape`` to
    ``cells``: the entry itself, or "mean of P_ij over blocks of k × l" ("62–63" where the
    blocks differ by one row or column)."""
    if tuple(cells) == tuple(shape):
        return what
    sides = []
    for size, count in zip(shape, cells, strict=True):
        lo, hi = size // max(count, 1), -(-size // max(count, 1))
        sides.append(f"{lo}" if lo == hi else f"{lo}–{hi}")
    return f"mean of {what} over\nblocks of {sides[0]} × {sides[1]}"


def heat_map(
    fig: Figure,
    ax: Axes,
    image: np.ndarray,
    *,
    label: str,
    cmap: str = "viridis",
    gid: str = "",
    shape: tuple[int, int] | None = None,
    scale: str = "auto",
) -> Any:
    """``image`` drawn cell for cell on the :func:`choose_scale` scale, its colour bar named
    ``label`` plus the scale ("(log scale, floor max/1,000)"); NaN cells are left blank
    (grey). ``shape`` (n, m) is the matrix the cells stand for, so that the axes count rows
    and columns, not cells, when the image holds block means. Returns the AxesImage (its
    ``norm`` is the scale)."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import MaxNLocator

    chosen = choose_scale(image, scale)
    data = np.asarray(image, dtype=np.float64)
    if chosen.log:  # below the floor (zeros included): the floor's colour; NaN stays blank
        data = np.where(np.isnan(data), np.nan, np.maximum(data, chosen.vmin))
        norm: Normalize = LogNorm(vmin=chosen.vmin, vmax=chosen.vmax)
    else:
        norm = Normalize(vmin=chosen.vmin, vmax=chosen.vmax)
    shown = np.ma.masked_invalid(data)
    n, m = image.shape if shape is None else shape
    im = ax.imshow(
        shown, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm, gid=gid,
        extent=(-0.5, m - 0.5, n - 0.5, -0.5),
    )  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    ax.set_facecolor("0.85")
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(f"{label}\n({chosen.describe})" if chosen.log else label)
    return im


def wrap_title(text: str, width: float, points: float = 10.0) -> str:
    """``text`` wrapped at words to fit ``width`` inches in a ``points``-point font (about
    0.6 em a character): a title that runs off a small picture is cut mid-word."""
    import textwrap

    chars = max(20, int(width * 72 / (0.6 * points)))
    return "\n".join(
        "\n".join(textwrap.wrap(line, chars, break_long_words=False)) or line
        for line in text.split("\n")
    )


def size_or(size: tuple[float, float] | None, default: tuple[float, float]) -> tuple[float, float]:
    return default if size is None else size


def short_name(path: str, width: int = 28) -> str:
    """The file name of ``path``, shortened to ``width`` characters for labels."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1] or path
    return _shorten(name, width)


def _shorten(name: str, width: int) -> str:
    """``name`` cut in the middle to ``width`` characters: its start (a distinguishing folder)
    and its end (the extension) both stay."""
    if len(name) <= width:
        return name
    head = (width - 1 + 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def distinct_names(paths: Sequence[str], width: int = 28) -> list[str]:
    """Labels for ``paths``: each file's shortest path suffix that no other path shares
    (``r1/cloud.npy`` and ``r2/cloud.npy``, not ``cloud.npy`` twice), cut in the middle to
    ``width`` characters. A path given twice keeps its name with ``#2``, ``#3``...; if cutting
    makes two labels equal, those two keep their full suffixes."""
    parts = [[p for p in path.replace("\\", "/").split("/") if p] or [path] for path in paths]
    names = []
    for k, mine in enumerate(parts):
        depth = 1
        while depth < len(mine) and any(
            other[-depth:] == mine[-depth:] and other != mine
            for o, other in enumerate(parts)
            if o != k
        ):
            depth += 1
        names.append("/".join(mine[-depth:]))
    labels = [_shorten(name, width) for name in names]
    for k, label in enumerate(labels):
        if labels.count(label) > 1 and names.count(names[k]) == 1:
            labels[k] = names[k]
    seen: dict[str, int] = {}
    for k, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[k] = f"{label} #{seen[label]}"
    return labels

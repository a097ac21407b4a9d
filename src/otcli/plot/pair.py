"""The picture of one solved pair: the clouds with their transport, P and C as heat maps.

Everything is streamed from the result's ``plan_blocks`` and ``cost_blocks``: the strongest
links are kept in a running top-k and the heat maps as block means, so a pair solved with the
online geometry is drawn without its n×m matrices ever existing in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.plot.common import (
    MAX_CELLS,
    BlockImage,
    block_rows,
    heat_map,
    new_figure,
    short_name,
    size_or,
    stream_image,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from otcli.cloud import Cloud

#: Links drawn by default: the strongest, by P_ij.
DEFAULT_MAX_LINKS = 1000
#: Points drawn per cloud at most (a fixed random sample beyond).
MAX_POINTS = 5000
PAIR_SIZE = (15.0, 4.8)

Blocks = Callable[[int], Iterator[tuple[int, int, np.ndarray]]]


@dataclass(frozen=True)
class Links:
    """The ``rows``/``cols``/``values`` of the strongest entries of P (largest first), out of
    ``total`` positive entries holding ``mass``; ``peak`` is max P."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    total: int
    mass: float
    peak: float

    @property
    def shown_mass(self) -> float:
        return float(self.values.sum())


class _TopK:
    """A running top-k of a matrix's positive entries, fed row block by row block."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows = np.zeros(0, np.int64)
        self.cols = np.zeros(0, np.int64)
        self.vals = np.zeros(0)
        self.total, self.mass, self.peak = 0, 0.0, 0.0

    def add(self, i0: int, blk: np.ndarray) -> None:
        flat = blk.ravel()
        self.total += int(np.count_nonzero(flat > 0))
        self.mass += float(flat.sum())
        self.peak = max(self.peak, float(flat.max(initial=0.0)))
        idx = _largest(flat, self.k)
        r, c = np.divmod(idx, max(blk.shape[1], 1))
        rows = np.concatenate([self.rows, r + i0])
        cols = np.concatenate([self.cols, c])
        vals = np.concatenate([self.vals, flat[idx]])
        keep = _largest(vals, self.k)
        self.rows, self.cols, self.vals = rows[keep], cols[keep], vals[keep]

    def links(self) -> Links:
        pos = self.vals > 0
        order = np.lexsort((self.cols[pos], self.rows[pos], -self.vals[pos]))
        rows, cols, vals = self.rows[pos][order], self.cols[pos][order], self.vals[pos][order]
        return Links(rows, cols, vals, self.total, self.mass, self.peak)


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (all of them when there are fewer)."""
    if values.size <= k:
        return np.arange(values.size)
    return np.argpartition(-values, k - 1)[:k]


def scan_plan(
    plan_blocks: Blocks, n: int, m: int, k: int, image: BlockImage | None = None
) -> Links:
    """One pass over P: its ``k`` strongest links, and its block means into ``image``."""
    top = _TopK(k)
    for i0, _, blk in plan_blocks(block_rows(m)):
        blk = np.asarray(blk, dtype=np.float64)
        top.add(i0, blk)
        if image is not None:
            image.add_rows(i0, blk)
    return top.links()


@dataclass(frozen=True)
class Projection:
    """The clouds in the plane of the picture, axis names, and each point's coordinate on
    the union's first principal axis (the order of the heat maps' rows and columns)."""

    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, str]
    key_x: np.ndarray
    key_y: np.ndarray
    order_label: str


def project(x: np.ndarray, y: np.ndarray) -> Projection:
    """2-D clouds as they are; 1-D ones on two rows (A at 0, B at 1); higher dimensions on
    the first two principal axes of the union of both clouds (centred, unweighted)."""
    union = np.concatenate([x, y])
    centre = union.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov((union - centre).T, bias=True).reshape(x.shape[1], -1))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigvec *= np.where(eigvec[np.abs(eigvec).argmax(axis=0), range(eigvec.shape[1])] < 0, -1, 1)
    key_x, key_y = (x - centre) @ eigvec[:, 0], (y - centre) @ eigvec[:, 0]
    d = x.shape[1]
    if d == 1:
        px = np.column_stack([x[:, 0], np.zeros(len(x))])
        py = np.column_stack([y[:, 0], np.ones(len(y))])
        return Projection(px, py, ("coordinate", ""), key_x, key_y, "by coordinate")
    if d == 2:
        return Projection(x, y, ("x₁", "x₂"), key_x, key_y, "along principal axis 1")
    share = eigval / eigval.sum() if eigval.sum() > 0 else np.zeros_like(eigval)
    px, py = (x - centre) @ eigvec[:, :2], (y - centre) @ eigvec[:, :2]
    labels = (
        f"principal axis 1 of A ∪ B ({share[0]:.0%} of variance)",
        f"principal axis 2 ({share[1]:.0%} of variance)",
    )
    return Projection(px, py, labels, key_x, key_y, "along principal axis 1")


def pair_title(result: Any) -> str:
    """Cost, ε, iterations and convergence (or the exact method) in one line."""
    names = f"{short_name(result.x.source)} → {short_name(result.y.source)}"
    cost = f"⟨P, C⟩ = {result.cost:.6g} ({result.cost_fn.describe()} cost)"
    if hasattr(result, "method"):  # an exact result: no ε, no iterations
        return f"{names}:  exact {cost}, {result.method}"
    state = "converged" if result.converged else "NOT converged"
    return (
        f"{names}:  {cost},  ε = {result.eps:g},  {result.iterations} iterations, {state} "
        f"(marginal error {result.marginal_error:.1e})"
    )


def pair_figure(
    result: Any,
    *,
    clouds: tuple[Cloud, Cloud] | None = None,
    max_links: int = DEFAULT_MAX_LINKS,
    size: tuple[float, float] | None = None,
    cells: int = MAX_CELLS,
) -> Figure:
    """The figure of a solved pair (a :class:`~otcli.result.SinkhornResult` or an exact one).

    Left: both clouds (``clouds`` if given, else the result's own) and the ``max_links``
    strongest links of P as segments x_i → y_j, opacity P_ij / max P, the weakest drawn
    first. Middle and right: P and C as heat maps, rows and columns ordered along the first
    principal axis, at most ``cells`` a side (block means beyond). A title with the figures.
    """
    x, y = clouds if clouds is not None else (result.x, result.y)
    n, m = x.n, y.n
    proj = project(x.points, y.points)
    p_img = BlockImage(n, m, cells, proj.key_x, proj.key_y)
    links = scan_plan(result.plan_blocks, n, m, max_links, p_img)
    c_img = stream_image(
        result.cost_blocks(block_rows(m)), BlockImage(n, m, cells, proj.key_x, proj.key_y)
    )
    fig = new_figure(size_or(size, PAIR_SIZE))
    ax_pts, ax_p, ax_c = fig.subplots(1, 3, width_ratios=[1.25, 1, 1])
    _draw_clouds(ax_pts, proj, links, x, y)
    for ax, img, what, cmap in ((ax_p, p_img, "P", "viridis"), (ax_c, c_img, "C", "magma")):
        heat_map(fig, ax, img.image(), label=f"${what}_{{ij}}$", cmap=cmap, gid=what, shape=(n, m))
        kind = "coupling P" if what == "P" else "cost matrix C"
        if img.averaged:
            kind += f", {img.cells[0]}×{img.cells[1]} block means"
        ax.set_title(kind, fontsize="small")
        ax.set_xlabel(f"points of B, {proj.order_label}")
        ax.set_ylabel(f"points of A, {proj.order_label}")
    fig.suptitle(pair_title(result), fontsize="medium")
    return fig


def _draw_clouds(ax: Any, proj: Projection, links: Links, x: Cloud, y: Cloud) -> None:
    from matplotlib.collections import LineCollection

    order = np.argsort(links.values, kind="stable")  # weakest first: strongest on top
    segments = np.stack([proj.x[links.rows[order]], proj.y[links.cols[order]]], axis=1)
    colours = np.zeros((len(order), 4))
    colours[:, :3] = 0.15
    colours[:, 3] = links.values[order] / links.peak if links.peak > 0 else 0.0
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.8, gid="links"))
    rng = np.random.default_rng(0)
    for pts, cloud, colour, tag in ((proj.x, x, "tab:blue", "A"), (proj.y, y, "tab:orange", "B")):
        shown = pts
        label = f"{tag}: {short_name(cloud.source)} ({cloud.n:,} points"
        if len(pts) > MAX_POINTS:
            shown = pts[rng.choice(len(pts), MAX_POINTS, replace=False)]
            label += f", {MAX_POINTS:,} drawn"
        size = float(np.clip(2000 / len(pts), 1, 30))
        ax.scatter(
            shown[:, 0], shown[:, 1], s=size, c=colour, label=label + ")", zorder=3, linewidths=0
        )
    count = len(links.values)
    if count == links.total:
        what = f"all {count:,} links"
    else:
        share = links.shown_mass / links.mass if links.mass > 0 else 0.0
        what = f"{count:,} strongest of {links.total:,} links ({share:.0%} of the mass)"
    ax.set_title(f"transport $x_i \\to y_j$, opacity $P_{{ij}}$ / max P\n{what}", fontsize="small")
    ax.set_xlabel(proj.labels[0])
    ax.set_ylabel(proj.labels[1])
    if proj.labels[1] == "":  # 1-D: A on the row y = 0, B on y = 1
        ax.set_yticks([0, 1], ["A", "B"])
        ax.set_ylim(-0.3, 1.3)
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)
    ax.autoscale_view()

"""The picture of one solved pair: the clouds with their transport, P and C as heat maps.

Everything is streamed from the result's ``plan_blocks`` and ``cost_blocks``: one pass gives
the marginals, the barycentric targets P·y and the heat maps' block means, a second one (small
pairs) the links sampled by mass, so a pair solved with the online geometry is drawn without
its n×m matrices ever existing in memory.

The transport is drawn as what the mass does, never as the strongest entries alone: at 5,000
+ 5,000 points the 1,000 largest P_ij hold 0% of the mass and sit at four corners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.plot.common import (
    MAX_CELLS,
    BlockImage,
    block_label,
    block_rows,
    heat_map,
    new_figure,
    short_name,
    size_or,
    stream_image,
    wrap_title,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from otcli.cloud import Cloud

#: Links (or arrows) drawn by default.
DEFAULT_MAX_LINKS = 1000
#: Above this many entries in P the transport is drawn as barycentric arrows, not links: at
#: 5,000 + 5,000 points even links sampled by mass cross into a hatching that hides the points.
ARROWS_ABOVE = 250_000
#: Arrows drawn at most (of ``--plot-max-links``): more than this overlap on a page.
MAX_ARROWS = 250
#: Points drawn per cloud at most (a fixed random sample beyond).
MAX_POINTS = 5000
PAIR_SIZE = (15.0, 4.8)

Blocks = Callable[[int], Iterator[tuple[int, int, np.ndarray]]]


@dataclass(frozen=True)
class PlanScan:
    """What one pass over P gives the picture: the marginals ``row_mass`` = P1 and
    ``col_mass`` = Pᵀ1, ``target`` = P·Y (Y: B's points in the picture's plane, so
    ``target / row_mass`` is the barycentric image of each point of A), ``mass`` = Σ P and
    the count of positive entries."""

    row_mass: np.ndarray  # (n,)
    col_mass: np.ndarray  # (m,)
    target: np.ndarray  # (n, 2)
    mass: float
    positive: int


def scan_plan(
    plan_blocks: Blocks, y_plane: np.ndarray, m: int, image: BlockImage | None = None
) -> PlanScan:
    """One pass over P (row block by row block): marginals, P·Y, and block means into
    ``image``."""
    rows, targets = [], []
    col_mass = np.zeros(m)
    positive = 0
    for i0, _, blk in plan_blocks(block_rows(m)):
        blk = np.asarray(blk, dtype=np.float64)  # (b, m)
        rows.append(blk.sum(axis=1))
        targets.append(blk @ y_plane)  # (b, 2)
        col_mass += blk.sum(axis=0)
        positive += int(np.count_nonzero(blk > 0))
        if image is not None:
            image.add_rows(i0, blk)
    row_mass = np.concatenate(rows) if rows else np.zeros(0)
    target = np.concatenate(targets) if targets else np.zeros((0, 2))
    return PlanScan(row_mass, col_mass, target, float(row_mass.sum()), positive)


@dataclass(frozen=True)
class Links:
    """Links x_i → y_j drawn: ``rows``/``cols``/``values`` (P_ij) and ``draws``, how many
    of the ``samples`` draws picked each (all ones when every link is drawn: ``samples`` 0).
    ``total`` positive entries of P hold ``mass``."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    draws: np.ndarray
    samples: int
    total: int
    mass: float

    @property
    def shown_mass(self) -> float:
        """The mass of the distinct links drawn."""
        return float(self.values.sum())

    @property
    def share(self) -> float:
        """The share of Σ P the drawn links hold."""
        return self.shown_mass / self.mass if self.mass > 0 else 0.0


def all_links(plan_blocks: Blocks, m: int, scan: PlanScan) -> Links:
    """Every positive entry of a small P, each drawn once."""
    rows, cols, vals = [], [], []
    for i0, _, blk in plan_blocks(block_rows(m)):
        blk = np.asarray(blk, dtype=np.float64)
        r, c = np.nonzero(blk > 0)
        rows.append(r + i0)
        cols.append(c)
        vals.append(blk[r, c])
    r, c, v = (np.concatenate(a) if a else np.zeros(0) for a in (rows, cols, vals))
    return Links(r.astype(np.int64), c.astype(np.int64), v, np.ones(len(v), np.int64), 0,
                 scan.positive, scan.mass)  # fmt: skip


def sample_links(plan_blocks: Blocks, m: int, scan: PlanScan, k: int, seed: int = 0) -> Links:
    """``k`` links drawn with probability P_ij / Σ P (systematic sampling: the draws sit at
    (t + U)/k of the cumulated mass, t = 0..k−1, so a link holding more than 1/k of the mass
    is always drawn, and a link holding q of it is drawn ⌊qk⌋ or ⌈qk⌉ times). One pass over
    P, a block's cumulative sums at a time."""
    if scan.mass <= 0 or k < 1:
        return Links(*(np.zeros(0, np.int64),) * 2, np.zeros(0), np.zeros(0, np.int64), k,
                     scan.positive, scan.mass)  # fmt: skip
    marks = (np.arange(k) + np.random.default_rng(seed).random()) * (scan.mass / k)  # (k,)
    hit_rows, hit_cols, hit_vals = [], [], []
    done = 0.0
    for i0, _, blk in plan_blocks(block_rows(m)):
        flat = np.asarray(blk, dtype=np.float64).ravel()
        cum = done + np.cumsum(flat)
        lo, hi = np.searchsorted(marks, [done, cum[-1] if cum.size else done], side="left")
        idx = np.searchsorted(cum, marks[lo:hi], side="right")  # the entry each mark falls in
        idx = np.minimum(idx, flat.size - 1)
        r, c = np.divmod(idx, max(m, 1))
        hit_rows.append(r + i0)
        hit_cols.append(c)
        hit_vals.append(flat[idx])
        done = float(cum[-1]) if cum.size else done
    rows, cols = np.concatenate(hit_rows), np.concatenate(hit_cols)
    if len(rows) < k:  # rounding left the last marks past the sum: they fall on the last entry
        pad = k - len(rows)
        rows = np.concatenate([rows, np.repeat(rows[-1:] if len(rows) else [0], pad)])
        cols = np.concatenate([cols, np.repeat(cols[-1:] if len(cols) else [0], pad)])
    vals = np.concatenate(hit_vals)
    pairs, first, draws = np.unique(
        np.stack([rows, cols], axis=1), axis=0, return_index=True, return_counts=True
    )
    values = np.concatenate([vals, np.repeat(vals[-1:], max(0, k - len(vals)))])[first]
    return Links(pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), values,
                 draws.astype(np.int64), k, scan.positive, scan.mass)  # fmt: skip


@dataclass(frozen=True)
class Arrows:
    """Barycentric arrows x_i → (P y)_i / (P1)_i for the points ``rows`` of A (sampled with
    probability ∝ P1, without replacement), out of ``n``; ``share`` of Σ P leaves from them."""

    rows: np.ndarray
    start: np.ndarray  # (k, 2)
    end: np.ndarray  # (k, 2)
    n: int
    share: float


def barycentric_arrows(x_plane: np.ndarray, scan: PlanScan, k: int, seed: int = 0) -> Arrows:
    """The barycentric map of at most ``k`` points of A (GeomLoss's tutorials draw the
    transport this way): where, on average over P, each point's mass goes."""
    moving = np.flatnonzero(scan.row_mass > 0)
    k = min(k, moving.size)
    if k == 0:
        empty = np.zeros((0, 2))
        return Arrows(np.zeros(0, np.int64), empty, empty, len(x_plane), 0.0)
    weights = scan.row_mass[moving] / scan.row_mass[moving].sum()
    rows = np.sort(np.random.default_rng(seed).choice(moving, k, replace=False, p=weights))
    end = scan.target[rows] / scan.row_mass[rows, None]
    share = float(scan.row_mass[rows].sum() / scan.mass) if scan.mass > 0 else 0.0
    return Arrows(rows, x_plane[rows], end, len(x_plane), share)


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


def axis_names(columns: Sequence[str], columns_b: Sequence[str] | None = None) -> list[str]:
    """The names of the coordinates for the axes: the files' column names where they have
    them ("A: x / B: u" where A's and B's differ), x₁, x₂, ... where they are only 0-based
    indices (NPY, a CSV without a header)."""
    subscripts = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

    def named(cols: Sequence[str] | None) -> bool:
        return bool(cols) and not all(c.isdigit() for c in cols)  # type: ignore[union-attr]

    size = len(columns) if columns else len(columns_b or ())
    out = []
    for k in range(size):
        own = columns[k] if named(columns) else None
        other = columns_b[k] if columns_b and named(columns_b) else None
        if other is not None and own is not None and other != own:
            out.append(f"A: {own} / B: {other}")
        else:
            out.append(own or other or f"x{k + 1}".translate(subscripts))
    return out


def project(
    x: np.ndarray,
    y: np.ndarray,
    columns: Sequence[str] = (),
    columns_b: Sequence[str] | None = None,
) -> Projection:
    """2-D clouds as they are; 1-D ones on two rows (A at 0, B at 1); higher dimensions on
    the first two principal axes of the union of both clouds (centred, unweighted). The
    axes carry the files' column names (``columns``, B's ``columns_b`` where they differ)."""
    union = np.concatenate([x, y])
    centre = union.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov((union - centre).T, bias=True).reshape(x.shape[1], -1))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigvec *= np.where(eigvec[np.abs(eigvec).argmax(axis=0), range(eigvec.shape[1])] < 0, -1, 1)
    key_x, key_y = (x - centre) @ eigvec[:, 0], (y - centre) @ eigvec[:, 0]
    d = x.shape[1]
    names = axis_names(tuple(columns)[:d] if len(columns) >= d else (), columns_b)
    if len(names) != d:
        names = axis_names(tuple(str(k) for k in range(d)))
    if d == 1:
        px = np.column_stack([x[:, 0], np.zeros(len(x))])
        py = np.column_stack([y[:, 0], np.ones(len(y))])
        return Projection(px, py, (names[0], ""), key_x, key_y, "by coordinate")
    if d == 2:
        return Projection(x, y, (names[0], names[1]), key_x, key_y, "along principal axis 1")
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


def mass_note(result: Any, scan: PlanScan) -> str | None:
    """For an unbalanced result: how much of the clouds' mass (1 each) P transports."""
    if not getattr(result, "unbalanced", False):
        return None
    mass = scan.mass
    if mass <= 1:
        return (
            f"transported Σ P = {mass:.3g} of each cloud's mass 1: {1 - mass:.2g} of A's and of "
            "B's mass stays (colour: each point's share transported)"
        )
    return (
        f"transported Σ P = {mass:.3g}: the relaxed marginals create {mass - 1:.2g} beyond "
        "each cloud's mass 1 (colour: each point's share transported)"
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

    Left: both clouds (``clouds`` if given, else the result's own) and the transport: every
    link x_i → y_j when P has at most ``max_links`` entries (opacity P_ij / max P); up to
    :data:`ARROWS_ABOVE` entries, ``max_links`` links sampled with probability ∝ P_ij;
    beyond, barycentric arrows x_i → (P y)_i / (P1)_i of at most :data:`MAX_ARROWS` points
    sampled ∝ their mass. The panel's title says which, and what share of the mass the drawn
    links (arrows) carry. Unbalanced results colour each point by the share of its mass
    transported (P1/a, Pᵀ1/b). Middle and right: P (log scale where its entries span
    decades) and C as heat maps, rows and columns ordered along the first principal axis,
    at most ``cells`` a side (block means beyond). A title with the figures.
    """
    x, y = clouds if clouds is not None else (result.x, result.y)
    n, m = x.n, y.n
    columns_b = None if tuple(y.columns) == tuple(x.columns) else tuple(y.columns)
    proj = project(x.points, y.points, x.columns, columns_b)
    p_img = BlockImage(n, m, cells, proj.key_x, proj.key_y)
    scan = scan_plan(result.plan_blocks, proj.y, m, p_img)
    transport: Links | Arrows
    if n * m <= max_links:
        transport = all_links(result.plan_blocks, m, scan)
    elif n * m <= ARROWS_ABOVE:
        transport = sample_links(result.plan_blocks, m, scan, max_links)
    else:
        transport = barycentric_arrows(proj.x, scan, min(max_links, MAX_ARROWS))
    c_img = stream_image(
        result.cost_blocks(block_rows(m)), BlockImage(n, m, cells, proj.key_x, proj.key_y)
    )
    fig = new_figure(size_or(size, PAIR_SIZE))
    ax_pts, ax_p, ax_c = fig.subplots(1, 3, width_ratios=[1.25, 1, 1])
    _draw_clouds(ax_pts, proj, transport, x, y, scan, mass_note(result, scan))
    for ax, img, what, cmap in ((ax_p, p_img, "P", "viridis"), (ax_c, c_img, "C", "magma")):
        label = block_label(f"${what}_{{ij}}$", (n, m), img.cells)
        heat_map(fig, ax, img.image(), label=label, cmap=cmap, gid=what, shape=(n, m),
                 scale="auto" if what == "P" else "linear")  # fmt: skip
        kind = "coupling P" if what == "P" else "cost matrix C"
        if img.averaged:
            kind += f", {img.cells[0]}×{img.cells[1]} block means"
        ax.set_title(kind, fontsize="small")
        ax.set_xlabel(f"B, {proj.order_label}")
        ax.set_ylabel(f"A, {proj.order_label}")
    fig.suptitle(wrap_title(pair_title(result), fig.get_figwidth()), fontsize="medium")
    return fig


def transport_title(transport: Links | Arrows) -> str:
    """The left panel's title: what is drawn, and the share of the mass it carries."""
    if isinstance(transport, Arrows):
        return (
            f"barycentric map $x_i \\to (Py)_i\\,/\\,(P1)_i$: {len(transport.rows):,} of "
            f"{transport.n:,} points of A,\nsampled ∝ mass; they send {transport.share:.0%} "
            "of the mass"
        )
    if transport.samples == 0:
        return (
            f"transport $x_i \\to y_j$, opacity $P_{{ij}}$ / max P\nall {len(transport.values):,} "
            "links (100% of the mass)"
        )
    return (
        f"{transport.samples:,} links drawn ∝ $P_{{ij}}$ of {transport.total:,} (each draw "
        f"1/{transport.samples:,} of the mass)\n{len(transport.values):,} distinct links, "
        f"holding {transport.share:.0%} of the mass; opacity ∝ draws"
    )


def _draw_clouds(
    ax: Any,
    proj: Projection,
    transport: Links | Arrows,
    x: Cloud,
    y: Cloud,
    scan: PlanScan,
    note: str | None,
) -> None:
    from matplotlib.collections import LineCollection

    if isinstance(transport, Arrows):
        delta = transport.end - transport.start
        ax.quiver(
            transport.start[:, 0], transport.start[:, 1], delta[:, 0], delta[:, 1],
            angles="xy", scale_units="xy", scale=1, color="0.1", alpha=0.45, width=0.002,
            headwidth=5, headlength=6, zorder=2, gid="arrows",
        )  # fmt: skip
    else:
        links = transport
        weight = links.values / links.values.max() if links.samples == 0 else links.draws
        order = np.argsort(weight, kind="stable")  # weakest first: strongest on top
        segments = np.stack([proj.x[links.rows[order]], proj.y[links.cols[order]]], axis=1)
        colours = np.zeros((len(order), 4))
        colours[:, :3] = 0.15
        if links.samples == 0:
            colours[:, 3] = weight[order] if len(order) else 0.0
        else:  # one draw faint, so that a bundle of draws reads as a bundle, not a hatching
            base = float(np.clip(40 / links.samples, 0.06, 0.5))
            colours[:, 3] = np.minimum(1.0, base * weight[order])
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.6, gid="links"))
    rng = np.random.default_rng(0)
    unbalanced = note is not None
    shares = (_share(scan.row_mass, x.weights), _share(scan.col_mass, y.weights))
    top = max(1.0, *(float(s.max(initial=0.0)) for s in shares)) if unbalanced else 1.0
    clouds = ((proj.x, x, "tab:blue", "A", "o"), (proj.y, y, "tab:orange", "B", "^"))
    drawn = []
    for (pts, cloud, colour, tag, marker), share in zip(clouds, shares, strict=True):
        keep = np.arange(len(pts))
        label = f"{tag}: {short_name(cloud.source)} ({cloud.n:,} points"
        if len(pts) > MAX_POINTS:
            keep = np.sort(rng.choice(len(pts), MAX_POINTS, replace=False))
            label += f", {MAX_POINTS:,} drawn"
        size = float(np.clip(4000 / len(pts), 3, 36))
        style: dict[str, Any] = {"c": colour}
        if unbalanced:  # grey (nothing transported) to the cloud's colour; the most on top
            keep = keep[np.argsort(share[keep], kind="stable")]
            style = {"c": share[keep], "cmap": _fade(colour), "vmin": 0.0, "vmax": top}
        drawn.append(ax.scatter(
            pts[keep, 0], pts[keep, 1], s=size, marker=marker, label=label + ")", zorder=3,
            linewidths=0, gid=f"points {tag}", **style,
        ))  # fmt: skip
    if unbalanced:
        fig = ax.figure
        for artist, what in zip(drawn, ("A: P1/a", "B: Pᵀ1/b"), strict=True):
            bar = fig.colorbar(artist, ax=ax, shrink=0.9, pad=0.01, fraction=0.04)
            bar.set_label(what, labelpad=1)
        drawn[0].colorbar.ax.set_title("share\ntransported", fontsize="x-small", loc="left")
    title = transport_title(transport)
    if note is not None:  # wrapped to the panel (about 0.35 of the figure); the lines above
        # hold mathtext, never split
        title += "\n" + wrap_title(note, 0.35 * ax.figure.get_figwidth(), points=9)
    ax.set_title(title, fontsize="small")
    ax.set_xlabel(proj.labels[0])
    ax.set_ylabel(proj.labels[1])
    if proj.labels[1] == "":  # 1-D: A on the row y = 0, B on y = 1
        ax.set_yticks([0, 1], ["A", "B"])
        ax.set_ylim(-0.3, 1.3)
    else:
        ax.set_aspect("equal", adjustable="datalim")
    handles: list[Any] = list(drawn)
    if unbalanced:  # the legend names the clouds in their full colour
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker=marker, color=colour, linestyle="none", label=art.get_label())
            for art, (_, _, colour, _, marker) in zip(drawn, clouds, strict=True)
        ]
    ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.8)
    ax.autoscale_view()


def _fade(colour: str) -> Any:
    """A colour map from light grey (share 0: the point's mass all stays) to ``colour``."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(f"fade {colour}", ["0.82", colour])


def _share(marginal: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """marginal / weights per point (0 where a point has no mass)."""
    return np.divide(marginal, weights, out=np.zeros_like(marginal), where=weights > 0)

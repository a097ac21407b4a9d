"""Pictures: what is drawn is checked on the Figure before saving, never by pixels.

Oracles: the plan and cost matrix from numpy (``plan()``, ``numpy_cost``), an SVD of the union
for the projection, a configuration of points in the plane for classical MDS, and the debiased
divergence between translated copies of one cloud, which is exactly |t_k − t_l|².
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from conftest import numpy_cost, otdist
from otcli import api, plot
from otcli.errors import OtcliError
from otcli.io.stored import ResultTable
from otcli.plot.common import BlockImage

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, points: np.ndarray) -> Path:
    header = ",".join(f"c{k}" for k in range(points.shape[1]))
    rows = [",".join(repr(float(v)) for v in row) for row in points]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def gid(fig, name):
    found = fig.findobj(match=lambda a: a.get_gid() == name)
    assert len(found) == 1, (name, found)
    return found[0]


def assert_picture(path: Path, suffix: str) -> None:
    """A complete file of the format its extension names (PNG read back by matplotlib)."""
    data = path.read_bytes()
    if suffix == ".png":
        from matplotlib.image import imread

        assert data.startswith(PNG_MAGIC)
        assert imread(path).ndim == 3
    elif suffix == ".pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    else:
        assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")


@pytest.fixture(scope="module")
def moons_result(moons):
    return api.solve(*moons, eps=0.05, dtype="float64")


@pytest.fixture(scope="module")
def random_result():
    """No symmetry, so no two entries of P tie for the k-th place."""
    rng = np.random.default_rng(8)
    return api.solve(rng.random((15, 2)), rng.random((12, 2)), eps=0.05, dtype="float64")


# --- one pair ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 40, 179])
def test_links_are_sampled_by_mass(random_result, k):
    """Systematic sampling: a link holding a share q of Σ P is drawn ⌊qk⌋ or ⌈qk⌉ times, the
    k draws all land, and the title states the share of the mass the distinct links hold
    (the 1,000 strongest of 25,000,000 held "0%" and sat at four corners)."""
    r = random_result
    P = r.plan()  # numpy's plan from the potentials, the oracle
    fig = plot.pair_figure(r, max_links=k)
    links = plot.pair.sample_links(r.plan_blocks, r.m, plot.pair.scan_plan(
        r.plan_blocks, r.y.points, r.m), k)  # fmt: skip
    assert links.draws.sum() == k and links.samples == k
    q = P[links.rows, links.cols] / P.sum()
    assert np.all(links.draws >= np.floor(q * k) - 1e-9) and np.all(links.draws <= np.ceil(q * k))
    heavy = np.argwhere(P / P.sum() > 1 / k)  # always drawn
    assert {tuple(ij) for ij in heavy} <= set(
        zip(links.rows.tolist(), links.cols.tolist(), strict=True)
    )
    np.testing.assert_allclose(links.values, P[links.rows, links.cols], rtol=1e-12)
    segs = np.array(gid(fig, "links").get_segments())
    assert len(segs) == len(links.rows)
    want = {
        (tuple(r.x.points[i]), tuple(r.y.points[j]))
        for i, j in zip(links.rows, links.cols, strict=True)
    }
    assert {(tuple(s[0]), tuple(s[1])) for s in segs} == want
    share = P[links.rows, links.cols].sum() / P.sum()
    title = fig.axes[0].get_title()
    assert f"{k:,} links drawn ∝ $P_{{ij}}$ of {P.size:,}" in title
    assert f"{len(links.rows):,} distinct links, holding {share:.0%} of the mass" in title


def test_every_link_of_a_small_plan_with_opacity_by_mass(random_result):
    r = random_result
    P = r.plan()
    fig = plot.pair_figure(r, max_links=P.size)
    lines = gid(fig, "links")
    segs = np.array(lines.get_segments())
    got = {(round(float(a), 12), tuple(s[0]), tuple(s[1]))
           for a, s in zip(lines.get_colors()[:, 3], segs, strict=True)}  # fmt: skip
    want = {(round(P[i, j] / P.max(), 12), tuple(r.x.points[i]), tuple(r.y.points[j]))
            for i in range(r.n) for j in range(r.m)}  # fmt: skip
    assert got == want
    assert f"all {P.size} links (100% of the mass)" in fig.axes[0].get_title()


def test_large_pairs_draw_barycentric_arrows(random_result, monkeypatch):
    """Above ARROWS_ABOVE entries: arrows x_i → (P y)_i / (P1)_i (GeomLoss's tutorials),
    for points sampled by mass, and the share of the mass they send."""
    monkeypatch.setattr(plot.pair, "ARROWS_ABOVE", 100)  # 15 × 12 = 180 entries
    r = random_result
    P = r.plan()
    fig = plot.pair_figure(r, max_links=5)
    arrows = gid(fig, "arrows")
    start = np.asarray(arrows.get_offsets())
    rows = [int(np.flatnonzero((r.x.points == s).all(axis=1))[0]) for s in start]
    assert len(set(rows)) == 5
    end = start + np.column_stack([arrows.U, arrows.V])
    np.testing.assert_allclose(end, (P @ r.y.points)[rows] / P.sum(1)[rows, None], rtol=1e-9)
    share = P.sum(1)[rows].sum() / P.sum()
    title = fig.axes[0].get_title()
    assert "barycentric map" in title and "5 of 15 points of A" in title
    assert f"they send {share:.0%} of the mass" in title
    assert not fig.findobj(match=lambda a: a.get_gid() == "links")


def test_unbalanced_points_show_the_mass_they_transport(moons):
    r = api.solve(*moons, eps=0.1, reach=0.5, dtype="float64")
    P = r.plan()
    fig = plot.pair_figure(r)
    for tag, points, marginal, weights in (("A", r.x.points, P.sum(1), r.x.weights),
                                           ("B", r.y.points, P.sum(0), r.y.weights)):  # fmt: skip
        drawn = gid(fig, f"points {tag}")
        colours = np.asarray(drawn.get_array())
        where = [int(np.flatnonzero((points == p).all(1))[0]) for p in drawn.get_offsets()]
        assert sorted(where) == list(range(len(points)))
        np.testing.assert_allclose(colours, (marginal / weights)[where], rtol=1e-9)
        assert np.all(np.diff(colours) >= 0)  # the most transported drawn on top
    assert P.sum() < 0.5  # reach 0.5 on moons 1 apart: most mass stays
    title = fig.axes[0].get_title()
    assert f"transported Σ P = {P.sum():.3g} of each cloud's mass 1" in title
    assert f"{1 - P.sum():.2g} of A's and of B's" in title
    assert gid(fig, "points A").colorbar.ax.get_ylabel() == "A: P1/a"
    assert gid(fig, "points B").colorbar.ax.get_ylabel() == "B: Pᵀ1/b"
    balanced = plot.pair_figure(api.solve(*moons, eps=0.1))
    assert "transported Σ P" not in balanced.axes[0].get_title()


def test_heat_map_scale_is_log_with_a_floor_where_values_span_decades():
    from matplotlib.colors import LogNorm, Normalize

    from otcli.plot.common import LOG_FLOOR, choose_scale

    band = np.exp(-((np.arange(50)[:, None] - np.arange(50)[None]) ** 2) / 4.0)  # 1 … e^-600
    s = choose_scale(band)
    assert s.log and s.vmax == 1.0 and s.vmin == LOG_FLOOR and s.floor == LOG_FLOOR
    assert not choose_scale(band + 1.0).log  # 1 … 2: linear
    assert not choose_scale(band - 0.5).log  # negative entries: linear
    from otcli.plot.common import heat_map, new_figure

    fig = new_figure((4, 3))
    ax = fig.subplots()
    im = heat_map(fig, ax, band, label="P")
    assert isinstance(im.norm, LogNorm) and im.norm.vmin == LOG_FLOOR
    assert im.colorbar.ax.get_ylabel() == "P\n(log scale, floor max/1,000)"
    im = heat_map(fig, ax, band + 1.0, label="C")
    assert type(im.norm) is Normalize and im.colorbar.ax.get_ylabel() == "C"


def test_heat_maps_hold_p_and_c_and_their_colour_bars_span_them(moons_result, moons):
    r = moons_result
    P, C = r.plan(), numpy_cost(*moons, "sqeuclidean")
    fig = plot.pair_figure(r)
    for name, M in (("P", P), ("C", C)):
        im = gid(fig, name)
        shown = np.asarray(im.get_array())
        assert shown.shape == M.shape
        # the same entries, reordered along the first principal axis; P on a log scale,
        # its entries below max/1,000 drawn at that floor, C linear
        low = M.max() * 1e-3 if name == "P" else M.min()
        assert im.colorbar.vmin == pytest.approx(low, rel=1e-9, abs=1e-300)
        assert im.colorbar.vmax == pytest.approx(M.max(), rel=1e-9)
        want = np.maximum(M, low)
        np.testing.assert_allclose(np.sort(shown, axis=None), np.sort(want, axis=None), rtol=1e-9)
    assert gid(fig, "P").colorbar.ax.get_ylabel() == "$P_{ij}$\n(log scale, floor max/1,000)"
    assert gid(fig, "C").colorbar.ax.get_ylabel() == "$C_{ij}$"
    title = fig.get_suptitle()
    assert f"⟨P, C⟩ = {r.cost:.6g}" in title and "ε = 0.05" in title
    assert f"{r.iterations} iterations, converged" in title


def test_block_means_equal_numpy_means_and_stream_in_small_pieces(moons_result, monkeypatch):
    r = moons_result
    P = r.plan()
    whole = plot.pair_figure(r, cells=5)
    monkeypatch.setattr("otcli.plot.common.BLOCK_ENTRIES", 30)  # 2 rows of 15 at a time
    seen = []
    real = type(r).plan_blocks

    def spy(self, rows=4096):
        for i0, j0, blk in real(self, rows):
            seen.append(blk.size)
            yield i0, j0, blk

    monkeypatch.setattr(type(r), "plan_blocks", spy)
    pieces = plot.pair_figure(r, cells=5)
    assert max(seen) <= 30 and sum(seen) == 2 * P.size  # two passes: the scan, then the links
    proj = plot.pair.project(r.x.points, r.y.points)
    ordered = P[np.argsort(proj.key_x, kind="stable")][:, np.argsort(proj.key_y, kind="stable")]
    want = ordered.reshape(5, 3, 5, 3).mean(axis=(1, 3))
    for fig in (whole, pieces):
        im = gid(fig, "P")
        shown = np.asarray(im.get_array())
        np.testing.assert_allclose(
            np.ma.filled(shown), np.maximum(want, want.max() * 1e-3), rtol=1e-12
        )
        bounds = (im.colorbar.vmin, im.colorbar.vmax)
        assert bounds == pytest.approx((want.max() * 1e-3, want.max()), rel=1e-12)
        label = im.colorbar.ax.get_ylabel()
        assert label == "mean of $P_{ij}$ over\nblocks of 3 × 3\n(log scale, floor max/1,000)"
    assert len(gid(pieces, "links").get_segments()) == 225
    assert pieces.axes[1].get_title() == "coupling P, 5×5 block means"


def test_block_image_of_sparse_entries_equals_dense():
    rng = np.random.default_rng(0)
    M = rng.random((23, 17)) * (rng.random((23, 17)) < 0.3)
    dense, sparse = BlockImage(23, 17, 4), BlockImage(23, 17, 4)
    dense.add_rows(0, M[:10])
    dense.add_rows(10, M[10:])
    ii, jj = np.nonzero(M)
    sparse.add_entries(ii, jj, M[ii, jj])
    np.testing.assert_allclose(dense.image(), sparse.image(), rtol=1e-12)
    rows, cols = np.arange(23) * 4 // 23, np.arange(17) * 4 // 17  # cells of 6,6,6,5 / 5,4,4,4
    want = [[M[rows == a][:, cols == b].mean() for b in range(4)] for a in range(4)]
    np.testing.assert_allclose(dense.image(), want, rtol=1e-12)


def test_higher_dimensions_are_drawn_on_the_principal_axes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5)) * [5, 2, 0.5, 0.1, 0.1]
    y = rng.normal(size=(30, 5)) * [5, 2, 0.5, 0.1, 0.1] + 1.0
    proj = plot.pair.project(x, y)
    union = np.vstack([x, y])
    _, sing, vt = np.linalg.svd(union - union.mean(0), full_matrices=False)  # PCA by SVD
    axes = vt[:2].T
    for ours, theirs in (
        (proj.x, (x - union.mean(0)) @ axes),
        (proj.y, (y - union.mean(0)) @ axes),
    ):
        for k in range(2):  # each axis up to its sign
            sign = np.sign(ours[:, k] @ theirs[:, k])
            np.testing.assert_allclose(ours[:, k], sign * theirs[:, k], atol=1e-9)
    share = sing[0] ** 2 / (sing**2).sum()
    assert proj.labels[0] == f"principal axis 1 of A ∪ B ({share:.0%} of variance)"
    fig = plot.pair_figure(api.solve(x, y, eps=1.0))
    assert fig.axes[0].get_xlabel() == proj.labels[0]


def test_one_dimension_puts_a_and_b_on_two_rows():
    x, y = np.arange(4.0)[:, None], np.arange(4.0)[:, None] + 0.5
    fig = plot.pair_figure(api.solve(x, y, eps=0.01))
    segs = np.array(gid(fig, "links").get_segments())
    assert set(segs[:, 0, 1]) == {0.0} and set(segs[:, 1, 1]) == {1.0}


def test_exact_plan_draws_its_permutation(moons):
    from otcli.cloud import make_cloud
    from otcli.config import make_config
    from otcli.exact import solve_exact

    res = solve_exact(make_cloud(moons[0]), make_cloud(moons[1]), make_config())
    fig = plot.pair_figure(res, max_links=1000)
    lines = gid(fig, "links")
    assert len(lines.get_segments()) == 15  # the plan's support, not its 225 entries
    assert np.all(lines.get_colors()[:, 3] == 1.0)
    assert "exact ⟨P, C⟩" in fig.get_suptitle()


# --- the pair command ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_pair_plot_formats(capfd, tmp_path, moons, suffix):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    out = tmp_path / f"pic{suffix}"
    code, stdout, err = otdist(capfd, a, b, "--plot", out, "--plot-size", "6x3", "--quiet")
    assert code == 0, err
    assert float(stdout) > 0
    assert_picture(out, suffix)
    if suffix == ".png":
        from PIL import Image

        assert Image.open(out).size == (600, 300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", out.name]


def test_pair_plot_max_links_and_exact(capfd, tmp_path, moons, monkeypatch):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    figures = []
    real = plot.pair_figure
    monkeypatch.setattr(
        plot, "pair_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1]
    )
    code, _, err = otdist(capfd, a, b, "--plot", tmp_path / "p.png", "--plot-max-links", 7)
    assert code == 0, err
    assert "7 links drawn ∝ $P_{ij}$ of 225" in figures[-1].axes[0].get_title()
    assert len(gid(figures[-1], "links").get_segments()) <= 7
    code, _, err = otdist(capfd, a, b, "--exact", "--plot", tmp_path / "e.png")
    assert code == 0, err
    # the assignment's 15 links start at A's points as the file gives them (not centred)
    starts = {tuple(s[0]) for s in gid(figures[-1], "links").get_segments()}
    assert starts == {tuple(p) for p in moons[0]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "{d}/p.jpg"], "--plot: '{d}/p.jpg' has unsupported file type '.jpg'; use one of .png, .svg, .pdf"),
        (["--plot", "{d}/no/p.png"], "--plot: directory '{d}/no' of '{d}/no/p.png' does not exist; create it first"),
        (["--plot", "{d}/p.png", "--plot-max-links", "0"], "--plot-max-links: must be ≥ 1, got 0"),
        (["--plot", "{d}/p.png", "--plot-size", "12"], "--plot-size: bad size '12'; give inches as WIDTHxHEIGHT, e.g. 12x4"),
        # 0.001 inch was zero pixels: PIL's "cannot write empty image" after the solve
        (["--plot", "{d}/p.png", "--plot-size", "0.001x0.001"], "--plot-size: size '0.001x0.001' is out of range; each side is 1 to 100 inches, e.g. 12x4"),
        (["--plot", "{d}/p.png", "--plot-size", "12x0.5"], "--plot-size: size '12x0.5' is out of range; each side is 1 to 100 inches, e.g. 12x4"),
        (["--plot", "{d}/p.png", "--plot-size", "101x4"], "--plot-size: size '101x4' is out of range; each side is 1 to 100 inches, e.g. 12x4"),
    ],
)  # fmt: skip
def test_bad_plot_options(capfd, tmp_path, moons, args, message):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    args = [s.format(d=tmp_path) for s in args]
    code, out, err = otdist(capfd, a, b, "--coupling", tmp_path / "P.npy", *args)
    assert (code, out) == (2, "")
    assert err == f"Error: {message.format(d=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_without_matplotlib_plot_says_how_to_install(capfd, tmp_path, moons, monkeypatch):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    code, out, err = otdist(capfd, a, b, "--plot", tmp_path / "p.png")
    assert (code, out) == (2, "")
    assert err == "Error: --plot: needs matplotlib, an optional extra: pip install 'otcli[plot]'\n"
    code, _, err = otdist(capfd, "show", a, "--plot", tmp_path / "p.png")
    assert code == 2 and "needs matplotlib" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


@pytest.mark.parametrize("failing", [".png", ".svg", "matrix"])
def test_failed_write_leaves_neither_plot_nor_matrix(capfd, tmp_path, moons, monkeypatch, failing):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def full(path, *args, **kwargs):
        raise OtcliError(str(path), "cannot write the file (No space left on device)")

    picture = tmp_path / f"p{'.png' if failing == 'matrix' else failing}"
    if failing == ".png":
        monkeypatch.setattr("PIL.Image.Image.save", broken)
    elif failing == ".svg":
        monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    else:
        monkeypatch.setattr("otcli.export.write_matrix", full)
    code, _, err = otdist(capfd, a, b, "--plot", picture, "--coupling", tmp_path / "P.npy")
    assert code == 2
    if failing == "matrix":
        assert (
            err == f"Error: {tmp_path / 'P.npy'}: cannot write the file (No space left on device)\n"
        )
    else:
        assert err == f"Error: {picture}: cannot write the picture (No space left on device)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_help_imports_no_matplotlib():
    code = (
        "import sys; from otcli.cli import run; rc = run(['show', '--help']); "
        "print('matplotlib' in sys.modules); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "False"


# --- many pairs ----------------------------------------------------------------------------------


def test_classical_mds_recovers_a_planar_configuration():
    rng = np.random.default_rng(5)
    pts = rng.normal(size=(9, 2))
    D = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    for matrix, squared in ((D, False), (D**2, True)):
        coords, share = plot.classical_mds(matrix, squared=squared)
        got = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
        np.testing.assert_allclose(got, D, atol=1e-9)
        assert share == pytest.approx(1.0)


def test_pairwise_plot_mds_matches_translations(capfd, tmp_path, monkeypatch):
    from scipy.stats import spearmanr

    rng = np.random.default_rng(11)
    base = rng.normal(size=(20, 2))
    shifts = rng.normal(size=(6, 2)) * 3
    files = [write_csv(tmp_path / f"cloud{k}.csv", base + t) for k, t in enumerate(shifts)]
    figures = []
    real = plot.pairwise_file_figure
    monkeypatch.setattr(plot, "pairwise_file_figure",
                        lambda *a, **k: figures.append(real(*a, **k)) or figures[-1])  # fmt: skip
    code, _, err = otdist(capfd, "pairwise", *files, "-o", tmp_path / "D.npy", "--divergence",
                          "--eps", 0.1, "--dtype", "float64", "--plot", tmp_path / "D.png")  # fmt: skip
    assert code == 0, err
    assert_picture(tmp_path / "D.png", ".png")
    D = np.load(tmp_path / "D.npy")
    truth = ((shifts[:, None] - shifts[None]) ** 2).sum(-1)  # S_ε(α, α + t) = |t|²
    np.testing.assert_allclose(D, truth, rtol=1e-4, atol=1e-6)
    fig = figures[-1]
    im = gid(fig, "matrix")
    assert (im.colorbar.vmin, im.colorbar.vmax) == (D.min(), D.max())
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f.name for f in files]
    emb = gid(fig, "mds").get_offsets()
    got = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    iu = np.triu_indices(6, 1)
    assert spearmanr(got[iu], D[iu]).statistic > 0.99
    np.testing.assert_allclose(got, np.sqrt(truth), rtol=1e-3, atol=1e-3)


def test_batch_histograms_mark_unconverged_and_failed_rows():
    rows = [dict(id=k, status="ok", converged=k % 3 != 0, cost=float(k), iterations=10 * k,
                 eps=0.1, marginal_error=1e-3) for k in range(12)]  # fmt: skip
    rows += [dict(id=99, status="error", error="x.csv: no such file", cost=None)]
    fig = plot.batch_figure(ResultTable("r.parquet", "batch", rows))
    for ax in fig.axes[:2]:
        counts = {}
        for patch in ax.patches:
            key = tuple(np.round(patch.get_facecolor(), 3))
            counts[key] = counts.get(key, 0) + patch.get_height()
        assert counts[tuple(np.round(to_rgba("tab:blue"), 3))] == 8
        assert counts[tuple(np.round(to_rgba("tab:red"), 3))] == 4
    title = fig.get_suptitle()
    assert "13 pairs, 12 ok, 4 not converged, 1 failed" in title
    assert "first failure: 99: x.csv: no such file" in title


def test_batch_plot_from_the_command(capfd, tmp_path, moons):
    write_csv(tmp_path / "a.csv", moons[0])
    write_csv(tmp_path / "b.csv", moons[1])
    (tmp_path / "m.csv").write_text("a,b\na.csv,b.csv\nb.csv,a.csv\na.csv,missing.csv\n")
    code, _, err = otdist(capfd, "batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv",
                          "--plot", tmp_path / "h.svg")  # fmt: skip
    assert code == 1, err  # one pair failed; the picture is still drawn
    assert_picture(tmp_path / "h.svg", ".svg")


# --- readable at any size: names, failures, histograms, dpi, column names ------------------------


def test_distinct_names_use_the_shortest_distinct_path_suffix():
    from otcli.plot.common import distinct_names

    paths = ["runs/r1/cloud.npy", "runs/r2/cloud.npy", "other/a.csv", "a.csv", "x/b.csv", "x/b.csv"]
    assert distinct_names(paths) == [
        "r1/cloud.npy", "r2/cloud.npy", "other/a.csv", "a.csv", "b.csv", "b.csv #2",
    ]  # fmt: skip
    long = ["d1/" + "n" * 40 + ".npy", "d2/" + "n" * 40 + ".npy"]
    names = distinct_names(long, width=28)
    assert len(set(names)) == 2 and all(name.endswith(".npy") for name in names)


def test_pairwise_map_of_many_files_numbers_them_with_a_key():
    """30 files named r<k>/cloud.npy: numbered on both panels, a key naming each by its
    distinct suffix; the map is the configuration the matrix was made from (classical MDS
    of squared distances recovers it up to a rigid motion)."""
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(30, 2))
    D2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    labels = [f"/data/r{k}/cloud.npy" for k in range(30)]
    fig = plot.pairwise_figure(D2, labels)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == [str(k + 1) for k in range(30)]
    key = "\n".join(t.get_text() for t in fig.findobj(match=lambda a: a.get_gid() == "key"))
    for k in range(30):
        assert f"{k + 1:>3}  r{k}/cloud.npy" in key
    texts = [t.get_text() for t in fig.findobj(match=lambda a: a.get_gid() == "mds label")]
    assert texts == [str(k + 1) for k in range(30)]
    emb = gid(fig, "mds").get_offsets()
    got = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.testing.assert_allclose(got, np.sqrt(D2), atol=1e-9)
    few = plot.pairwise_figure(D2[:5, :5], labels[:5])
    assert [t.get_text() for t in few.axes[0].get_yticklabels()] == [
        f"r{k}/cloud.npy" for k in range(5)
    ]


def test_failed_pairs_have_a_legend_entry_counted_as_the_warning_counts(capfd, tmp_path):
    rng = np.random.default_rng(4)
    files = [write_csv(tmp_path / f"c{k}.csv", rng.random((12, 2)) + k) for k in range(4)]
    bad = tmp_path / "bad.csv"
    bad.write_text("c0,c1\n1,2\n3,nan\n")
    code, _, err = otdist(capfd, "pairwise", *files, bad, "-o", tmp_path / "D.npy",
                          "--plot", tmp_path / "D.png")  # fmt: skip
    assert code == 1
    warned = int(err.split(" of 15 pairs failed")[0].split()[-1])
    assert warned == 5  # bad.csv against the 4 others and itself
    D = np.load(tmp_path / "D.npy")
    from otcli.plot.many import failed_pairs, mappable_files

    assert failed_pairs(D) == warned
    assert list(mappable_files(D)) == [0, 1, 2, 3]
    fig = plot.pairwise_figure(D, [str(f) for f in [*files, bad]])
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["failed: 5 of 15 pairs"]
    assert len(gid(fig, "mds").get_offsets()) == 4
    assert "1 file left out (pairs failed): bad.csv" in fig.axes[1].get_title()


def test_histograms_have_integer_counts_a_log_axis_across_decades_and_whole_words():
    from otcli.plot.many import TITLE_WIDTH

    costs = [0.2, 0.5, 3.0, 40.0, 800.0, 3e5]  # 6 decades: one linear bin held 5 of them
    rows = [dict(id=k, status="ok", converged=True, cost=c, iterations=10 + k) for k, c in
            enumerate(costs)]  # fmt: skip
    message = "the file " + "averyveryverylongname" * 3 + ".npy could not be read because " * 4
    rows.append(dict(id="bad", status="error", error=message, cost=None))
    fig = plot.batch_figure(ResultTable("r.parquet", "batch", rows))
    cost_ax, iter_ax = fig.axes[:2]
    assert cost_ax.get_xscale() == "log" and cost_ax.get_xlabel() == "cost (log scale)"
    assert iter_ax.get_xscale() == "linear"  # 10 … 15
    heights = [p.get_height() for p in cost_ax.patches][:5]  # converged: the first 5 bars
    edges = np.logspace(np.log10(0.2), np.log10(3e5), 6)  # numpy's counts in equal log bins
    assert heights == list(np.histogram(costs, bins=edges)[0])
    assert heights == [3, 1, 1, 0, 1]  # a linear axis put 5 of the 6 in its first bin
    for ax in (cost_ax, iter_ax):
        ticks = ax.get_yticks()
        assert np.all(ticks == np.round(ticks))
    lines = fig.get_suptitle().split("\n")
    assert all(len(line) <= TITLE_WIDTH for line in lines)
    words = set(" ".join(lines[1:]).split())
    assert {w for w in message.split()[:6]} <= words | {"…"}  # never cut inside a word


@pytest.mark.parametrize("command", ["pair", "batch", "pairwise", "show"])
@pytest.mark.parametrize("dpi", ["0", "-5", "1201"])
def test_plot_dpi_is_checked_before_any_work(capfd, tmp_path, moons, command, dpi):
    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    (tmp_path / "m.csv").write_text("a,b\na.csv,b.csv\n")
    args = {
        "pair": [a, b],
        "batch": ["batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv"],
        "pairwise": ["pairwise", a, b, "-o", tmp_path / "D.npy"],
        "show": ["show", a],
    }[command]
    code, out, err = otdist(capfd, *args, "--plot", tmp_path / "p.png", "--plot-dpi", dpi)
    assert (code, out) == (2, "")
    assert err == f"Error: --plot-dpi: must be 1 to 1200 dots per inch, got {dpi}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "m.csv"]


def test_plot_dpi_sets_the_png_pixels(capfd, tmp_path, moons):
    from PIL import Image

    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    (tmp_path / "m.csv").write_text("a,b\na.csv,b.csv\nb.csv,a.csv\n")
    runs = {
        "pair.png": [a, b],
        "batch.png": ["batch", tmp_path / "m.csv", "-o", tmp_path / "r.csv"],
        "pairwise.png": ["pairwise", a, b, "-o", tmp_path / "D.npy"],
    }
    for name, args in runs.items():
        code, _, err = otdist(capfd, *args, "--plot", tmp_path / name, "--plot-size", "5x2",
                              "--plot-dpi", 40)  # fmt: skip
        assert code == 0, err
        with Image.open(tmp_path / name) as png:
            assert png.size == (200, 80)
            assert png.info["dpi"] == pytest.approx((40, 40), abs=0.01)
    code, _, err = otdist(capfd, a, b, "--plot", tmp_path / "big.png", "--plot-size", "100x4",
                          "--plot-dpi", 700)  # fmt: skip
    assert code == 2
    assert err.startswith("Error: --plot-dpi: 100 inches at 700 dpi is 70,000 pixels")


def test_axes_carry_the_column_names(tmp_path, moons):
    from otcli.io import read_cloud
    from otcli.plot.pair import axis_names

    a, b = write_csv(tmp_path / "a.csv", moons[0]), write_csv(tmp_path / "b.csv", moons[1])
    x, y = read_cloud(str(a)), read_cloud(str(b))
    fig = plot.pair_figure(api.solve(x, y, eps=0.1))
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("c0", "c1")
    bare = plot.pair_figure(api.solve(*moons, eps=0.1))  # arrays: no names
    assert (bare.axes[0].get_xlabel(), bare.axes[0].get_ylabel()) == ("x₁", "x₂")
    assert axis_names(("0", "1")) == ["x₁", "x₂"]
    assert axis_names(("x", "y"), ("u", "y")) == ["A: x / B: u", "y"]


def test_readme_unbalanced_picture_figure(capfd, tmp_path, monkeypatch):
    """The README's unbalanced example: Σ P = 0.244 at --reach 0.5, said in the picture; the
    oracle is the plan's own sum from numpy."""
    root = Path(__file__).resolve().parents[1]
    figures = []
    real = plot.pair_figure
    monkeypatch.setattr(
        plot, "pair_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1]
    )
    monkeypatch.chdir(root)
    out = tmp_path / "moons_reach.png"
    code, text, err = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv",
                             "--reach", "0.5", "--plot", out, "--json")  # fmt: skip
    assert code == 0, err
    import json

    mass = json.loads(text)["mass"]
    assert f"{mass:.3g}" == "0.244"
    assert "transported Σ P = 0.244 of each cloud's mass 1" in figures[-1].axes[0].get_title()
    assert_picture(out, ".png")

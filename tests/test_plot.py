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
from matplotlib.collections import LineCollection
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


@pytest.mark.parametrize("k", [1, 40, 1000])
def test_segments_are_the_k_strongest_links(random_result, k):
    r = random_result
    P = r.plan()
    fig = plot.pair_figure(r, max_links=k)
    lines = gid(fig, "links")
    assert isinstance(lines, LineCollection)
    segs = np.array(lines.get_segments())
    assert len(segs) == min(k, P.size)
    # numpy's k largest entries, each drawn from x_i to y_j with opacity P_ij / max P
    ii, jj = np.unravel_index(np.argsort(P, axis=None)[::-1][: len(segs)], P.shape)
    want = {(round(P[i, j] / P.max(), 12), tuple(r.x.points[i]), tuple(r.y.points[j]))
            for i, j in zip(ii, jj, strict=True)}  # fmt: skip
    alphas = lines.get_colors()[:, 3]
    got = {
        (round(float(a), 12), tuple(s[0]), tuple(s[1])) for a, s in zip(alphas, segs, strict=True)
    }
    assert got == want
    title = fig.axes[0].get_title()
    if k < P.size:
        share = np.sort(P, axis=None)[::-1][:k].sum() / P.sum()
        assert f"{k:,} strongest of {P.size:,} links ({share:.0%} of the mass)" in title
    else:
        assert f"all {P.size} links" in title


def test_heat_maps_hold_p_and_c_and_their_colour_bars_span_them(moons_result, moons):
    r = moons_result
    P, C = r.plan(), numpy_cost(*moons, "sqeuclidean")
    fig = plot.pair_figure(r)
    for name, M in (("P", P), ("C", C)):
        im = gid(fig, name)
        shown = np.asarray(im.get_array())
        assert shown.shape == M.shape
        # the same entries, reordered along the first principal axis
        np.testing.assert_allclose(np.sort(shown, axis=None), np.sort(M, axis=None), rtol=1e-9)
        assert im.colorbar.vmin == pytest.approx(M.min(), rel=1e-9, abs=1e-300)
        assert im.colorbar.vmax == pytest.approx(M.max(), rel=1e-9)
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
    assert max(seen) <= 30 and sum(seen) == P.size
    proj = plot.pair.project(r.x.points, r.y.points)
    ordered = P[np.argsort(proj.key_x, kind="stable")][:, np.argsort(proj.key_y, kind="stable")]
    want = ordered.reshape(5, 3, 5, 3).mean(axis=(1, 3))
    for fig in (whole, pieces):
        im = gid(fig, "P")
        shown = np.asarray(im.get_array())
        np.testing.assert_allclose(shown, want, rtol=1e-12)
        assert (im.colorbar.vmin, im.colorbar.vmax) == (shown.min(), shown.max())
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
    assert len(gid(figures[-1], "links").get_segments()) == 7
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

"""Coarse-to-fine solving (:mod:`otcli.multiscale`) gives the online solver's answer, and the
pruned plan measurement (:func:`otcli.measure.plan_statistics`) the full pass's figures.

The clouds have structure (clusters, a line, a shell) so that clusters of points are not a
uniform blur; the coarse level is made really coarse (a few hundred clusters) by patching
:data:`otcli.multiscale.COARSE_POINTS`, so that the fine stages have work left to do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import otcli
from otcli import measure, multiscale
from otcli.errors import OptionError

pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((5, 3)) * 4
    return centres[rng.integers(0, 5, n)] + 0.3 * rng.standard_normal((n, 3))


def _line(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.random(n)
    return np.stack([3 * t, 1 - t, 0.5 * t], 1) + 0.02 * rng.standard_normal((n, 3))


def _shell(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 3))
    return 2 * v / np.linalg.norm(v, axis=1, keepdims=True) + 0.05 * rng.standard_normal((n, 3))


CLOUDS = {"blobs": _blobs, "line": _line, "shell": _shell}


@pytest.fixture
def coarse_128(monkeypatch):
    monkeypatch.setattr(multiscale, "COARSE_POINTS", 128)


def _pair(kind: str, n: int = 1000, m: int = 900) -> tuple[np.ndarray, np.ndarray]:
    make = CLOUDS[kind]
    return make(n, 1), make(m, 2) + 0.2


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("kind", sorted(CLOUDS))
@pytest.mark.parametrize("eps_rel", [0.002, 0.02])
def test_multiscale_equals_online(coarse_128, kind, eps_rel):
    x, y = _pair(kind)
    opts = dict(eps_rel=eps_rel, dtype="float64")
    online = otcli.solve(x, y, geometry="online", **opts)
    multi = otcli.solve(x, y, geometry="multiscale", **opts)
    assert multi.engine == "multiscale" and online.engine != "multiscale"
    assert multi.converged and online.converged
    assert _rel(multi.cost, online.cost) < 1e-6
    assert _rel(multi.objective, online.objective) < 1e-6
    P = multi.plan()  # the fine plan: its marginals are the clouds' masses to the tolerance
    err = np.abs(P.sum(1) - multi.x.weights).sum() + np.abs(P.sum(0) - multi.y.weights).sum()
    assert err <= multi.tol
    np.testing.assert_allclose(err, multi.marginal_error, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("cost", "p"), [("euclidean", None), ("cityblock", None), ("pnorm", 1.5)])
def test_multiscale_each_coordinate_cost(coarse_128, cost, p):
    x, y = _pair("blobs", 800, 700)
    extra = {} if p is None else {"p": p}
    multi = otcli.solve(x, y, eps_rel=0.01, geometry="multiscale", cost=cost, dtype="float64",
                        **extra)  # fmt: skip
    assert multi.engine == "multiscale" and multi.converged
    online = otcli.solve(x, y, eps_rel=0.01, geometry="online", cost=cost, dtype="float64",
                         **extra)  # fmt: skip
    assert _rel(multi.cost, online.cost) < 1e-6


def test_multiscale_with_weights_and_unbalanced(coarse_128):
    x, y = _pair("shell")
    rng = np.random.default_rng(3)
    a, b = rng.random(len(x)) + 0.1, rng.random(len(y)) + 0.1
    for extra in ({}, {"reach": 1.0}):
        opts = dict(eps_rel=0.005, dtype="float64", **extra)
        online = otcli.solve(x, y, a, b, geometry="online", **opts)
        multi = otcli.solve(x, y, a, b, geometry="multiscale", **opts)
        assert multi.engine == "multiscale" and multi.converged and online.converged
        assert _rel(multi.cost, online.cost) < 1e-6
        assert _rel(multi.objective, online.objective) < 1e-6
        assert _rel(multi.mass, online.mass) < 1e-6


class _Stages:
    """A progress object that records the ε of each callback under the stage it belongs to."""

    def __init__(self) -> None:
        self.eps: dict[str, list[float]] = {}
        self.now = ""

    def stage(self, description: str) -> None:
        self.now = description.split(",")[0]

    def __call__(self, iteration: int, eps: float, err: float) -> None:
        self.eps.setdefault(self.now, []).append(eps)


def test_multiscale_starts_the_fine_solve_below_the_annealing_start(coarse_128):
    """The point of it: the fine level skips the large-ε stages, which the coarse level
    runs from where the online solve starts."""
    x, y = _pair("blobs")
    online, multi = _Stages(), _Stages()
    otcli.solve(x, y, eps_rel=0.002, geometry="online", dtype="float64", progress=online)
    otcli.solve(x, y, eps_rel=0.002, geometry="multiscale", dtype="float64", progress=multi)
    start = max(online.eps["solving"])
    assert max(multi.eps["solving: coarse"]) == pytest.approx(start)
    fine = multi.eps["solving: fine"]
    assert max(fine) < start / 2 and min(fine) == min(online.eps["solving"])


@pytest.mark.parametrize("eps_rel", [0.002, 0.02])
def test_fine_level_starts_at_the_coarse_levels_rate(coarse_128, monkeypatch, eps_rel):
    """The coarse level measures plain Sinkhorn's rate Θ at ε_c; the fine level carries it
    to its first stage as the loop carries it between stages (1 − Θ in proportion to ε, ω
    at 0.9 of ω*'s excess) instead of measuring it again from ω = 1. Same answer, fewer fine
    iterations than a fine level started without it."""
    from otcli import convergence, solver
    from otcli.loopstate import SolverOptions

    x, y = _pair("blobs", 2000, 1800)
    opts = dict(eps_rel=eps_rel, dtype="float64")
    warm, starts = [], []
    real_warm, real_start = multiscale.warm_start, solver._start
    monkeypatch.setattr(
        multiscale, "warm_start", lambda *a, **k: warm.append(real_warm(*a, **k)) or warm[-1]
    )

    def spy_start(*args, **kwargs):
        b, st, c = real_start(*args, **kwargs)
        e = b.schedule[st.stage, b.rows]  # the first stage's ε, and the state there
        starts.append((e, st.theta.clone(), st.omega.clone(), bool(st.stage[0] == b.last)))
        return b, st, c

    monkeypatch.setattr(solver, "_start", spy_start)
    carried = otcli.solve(x, y, geometry="multiscale", **opts)
    ws = warm[-1]
    assert ws is not None and float(ws.theta[0]) > 0.5  # the coarse level measured a rate
    e, theta0, omega0, at_last = starts[-1]  # the fine level's start
    theta, omega = convergence.carry(ws.theta, e / ws.eps, SolverOptions.max_omega)
    assert float(theta0[0]) == pytest.approx(float(theta[0]))
    assert float(omega0[0]) == pytest.approx(float(omega[0]) if at_last else 1.0)
    assert float(omega0[0]) > 1.0 or not at_last
    assert float(theta0[0]) >= float(ws.theta[0])  # no faster at a smaller ε

    monkeypatch.setattr(multiscale, "warm_start", lambda *a, **k: (
        None if (w := real_warm(*a, **k)) is None else solver.WarmStart(w.g, w.eps)
    ))  # fmt: skip
    plain = otcli.solve(x, y, geometry="multiscale", **opts)
    assert carried.converged and plain.converged
    assert _rel(carried.cost, plain.cost) < 1e-6
    assert carried.iterations < plain.iterations


def test_clusters_keep_mass_and_centroids():
    rng = np.random.default_rng(0)
    pts = torch.as_tensor(rng.random((1000, 2)))
    w = torch.as_tensor(rng.random(1000))
    w[:10] = 0  # massless points are allowed
    w = w / w.sum()
    c = multiscale.cluster(pts, w.log(), otcli.make_config(eps=0.1).cost, 64)
    assert 32 <= c.size <= 64
    np.testing.assert_allclose(float(c.log_w.exp().sum()), 1.0, rtol=1e-12)
    # the mass-weighted mean of the centroids is the cloud's
    mean = (c.log_w.exp()[0, :, None] * c.points[0]).sum(0)
    np.testing.assert_allclose(mean.numpy(), (w[:, None] * pts).sum(0).numpy(), rtol=1e-12)
    assert 0 < c.blur < 0.05  # clusters of ~16 of 1,000 uniform points: small boxes


def test_auto_picks_multiscale_for_one_large_pair_only(monkeypatch):
    cfg = otcli.make_config(eps=0.1)
    big = multiscale.MULTISCALE_MIN_POINTS
    assert multiscale.wanted(cfg, 1, big, big)
    assert not multiscale.wanted(cfg, 2, big, big)  # batches stay online
    assert not multiscale.wanted(cfg, 1, big - 1, big)
    assert not multiscale.wanted(otcli.make_config(eps=0.1, cost="cosine"), 1, big, big)
    assert not multiscale.wanted(otcli.make_config(eps=0.1, geometry="online"), 1, big, big)
    with pytest.raises(OptionError, match="multiscale needs a coordinate cost"):
        multiscale.wanted(otcli.make_config(eps=0.1, cost="cosine", geometry="multiscale"), 1, 5, 5)


def test_cli_geometry_multiscale(capfd, tmp_path, coarse_128):
    from conftest import otdist

    x, y = _pair("line", 1000, 1000)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    code, out, err = otdist(capfd, str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                            "--eps-rel", "0.005", "--geometry", "multiscale", "--json")  # fmt: skip
    assert code == 0, err
    import json

    got = json.loads(out)
    ref = otcli.solve(x, y, eps_rel=0.005, geometry="online")
    assert _rel(got["cost"], ref.cost) < 1e-4


# --- the pruned plan measurement ----------------------------------------------------------


def _stats(r, pruned: bool, monkeypatch) -> measure.PlanStats:
    monkeypatch.setattr(measure, "PRUNE_MIN_ENTRIES", 0 if pruned else 1 << 62)
    x = torch.as_tensor(r.x.points - r.centre)[None]
    y = torch.as_tensor(r.y.points - r.centre)[None]
    la = torch.as_tensor(np.log(r.x.weights))[None]
    lb = torch.as_tensor(np.log(r.y.weights))[None]
    return measure.plan_statistics(
        x, y, la, lb, torch.as_tensor(r.f)[None], torch.as_tensor(r.g)[None],
        torch.tensor([r.eps], dtype=torch.float64), r.cost_fn, torch.float64, block_rows=512,
        rho_a=r.rho_a, rho_b=r.rho_b,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cost", "extra"),
    [("sqeuclidean", {}), ("euclidean", {}), ("cityblock", {}), ("sqeuclidean", {"reach": 0.5})],
)
def test_pruned_measurement_equals_the_full_pass(monkeypatch, cost, extra):
    """Skipped entries total below PRUNED_MASS: every figure equals the full pass's to
    float64 rounding (3,000 points, ε small enough that most leaf pairs are skipped)."""
    rng = np.random.default_rng(5)
    x, y = rng.random((3000, 3)), rng.random((2500, 3)) + 0.1
    r = otcli.solve(x, y, eps_rel=0.001, cost=cost, dtype="float64", **extra)
    full, pruned = _stats(r, False, monkeypatch), _stats(r, True, monkeypatch)
    assert math.isinf(float(pruned.independent[0]))  # the one figure it does not measure
    for name in ("cost", "mass", "primal", "dual"):
        np.testing.assert_allclose(getattr(pruned, name), getattr(full, name), rtol=1e-12)
    # the marginal error is a sum of tiny differences: equal to what rounding leaves
    assert abs(float(pruned.marginal_error[0] - full.marginal_error[0])) < 1e-14


def test_pruned_measurement_leaves_out_less_than_the_bound(monkeypatch):
    """The entries the pruned pass never computed, summed on the dense plan: below
    PRUNED_MASS of each row's sum (the bound it promises), and most pairs were skipped."""
    rng = np.random.default_rng(6)
    x, y = rng.random((3000, 2)), rng.random((2000, 2))
    r = otcli.solve(x, y, eps_rel=0.0005, dtype="float64")
    added: list[torch.Tensor] = []
    real_add = measure._PlanPass.add

    def spy(self, pairs):
        added.append((pairs.clone(), self.rl, self.cl))
        real_add(self, pairs)

    monkeypatch.setattr(measure._PlanPass, "add", spy)
    _stats(r, True, monkeypatch)
    rl, cl = added[0][1], added[0][2]
    kept = torch.zeros_like(added[0][0])
    for pairs, _, _ in added:
        kept |= pairs
    assert float(kept.double().mean()) < 0.5
    P = torch.as_tensor(r.plan())  # (n, m), original order
    rows = torch.empty(r.n, dtype=torch.int64)
    rows[rl.perm] = rl.leaf_of
    cols = torch.empty(r.m, dtype=torch.int64)
    cols[cl.perm] = cl.leaf_of
    skipped = ~kept[rows][:, cols]  # (n, m): entries of pairs never added
    left_out = (P * skipped).sum(dim=1)
    assert float(left_out.max()) > 0  # something was skipped
    assert bool((left_out <= measure.PRUNED_MASS * P.sum(dim=1)).all())


def test_pruned_measurement_falls_back_at_large_eps(monkeypatch):
    """At large ε (and where the boxes bound poorly: a line sent to blobs) nearly every leaf
    pair counts: the plain pass runs, with ⟨a⊗b, C⟩."""
    x, y = _line(2100, 1), _blobs(2000, 2) / 4
    for eps_rel in (1.0, 0.001):
        r = otcli.solve(x, y, eps_rel=eps_rel, dtype="float64")
        stats = _stats(r, True, monkeypatch)
        assert math.isfinite(float(stats.independent[0]))


@pytest.mark.slow
@pytest.mark.parametrize("data", ["blobs", "colours"])
def test_multiscale_equals_online_at_10000_points(data):
    """The issue's scale, default settings (float32, default tolerance, the real coarse level
    of 4,096 clusters): structured blobs, and the pixels of two of scikit-image's bundled
    photographs (crowded colours, many duplicates)."""
    if data == "colours":
        images = pytest.importorskip("skimage.data")
        rng = np.random.default_rng(0)

        def pixels(img: np.ndarray) -> np.ndarray:
            p = img.reshape(-1, 3).astype(np.float64) / 255.0
            return p[rng.choice(len(p), 10_000, replace=False)]

        x, y, opts = pixels(images.astronaut()), pixels(images.coffee()), {"eps": 1e-2}
    else:
        x, y = _blobs(10_000, 1), _blobs(10_000, 2) + 0.2
        opts = {"eps_rel": 0.02}
    online = otcli.solve(x, y, geometry="online", **opts)
    multi = otcli.solve(x, y, geometry="multiscale", **opts)
    assert multi.engine == "multiscale" and online.engine == "block-sparse"
    assert multi.converged and online.converged
    assert multi.marginal_error <= multi.tol
    assert _rel(multi.cost, online.cost) < 1e-5

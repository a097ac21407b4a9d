"""Block-sparse log-sum-exps: the full sums to float64 rounding, with provably idle blocks skipped."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import otcli
import otcli.geometry.blocksparse as bs
import otcli.geometry.online as online_module
from otcli.costs import get_cost
from otcli.geometry import OnlineGeometry

BOUNDED = [("sqeuclidean", None), ("euclidean", None), ("cityblock", None), ("pnorm", 1.5)]


@pytest.fixture
def small_leaves(monkeypatch):
    """Leaves of a few points, so that clouds of a few hundred points have many of them."""
    monkeypatch.setattr(bs, "_ROW_LEAF_SMALL", 16)
    monkeypatch.setattr(bs, "_COL_LEAF", 8)


def _pair(n: int, m: int, seed: int, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, n, d, generator=g, dtype=torch.float64) - 0.5
    y = torch.rand(1, m, d, generator=g, dtype=torch.float64) - 0.4
    return x, y


def _geometry(x: torch.Tensor, y: torch.Tensor, cost_fn, dtype=torch.float64) -> OnlineGeometry:
    ones_x = torch.ones(x.shape[:2], dtype=torch.bool)
    ones_y = torch.ones(y.shape[:2], dtype=torch.bool)
    geom = OnlineGeometry(x, y, cost_fn, ones_x, ones_y, dtype, prune=True)
    assert geom._sparse is not None
    return geom


def _potential(m: int, eps: float, seed: int) -> torch.Tensor:
    """log-masses plus a potential of a few ε, with two massless columns: (1, m)."""
    g = torch.Generator().manual_seed(seed)
    h = math.log(1 / m) + 3 * torch.randn(1, m, generator=g, dtype=torch.float64)
    h[0, :2] = -math.inf
    return h


@pytest.mark.parametrize(("name", "p"), BOUNDED)
@pytest.mark.parametrize("eps", [1.0, 0.01, 2e-4])
def test_block_sparse_equals_logsumexp(small_leaves, name, p, eps):
    if name in ("euclidean", "cityblock"):
        eps *= 10  # a linear cost: the same reach in distance takes a larger ε
    x, y = _pair(600, 520, seed=1, d=2)
    cost_fn = get_cost(name, p)
    C = cost_fn(x, y)  # (1, 600, 520), the oracle's own dense matrix
    geom = _geometry(x, y, cost_fn)
    e = torch.tensor([eps], dtype=torch.float64)
    for seed in (2, 3):  # the second call starts from the first one's sums
        hy, hx = _potential(520, eps, seed), _potential(600, eps, seed + 10)
        want_cols = torch.logsumexp(hy[:, None, :] - C / eps, dim=2)
        want_rows = torch.logsumexp(hx[:, :, None] - C / eps, dim=1)
        torch.testing.assert_close(geom.lse_over_cols(hy, e), want_cols, rtol=1e-12, atol=1e-11)
        torch.testing.assert_close(geom.lse_over_rows(hx, e), want_rows, rtol=1e-12, atol=1e-11)
    computed = sum(s.computed for s in geom._sparse) / (2 * 2 * 600 * 520)
    if eps < 5e-3:
        assert computed < 0.5, computed  # most blocks were skipped
    if eps >= 1.0:  # nothing to skip at the clouds' own scale: the plain path did the work
        assert computed < 0.05, computed


@pytest.mark.parametrize("guess", [1e3, -1e3])
def test_wrong_guess_changes_the_work_not_the_result(small_leaves, guess):
    """A guess far too high skips nearly everything, and the check puts it back; one far too
    low computes everything."""
    x, y = _pair(200, 180, seed=4)
    cost_fn = get_cost("sqeuclidean")
    C = cost_fn(x, y)
    geom = _geometry(x, y, cost_fn)
    eps = 2e-3
    e = torch.tensor([eps], dtype=torch.float64)
    hy = _potential(180, eps, seed=5)
    sparse = geom._sparse[0]
    sparse._guess = (eps, torch.full((len(sparse.rl.starts) - 1,), guess, dtype=torch.float64))
    want = torch.logsumexp(hy[:, None, :] - C / eps, dim=2)
    torch.testing.assert_close(geom.lse_over_cols(hy, e), want, rtol=1e-12, atol=1e-11)


def test_columns_chunked_within_a_leaf(small_leaves, monkeypatch):
    monkeypatch.setattr(bs, "_BLOCK_ELEMS", 40)  # a few columns per chunk, many chunks per leaf
    x, y = _pair(120, 150, seed=6)
    for name, p in [("sqeuclidean", None), ("cityblock", None)]:
        cost_fn = get_cost(name, p)
        C = cost_fn(x, y)
        geom = _geometry(x, y, cost_fn)
        e = torch.tensor([5e-3], dtype=torch.float64)
        hy = _potential(150, 5e-3, seed=7)
        want = torch.logsumexp(hy[:, None, :] - C / 5e-3, dim=2)
        torch.testing.assert_close(geom.lse_over_cols(hy, e), want, rtol=1e-12, atol=1e-11)


def test_kd_leaves_partition_the_cloud_into_boxes():
    pts = torch.rand(1000, 3, dtype=torch.float64)
    leaves = bs.kd_leaves(pts, 50)
    assert sorted(leaves.perm.tolist()) == list(range(1000))
    sizes = np.diff(leaves.starts)
    assert sizes.max() <= 50 and sizes.min() >= 25
    sorted_pts = pts[leaves.perm]
    for k, (s0, s1) in enumerate(zip(leaves.starts[:-1], leaves.starts[1:], strict=True)):
        torch.testing.assert_close(sorted_pts[s0:s1].amin(0), leaves.lo[k])
        torch.testing.assert_close(sorted_pts[s0:s1].amax(0), leaves.hi[k])
        assert (leaves.leaf_of[s0:s1] == k).all()


@pytest.mark.parametrize(("name", "p"), BOUNDED)
def test_box_lower_bound_holds_for_every_pair_of_points(name, p):
    x, y = (t[0] for t in _pair(400, 300, seed=10))
    a, b = bs.kd_leaves(x, 20), bs.kd_leaves(y * 2, 16)
    cost_fn = get_cost(name, p)
    near = bs.box_cost_lower(cost_fn, a, b)
    C = cost_fn(x[a.perm][None], 2 * y[b.perm][None])[0]  # (400, 300) in leaf order
    lo = near[a.leaf_of][:, b.leaf_of]
    assert (lo - 1e-12 <= C).all()
    assert (lo > 0).double().mean() > 0.3  # and it is not vacuous: boxes apart get a gap


def test_pruned_solve_matches_the_dense_solve(small_leaves, monkeypatch):
    """A whole solve at small ε through the block-sparse path: same cost as the dense kernel
    solve, the returned plan meets the tolerance, and blocks really were skipped."""
    monkeypatch.setattr(online_module, "_PRUNE_MIN_ENTRIES", 0)
    reducers: set = set()
    calls = []
    real_call = bs.BlockSparseLse.__call__

    def spy(self, h, eps, plain):
        reducers.add(self)
        calls.append(h.shape[0])
        return real_call(self, h, eps, plain)

    monkeypatch.setattr(bs.BlockSparseLse, "__call__", spy)
    rng = np.random.default_rng(9)
    x, y = rng.random((500, 2)), rng.random((450, 2))
    a, b = rng.random(500) + 0.5, rng.random(450) + 0.5
    kw = dict(eps=2e-3, dtype="float64", tol=1e-7)
    online = otcli.solve(x, y, a, b, geometry="online", **kw)
    dense = otcli.solve(x, y, a, b, geometry="dense", **kw)
    computed = sum(r.computed for r in reducers) / (len(calls) * 500 * 450)
    assert computed < 0.7, computed  # annealing stages at large ε included
    assert online.converged and dense.converged
    assert online.cost == pytest.approx(dense.cost, rel=1e-8)
    plan = online.plan()
    an, bn = a / a.sum(), b / b.sum()
    assert np.abs(plan.sum(1) - an).sum() + np.abs(plan.sum(0) - bn).sum() <= 1e-7


def test_cosine_and_batches_keep_the_plain_online_path():
    x, y = _pair(50, 40, seed=8)
    ones_x, ones_y = torch.ones(1, 50, dtype=torch.bool), torch.ones(1, 40, dtype=torch.bool)
    cos = OnlineGeometry(x, y, get_cost("cosine"), ones_x, ones_y, torch.float64, prune=True)
    assert cos._sparse is None
    x2, y2 = x.expand(2, -1, -1), y.expand(2, -1, -1)
    two = OnlineGeometry(x2, y2, get_cost("sqeuclidean"), ones_x.expand(2, -1),
                         ones_y.expand(2, -1), torch.float64, prune=True)  # fmt: skip
    assert two._sparse is None


def test_a_first_chunk_without_mass_does_not_poison_the_row(small_leaves, monkeypatch):
    """Columns chunked within a leaf, and the first chunk of every column leaf massless
    (h = −∞): the running sum must start from zero there, not from −∞ − −∞ = nan."""
    monkeypatch.setattr(bs, "_BLOCK_ELEMS", 40)  # two columns per chunk for 16-row leaves
    x, y = _pair(120, 150, seed=6)
    cost_fn = get_cost("cityblock")
    geom = _geometry(x, y, cost_fn)
    g = torch.Generator().manual_seed(7)
    hy = math.log(1 / 150) + 3 * torch.randn(1, 150, generator=g, dtype=torch.float64)
    cols = geom._sparse[0].cl
    for s in cols.starts[:-1]:
        hy[0, cols.perm[s : s + 2]] = -math.inf
    e = torch.tensor([5e-3], dtype=torch.float64)
    want = torch.logsumexp(hy[:, None, :] - cost_fn(x, y) / 5e-3, dim=2)
    torch.testing.assert_close(geom.lse_over_cols(hy, e), want, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize(
    ("name", "p", "dtype"),
    [("sqeuclidean", None, torch.float64), ("cityblock", None, torch.float64),
     ("sqeuclidean", None, torch.float32)],
)  # fmt: skip
def test_skipped_columns_hold_less_than_the_bound(small_leaves, monkeypatch, name, p, dtype):
    """Within kept leaf pairs only the columns whose own bound reaches the cut are computed:
    the terms of every entry never computed, summed on the dense float64 matrix, stay below
    η of each row's sum (1e−17 in float64, 1e−8 in float32), and columns of kept leaf pairs
    really were skipped."""
    eps = 2e-3 if name == "sqeuclidean" else 2e-3 * 2
    x, y = (t.to(dtype).double() for t in _pair(700, 650, seed=11))  # as the geometry holds them
    cost_fn = get_cost(name, p)
    geom = _geometry(x, y, cost_fn, dtype)
    sparse = geom._sparse[0]
    computed = torch.zeros(700, 650, dtype=torch.bool)  # sorted rows × sorted columns
    real_blocks = bs.BlockSparseLse._blocks

    def spy(self, keep, m, *args):
        for r0, r1, idx in real_blocks(self, keep, m, *args):
            if self is sparse:
                computed[r0:r1, slice(None) if idx is None else idx] = True
            yield r0, r1, idx

    monkeypatch.setattr(bs.BlockSparseLse, "_blocks", spy)
    e = torch.tensor([eps], dtype=torch.float64)
    hy = _potential(650, eps, seed=12)
    geom.lse_over_cols(hy, e)  # a new ε: the guess comes from the likeliest leaves
    computed.zero_()
    got = geom.lse_over_cols(hy, e)  # the guess from the last sums, as in a solve
    C = cost_fn(x, y)[0].double()  # (700, 650), the oracle's own dense matrix
    z = hy[0][None, :] - C / eps  # (n, m) exponents, original order
    want = torch.logsumexp(z, dim=1)
    tol = dict(rtol=1e-12, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[0], want, **tol)
    assert bool(computed.any())  # the block-sparse path ran, not the plain one
    skipped = ~computed[sparse.rl.perm.argsort()][:, sparse.cl.perm.argsort()]  # original order
    left_out = torch.where(skipped, (z - want[:, None]).exp(), 0.0).sum(dim=1)
    assert float(left_out.max()) <= math.exp(bs._LOG_ETA[dtype])
    # Leaf pairs with something computed, yet columns of theirs skipped: the column bound.
    leaf_pair = computed.clone()
    for s0, s1 in zip(sparse.cl.starts[:-1], sparse.cl.starts[1:], strict=True):
        leaf_pair[:, s0:s1] = computed[:, s0:s1].any(dim=1, keepdim=True)
    assert int((leaf_pair & ~computed).sum()) > 0.1 * int(leaf_pair.sum())


@pytest.mark.parametrize("name", ["sqeuclidean", "cityblock"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sums_against_the_last_ones_equal_logsumexp(small_leaves, monkeypatch, name, dtype):
    """After the first half-step at an ε, exps are taken against each row's last sums, not
    its maximum: potentials that moved a little give the full sums all the same, and rows
    whose sums jumped out of the window (a few columns raised by 200) are summed again
    against their own maxima. Oracle: torch.logsumexp over the dense matrix of exponents, in
    float64 (float32 with a coordinate cost: the exponents that dtype computes, then summed
    in float64). The potentials sit near 400, where float32 rounds at 3e−5."""
    x, y = (t.to(dtype).double() for t in _pair(600, 520, seed=13))  # as the geometry holds them
    cost_fn = get_cost(name)
    geom = _geometry(x, y, cost_fn, dtype)
    eps = 2e-3 if name == "sqeuclidean" else 4e-3

    def oracle(h: torch.Tensor) -> torch.Tensor:
        if dtype == torch.float32 and name != "sqeuclidean":
            C = cost_fn(x.float(), y.float())[0]
            z = C.mul_(-1.0 / eps).add_(h[0].float()[None, :]).double()
        else:
            z = h[0][None, :] - cost_fn(x, y)[0] / eps
        return torch.logsumexp(z, dim=1)

    e = torch.tensor([eps], dtype=torch.float64)
    exact_rows = []
    real_exact = bs.BlockSparseLse._lse_exact

    def spy(self, hs, eps, keep, *args):
        out = real_exact(self, hs, eps, keep, *args)
        exact_rows.append(int(torch.isfinite(out).sum()))
        return out

    monkeypatch.setattr(bs.BlockSparseLse, "_lse_exact", spy)
    hy = _potential(520, eps, seed=14) + 400.0
    geom.lse_over_cols(hy, e)  # the first half-step at ε: against the rows' maxima
    g = torch.Generator().manual_seed(15)
    moved = hy + 0.5 * torch.randn(hy.shape, generator=g, dtype=torch.float64)
    jumped = moved.clone()
    jumped[0, 100:103] += 200.0
    # Sums near 400: absolute tolerances (a relative one would allow 4e−4 in float32).
    tol = dict(rtol=0, atol=1e-9) if dtype == torch.float64 else dict(rtol=0, atol=3e-6)
    for h, redone in ((moved, False), (jumped, True)):
        exact_rows.clear()
        got = geom.lse_over_cols(h, e)[0]
        torch.testing.assert_close(got, oracle(h), **tol)
        assert (sum(exact_rows) > 0) == redone
        assert sum(exact_rows) < 600  # only the leaves of the rows that jumped


@pytest.mark.parametrize("name", ["sqeuclidean", "cityblock"])
def test_a_new_eps_after_another_gives_the_full_sums(small_leaves, name):
    """At a new ε after another the sums are guessed from the last ones (scaled by the ε
    ratio) instead of computed over each row leaf's likeliest leaf: with potentials that
    follow the guess's premise and with ones that do not, the result is the full sums."""
    x, y = _pair(500, 450, seed=16)
    cost_fn = get_cost(name)
    C = cost_fn(x, y)[0]
    geom = _geometry(x, y, cost_fn)
    eps = 4e-3 if name == "sqeuclidean" else 2e-2
    hy = _potential(450, eps, seed=17)
    geom.lse_over_cols(hy, torch.tensor([eps], dtype=torch.float64))
    g = hy * eps  # the same potential at half the ε, and an unrelated one
    for h in (g / (eps / 2), _potential(450, eps / 2, seed=18)):
        for e in (eps / 2, eps / 4):
            got = geom.lse_over_cols(h, torch.tensor([e], dtype=torch.float64))[0]
            want = torch.logsumexp(h[0][None, :] - C / e, dim=1)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize(("name", "p"), BOUNDED)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_largest_cost_equals_the_dense_maximum(small_leaves, name, p, dtype):
    """The annealing's start: the largest cost, found from the leaf pairs whose box bound can
    reach it, equals the maximum of the dense matrix; and for a cloud of one repeated point
    (every bound equal) it is that one cost."""
    g = torch.Generator().manual_seed(19)
    x = torch.randn(1, 700, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    y = torch.rand(1, 600, 3, generator=g, dtype=torch.float64) * 3
    cost_fn = get_cost(name, p)
    for a, b in ((x, y), (x[:, :1].expand(1, 300, 3), y)):
        geom = _geometry(a, b, cost_fn, dtype)
        want = cost_fn(a.to(dtype), b.to(dtype)).max()  # the dense matrix in the working dtype
        assert float(geom.max_cost()[0]) == float(want)

"""Block-sparse log-sum-exps for one large pair: skip the blocks of C whose terms cannot count.

At small ε almost every term of a softmin is negligible: exp(h_j − C_ij/ε) for points far
from the mass x_i is sent to is below 1e−17 of the sum. The clouds are cut into compact
leaves (a k-d split), and a leaf pair (I, J) whose terms are provably that small for every
row of I is never computed. With bounding boxes, C_ij ≥ Cmin(I, J) for i ∈ I, j ∈ J, so

    U_IJ = max_{j∈J} h_j − Cmin(I, J)/ε   bounds every exponent of the pair, and
    Σ_{J skipped} |J| exp(U_IJ) ≤ η · exp(S_i)   (S_i: the log-sum over the computed part)

makes what is skipped at most η of the row's sum, below the rounding of the sums in the
working dtype (η = 1e−17 in float64, 1e−8 in float32): the result equals the full one to
that rounding. Within a kept leaf pair each column is bounded on its own, by its cost to
the row leaf's box, h_j − Cmin(I, c_j)/ε, and skipped below the same cut: a column leaf's
box is far wider than the ball of columns that count (20,000 unit-cube points at ε = 1e−3,
float32, η = 1e−10: 0.139 of the entries per half-step with whole leaf pairs, 0.079 column
by column; but a column's bound costs about what its block of ~100 rows does, so the time
falls far less than the count). Which leaves to compute is guessed from the previous
half-step's sums (at a new ε after another: from the last sums, scaled by the ratio of the
ε; at the first: from sums over each row leaf's likeliest leaf, a lower bound) and then
checked against that inequality; leaves and columns the check asks for are added. The
guess only decides the speed, the check decides the result.

After the first half-step at an ε the exps are taken against each row's last sums instead
of its maximum (the potentials move little from one half-step to the next): the shift is
one more column of the fused product, and no pass finds the rows' maxima.

The bound between two boxes comes from the cost (:meth:`CostFn.box_lower`): the coordinate
costs (squared Euclidean, Euclidean, cityblock, p-norms) have one; cosine has none and keeps
the plain online path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from otcli.costs import CostFn
from otcli.geometry.base import _EXP_FLOOR
from otcli.geometry.lse import exp_below, exp_shifted, finite_or_zero

# Skipped terms add up to at most this fraction of each row's sum: below the rounding of
# the sums, which are taken in the working dtype: float64's 1e−16, float32's 6e−8 (a sixth
# of it; a row's sum off by η moves its potential by ηε and the marginal error by at most η,
# a thousandth of the default tolerance). At 20,000 points and ε = 1e−3 of the unit cube
# 1e−8 computes 11% fewer entries than 1e−10 did; on 6,000 points at ε = 2e−3 the float32
# solve's cost equals a dense float64 solve's to 1e−7 either way (tests/test_blocksparse.py).
_LOG_ETA = {torch.float64: math.log(1e-17), torch.float32: math.log(1e-8)}

# Largest leaf sizes of the k-d splits (leaves hold between half of it and all of it), for
# the side reduced over (columns) and the side whose sums are computed (rows); see leaf_sizes.
_ROW_LEAF = 128
_ROW_LEAF_SMALL = 256
_SMALL_CLOUD = 16384
_MAX_ROW_LEAVES = 1024
_COL_LEAF = 32
_MAX_PAIR_BOUNDS = 1 << 22  # entries of the (row leaves × column leaves) bound matrices
_BLOCK_ELEMS = 1 << 20  # entries per computed block (float64 exponents, 8 MiB)
_MASK_ELEMS = 1 << 20  # column flags expanded at once (leaves × points)
# Sums taken against the last half-step's (see BlockSparseLse._lse): exps are clamped at
# e^_SHIFT_CLAMP (no overflow of a float32 sum of 10^6 of them), and a row whose new log-sum
# lies outside [_SHIFT_LOW, _SHIFT_HIGH] of the old is summed again against its own maximum:
# above, a term may have been clamped; below, the terms clamped at e^−80 could add more than
# 10^6 · e^−70 of its sum.
_SHIFT_CLAMP, _SHIFT_LOW, _SHIFT_HIGH = 60.0, -10.0, 50.0
# At a new ε the sums are guessed from the last ones (see BlockSparseLse.__call__), this
# much lower: the potentials' move to the new ε changes them by a few units.
_NEW_EPS_MARGIN = 2.0
# From this kept fraction on, the plain online path computes every entry: cheaper per entry
# (its blocks are larger and need no gathers).
_DENSE_FRACTION = 0.7


@dataclass(frozen=True)
class Leaves:
    """A k-d ordering of one cloud: ``perm[k]`` is the original index of sorted point k."""

    perm: torch.Tensor  # (n,) int64
    leaf_of: torch.Tensor  # (n,) int64, leaf of each sorted point
    starts: list[int]  # (L + 1) offsets of the leaves in sorted order
    lo: torch.Tensor  # (L, d) box corners, float64
    hi: torch.Tensor  # (L, d)


def kd_leaves(points: torch.Tensor, leaf_size: int) -> Leaves:
    """Split (n, d) points at the median of their widest coordinate until leaves are small."""
    pts = points.detach().to("cpu", torch.float64).numpy()
    order = np.arange(len(pts))
    segments, done = [(0, len(pts))], []
    while segments:
        s0, s1 = segments.pop()
        if s1 - s0 <= leaf_size:
            done.append((s0, s1))
            continue
        idx = order[s0:s1]
        axis = int(np.ptp(pts[idx], axis=0).argmax())
        half = (s1 - s0) // 2
        order[s0:s1] = idx[np.argpartition(pts[idx, axis], half)]
        segments += [(s0 + half, s1), (s0, s0 + half)]
    done.sort()
    starts = [s for s, _ in done] + [len(pts)]
    sizes = np.diff(starts)
    leaf_of = np.repeat(np.arange(len(done)), sizes)
    sorted_pts = pts[order]
    lo = np.minimum.reduceat(sorted_pts, starts[:-1], axis=0)
    hi = np.maximum.reduceat(sorted_pts, starts[:-1], axis=0)
    return Leaves(
        perm=torch.from_numpy(order),
        leaf_of=torch.from_numpy(leaf_of),
        starts=starts,
        lo=torch.from_numpy(lo),
        hi=torch.from_numpy(hi),
    )


def box_cost_lower(cost_fn: CostFn, a: Leaves, b: Leaves) -> torch.Tensor | None:
    """(La, Lb): a lower bound of C(x, y) for x in box I of ``a`` and y in box J of ``b``
    (None for a cost without one, see :meth:`CostFn.box_lower`)."""
    return cost_fn.box_lower(a.lo, a.hi, b.lo, b.hi)


class BlockSparseLse:
    """out_i = log Σ_j exp(h_j − C(r_i, c_j)/ε) for one pair, computing only the leaf pairs
    that can matter (see the module docstring). Inputs and outputs are in original order.

    ``rows`` (n, d) and ``cols`` (m, d) are the points as given, ``dtype`` the working one
    (the exps', and the cost's where not fused); with ``fused`` the exponents come from one
    float64 product per block of the points as given (squared Euclidean only): the C of the
    plain fused path (large ε) and of the returned plan, not one moved by the points'
    float32 rounding (~ulp(x)·|x − y|, over ε in the sums).
    """

    def __init__(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        row_leaves: Leaves,
        col_leaves: Leaves,
        cmin: torch.Tensor,
        cost_fn: CostFn,
        fused: bool,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.rl, self.cl = row_leaves, col_leaves
        self.cmin = cmin  # (Lr, Lc) lower bounds of C between row and column leaves
        self.cost_fn, self.fused = cost_fn, fused
        self.dtype = rows.dtype if dtype is None else dtype
        rows, cols = rows[row_leaves.perm], cols[col_leaves.perm]  # sorted, as given
        self.rows, self.cols = rows.to(self.dtype), cols.to(self.dtype)  # (n, d), (m, d)
        self._cols_hi = cols.double()  # the columns as the leaves' boxes hold them
        if fused:
            rows64, self.cols64 = rows.double(), cols.double()
            self.rows_aug = torch.cat([rows64, rows64.new_ones(rows64.shape[0], 1)], 1)
            self.sq_rows = rows64.square().sum(-1)
            self.sq_cols = self.cols64.square().sum(-1)
        # Scratch reused by every half-step: allocations of varying sizes, one per leaf, let
        # the heap fragment (peak RSS crept up by hundreds of MB over a 100k-point solve).
        self._hi = torch.empty(_BLOCK_ELEMS, dtype=torch.float64)  # a block's exponents
        self._lo = torch.empty(_BLOCK_ELEMS, dtype=self.dtype)  # and their exps
        width = self.cols.shape[1] + 2 if fused else self.cols.shape[1]
        self._cols = torch.empty((self.cols.shape[0], width), dtype=torch.float64 if fused
                                 else self.dtype)  # fmt: skip
        self._h = torch.empty(self.cols.shape[0], dtype=torch.float64)  # gathered columns
        self._upper = torch.empty_like(cmin)
        self._guess: tuple[float, torch.Tensor] | None = None  # (ε, per row leaf min of out)
        self._last: torch.Tensor | None = None  # the last sums at that ε, (n,) sorted order
        self.computed = 0  # entries computed so far (for benchmarks and tests)

    def __call__(
        self, h: torch.Tensor, eps: float, plain: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """(m,) float64 → (n,) float64; ``plain()`` computes the same without skipping
        anything, used where nearly every leaf pair would be kept (large ε)."""
        hs = h[self.cl.perm]
        n_leaves_c = len(self.cl.starts) - 1
        hmax = torch.full((n_leaves_c,), -math.inf, dtype=torch.float64)
        hmax.scatter_reduce_(0, self.cl.leaf_of, hs, "amax")
        # (Lr, Lc): max_J h − Cmin(I, J)/ε bounds every exponent of the leaf pair (I, J)
        upper = torch.mul(self.cmin, -1.0 / eps, out=self._upper).add_(hmax[None, :])
        # skipped leaf: every term < η e^S / m
        cut = _LOG_ETA.get(self.dtype, _LOG_ETA[torch.float64]) - math.log(hs.shape[0])
        first = upper == upper.amax(dim=1, keepdim=True)  # each row leaf's likeliest leaf
        done, shift = None, None
        if self._guess is not None and self._guess[0] == eps:
            lower = self._guess[1]  # the last half-step's sums at this ε
            shift = self._last
        elif self._guess is not None and self._last is not None:
            # A new ε after another: the sums S = −f̂/ε of potentials that move by O(ε) from
            # one ε to the next scale as 1/ε (a guess: the check below corrects it).
            shift = self._last * (self._guess[0] / eps)
            lower = self._leaf_min(shift) - _NEW_EPS_MARGIN
        else:  # the first ε: sums over the likeliest leaves alone bound the whole sums below
            done = self._lse(hs, eps, first)
            lower = self._leaf_min(done)
        keep = (upper >= (lower + cut)[:, None]) | first
        if int(keep.sum()) >= _DENSE_FRACTION * keep.numel():  # large ε: no leaf-by-leaf work
            result = plain()
            self._last = result[self.rl.perm]
            self._guess = (eps, self._leaf_min(self._last))
            return result
        # Within the kept leaf pairs, only the columns whose own bound reaches the cut.
        floor = lower + cut  # (Lr,)
        visited = keep if done is None else keep & ~first
        out = self._lse(hs, eps, visited, floor, shift=shift)
        if done is not None:
            out = torch.logaddexp(done, out)
        # The check: whatever is still skipped must be below η of every row's sum. Leaf pairs
        # never visited that now reach the cut are added; where a row leaf's sums came out
        # below the guess, so did its cut: the columns of its visited pairs between the new
        # cut and the old one are added too.
        new_floor = self._leaf_min(out) + cut
        more = (upper >= new_floor[:, None]) & ~keep
        lowered = visited & (new_floor < floor)[:, None]
        if bool(more.any()) or bool(lowered.any()):
            below = torch.where(lowered, floor[:, None], math.inf)  # (Lr, Lc): done above it
            added = self._lse(hs, eps, more | lowered, new_floor, below, shift, partial=True)
            out = torch.logaddexp(out, added)
        self._last = out
        self._guess = (eps, self._leaf_min(out))
        result = torch.empty_like(out)
        result[self.rl.perm] = out
        return result

    def _leaf_min(self, out: torch.Tensor) -> torch.Tensor:
        n_leaves_r = len(self.rl.starts) - 1
        smin = torch.full((n_leaves_r,), math.inf, dtype=torch.float64)
        return smin.scatter_reduce_(0, self.rl.leaf_of, out, "amin")

    def _lse(
        self,
        hs: torch.Tensor,
        eps: float,
        keep: torch.Tensor,
        floor: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        partial: bool = False,
    ) -> torch.Tensor:
        """log Σ_{j in kept leaves} exp(h_j − C_ij/ε), rows in sorted order (−∞: none kept).

        With ``floor`` (Lr,), only the columns j of a kept leaf pair (I, J) whose own bound
        u_Ij = h_j − Cmin(box I, c_j)/ε reaches floor_I, and with ``below`` (Lr, Lc) only
        those under below_IJ too (the rest was summed before).

        ``shift`` (n,): each row's sums at the last half-step, close to the new ones. The
        exps are then taken against it, with no pass for the rows' maxima (and, fused, the
        shift comes out of the product itself); rows whose new sums land outside
        [:data:`_SHIFT_LOW`, :data:`_SHIFT_HIGH`] of it (where its exps would round away or
        be clamped) are summed again against their own maxima (:meth:`_lse_exact`).
        ``partial``: these columns add to sums taken before (against the same shift), which
        the terms clamped at e^−80 cannot reach: only the upper end of the window counts.
        """
        if shift is None:
            return self._lse_exact(hs, eps, keep, floor, below)
        n = self.rows.shape[0]
        s = finite_or_zero(shift)  # (n,) a row with no sums yet: shifted by 0, checked below
        if not self.fused:  # subtracted in the working dtype: add back exactly what it took
            s = s.to(self.dtype).to(torch.float64)
        if self.fused:
            # exponent_ij − s_i = [r_i, 1, −|r_i|²/ε − s_i]·[2c_j/ε, h_j − |c_j|²/ε, 1]
            cols = torch.cat([self.cols64 * (2.0 / eps), (hs - self.sq_cols / eps)[:, None],
                              self.cols64.new_ones(hs.shape[0], 1)], 1)  # fmt: skip
            rows = torch.cat([self.rows_aug, (-self.sq_rows / eps - s)[:, None]], 1)  # (n, d+2)
        else:
            cols, rows = self.cols, None
        total = torch.zeros(n, dtype=self.dtype)  # (n,) Σ exp(z − s)
        touched = torch.zeros(n, dtype=torch.bool)  # rows with a block
        for r0, r1, _, z in self._chunks(keep, hs, eps, floor, below, cols, rows):
            touched[r0:r1] = True
            if not self.fused:  # z: the exponents, less the shift already where fused
                z.sub_(s[r0:r1, None].to(z.dtype))
            e = z if z.dtype == self.dtype else self._lo[: z.numel()].view(z.shape).copy_(z)
            # A term clamped above shows in its row's sum, which is then summed again.
            total[r0:r1] += e.clamp_(_EXP_FLOOR, _SHIFT_CLAMP).exp_().sum(dim=1)
        log_total = total.to(torch.float64).log_()
        out = torch.where(touched, log_total + s, -math.inf)
        low = -math.inf if partial else _SHIFT_LOW
        redo = touched & ~((log_total >= low) & (log_total <= _SHIFT_HIGH))
        if bool(redo.any()):  # sums far from the last ones: against their own maxima
            leaves = torch.zeros(len(self.rl.starts) - 1, dtype=torch.bool)
            leaves[self.rl.leaf_of[redo]] = True
            exact = self._lse_exact(hs, eps, keep & leaves[:, None], floor, below)
            out = torch.where(leaves[self.rl.leaf_of], exact, out)
        return out

    def _lse_exact(
        self,
        hs: torch.Tensor,
        eps: float,
        keep: torch.Tensor,
        floor: torch.Tensor | None = None,
        below: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`_lse` shifted by each row's own maximum, found as the blocks go: each
        leaf's block writes its row maxima and sums of exps straight into per-row buffers;
        logs and shifts are applied once, to all rows, at the end."""
        n = self.rows.shape[0]
        if self.fused:
            # exponent_ij = [r_i, 1]·[2c_j/ε, h_j − |c_j|²/ε] − |r_i|²/ε: one product per block.
            cols = torch.cat([self.cols64 * (2.0 / eps), (hs - self.sq_cols / eps)[:, None]], 1)
            rows = self.rows_aug
        else:
            cols, rows = self.cols, None
        exp_dtype = torch.float64 if self.fused else self.dtype  # the exponents' dtype
        shift = torch.full((n, 1), -math.inf, dtype=exp_dtype)  # (n, 1) row maxima
        total = torch.zeros(n, dtype=self.dtype)  # (n,) Σ exp(z − max)
        for r0, r1, k0, z in self._chunks(keep, hs, eps, floor, below, cols, rows):
            fold = _fold_first if k0 == 0 else _fold_more
            fold(z, shift[r0:r1], total[r0:r1], self._lo)
        top = shift[:, 0].to(torch.float64)
        out = total.to(torch.float64).log_().add_(top)
        # Rows with no finite exponent (all mass −∞, or nothing kept) sum to exactly zero.
        out = torch.where(torch.isfinite(top), out, -math.inf)
        return out.sub_(self.sq_rows / eps) if self.fused else out

    def _chunks(
        self,
        keep: torch.Tensor,
        hs: torch.Tensor,
        eps: float,
        floor: torch.Tensor | None,
        below: torch.Tensor | None,
        cols: torch.Tensor,
        rows: torch.Tensor | None,
    ) -> Iterator[tuple[int, int, int, torch.Tensor]]:
        """(r0, r1, k0, z): the exponents of rows r0:r1 against the block's columns k0 on,
        a chunk of at most _BLOCK_ELEMS entries at a time (fused: [rows]·[cols]ᵀ; else
        h_k − C(r_i, c_k)/ε in the working dtype)."""
        m = hs.shape[0]
        for r0, r1, idx in self._blocks(keep, m, hs, eps, floor, below):
            K = m if idx is None else idx.shape[0]
            c = (
                cols
                if idx is None
                else torch.index_select(cols, 0, idx, out=self._cols[:K, : cols.shape[1]])
            )
            hb = None
            if not self.fused:
                hb = hs if idx is None else torch.index_select(hs, 0, idx, out=self._h[:K])
            self.computed += (r1 - r0) * K
            step = max(1, _BLOCK_ELEMS // (r1 - r0))
            for k0 in range(0, K, step):
                ck = c[k0 : k0 + step]
                R, k = r1 - r0, ck.shape[0]
                if rows is not None:
                    z = torch.mm(rows[r0:r1], ck.T, out=self._hi[: R * k].view(R, k))
                else:
                    cost = self.cost_fn(self.rows[None, r0:r1], ck[None])[0]  # (R, k)
                    z = cost.mul_(-1.0 / eps).add_(hb[k0 : k0 + step].to(self.dtype))
                yield r0, r1, k0, z

    def _blocks(
        self,
        keep: torch.Tensor,
        m: int,
        hs: torch.Tensor,
        eps: float,
        floor: torch.Tensor | None,
        below: torch.Tensor | None,
    ) -> Iterator[tuple[int, int, torch.Tensor | None]]:
        """(r0, r1, columns) to compute, row leaf by row leaf (columns None: all of them).

        With ``floor``, a kept leaf pair's columns are those whose bound against the row
        leaf's box reaches the floor (see :meth:`_lse`): a column leaf's box is far larger
        than the ball of columns that count, and the rows' box bounds each column as tightly
        as the rows allow.
        """
        starts = self.rl.starts
        n_leaves = len(starts) - 1
        group = max(1, _MASK_ELEMS // m)
        for g0 in range(0, n_leaves, group):
            g1 = min(n_leaves, g0 + group)
            points = keep[g0:g1][:, self.cl.leaf_of]  # (G, m): the columns each leaf keeps
            if floor is None:
                counts = points.sum(dim=1).tolist()
                pieces = points.nonzero()[:, 1].split(counts)
            else:
                pairs = points.nonzero()  # (P, 2): (leaf − g0, column) of the kept leaf pairs
                leaf, col = pairs[:, 0] + g0, pairs[:, 1]
                c = self._cols_hi[col]  # (P, d)
                # The box's nearest point to each column bounds the cost from every row of
                # the leaf (a coordinate cost grows with each |x_k − y_k|).
                near = torch.maximum(torch.minimum(c, self.rl.hi[leaf]), self.rl.lo[leaf])
                least = self.cost_fn(near[:, None, :], c[:, None, :])[:, 0, 0]  # (P,)
                u = torch.sub(hs[col], least, alpha=1.0 / eps)  # (P,) bounds u_Ij
                ok = u >= floor[leaf]
                if below is not None:
                    ok &= u < below[leaf, self.cl.leaf_of[col]]
                counts = torch.bincount(pairs[:, 0][ok], minlength=g1 - g0).tolist()
                pieces = col[ok].split(counts)
            for k, leaf in enumerate(range(g0, g1)):
                if counts[k]:
                    yield starts[leaf], starts[leaf + 1], None if counts[k] == m else pieces[k]


def largest_cost(reducer: BlockSparseLse) -> float:
    """max_ij C(r_i, c_j) of a reducer's pair, computing only the leaf pairs that can hold it.

    A coordinate cost grows with each |x_k − y_k|, so C of the boxes' widest differences,
    max(hi_I − lo_J, hi_J − lo_I) per coordinate, bounds every entry of the leaf pair (I, J):
    pairs are computed in the order of that bound until it falls to the largest entry found.
    The plain pass over every entry took longer than a dozen iterations at 100,000 points.
    """
    rl, cl, cost_fn = reducer.rl, reducer.cl, reducer.cost_fn
    n_cols, d = cl.lo.shape
    group = max(1, _MAX_PAIR_BOUNDS // (n_cols * d))
    upper = []
    for g0 in range(0, rl.lo.shape[0], group):  # (G, Lc) bounds, a few row leaves at a time
        lo, hi = rl.lo[g0 : g0 + group, None, :], rl.hi[g0 : g0 + group, None, :]
        far = torch.maximum(hi - cl.lo[None], cl.hi[None] - lo).reshape(-1, 1, d)  # (G·Lc, 1, d)
        upper.append(cost_fn(far, torch.zeros_like(far))[:, 0, 0])
    bound, order = torch.cat(upper).sort(descending=True)
    best = -math.inf
    for k, pair in enumerate(order.tolist()):
        if float(bound[k]) <= best:
            break
        i, j = divmod(pair, n_cols)
        r0, r1, c0, c1 = rl.starts[i], rl.starts[i + 1], cl.starts[j], cl.starts[j + 1]
        block = cost_fn(reducer.rows[None, r0:r1], reducer.cols[None, c0:c1])  # working dtype
        best = max(best, float(block.max()))
    return best


def _fold_first(
    z: torch.Tensor, shift: torch.Tensor, total: torch.Tensor, lo: torch.Tensor
) -> None:
    """shift ← max_k z (R, 1); total ← Σ_k exp(z − shift), the exps in ``lo``'s dtype.

    A row without mass keeps shift = −∞ (its exps taken against 0), so that the next chunk
    with mass replaces its total instead of adding to it.
    """
    e, _ = exp_shifted(z, dim=1, exps=lo[: z.numel()].view(z.shape), top=shift)
    torch.sum(e, dim=1, out=total)


def _fold_more(z: torch.Tensor, shift: torch.Tensor, total: torch.Tensor, lo: torch.Tensor) -> None:
    """Add a further column chunk to the running (shift, total) of its rows."""
    new = torch.maximum(shift, z.amax(dim=1, keepdim=True))
    safe = finite_or_zero(new)
    total.mul_((shift - safe).exp_()[:, 0].to(total.dtype))
    total.add_(exp_below(z, safe, exps=lo[: z.numel()].view(z.shape)).sum(dim=1))
    shift.copy_(new)


def leaf_sizes(n: int, m: int) -> tuple[int, int]:
    """Leaf sizes for (rows, columns): compact enough to prune, big enough to run fast.

    Each row leaf costs a dozen torch calls; smaller leaves prune more but do less work per
    call. Measured on the 2-core Zen 5 at ε = 1e−3 (unit cube): 256 was best at 10k points,
    128 at 30k and 100k.
    """
    row_leaf = _ROW_LEAF_SMALL if n < _SMALL_CLOUD else max(_ROW_LEAF, -(-n // _MAX_ROW_LEAVES))
    col_leaf = _COL_LEAF
    while (n // row_leaf + 1) * (m // col_leaf + 1) > _MAX_PAIR_BOUNDS:
        col_leaf *= 2
    return row_leaf, col_leaf

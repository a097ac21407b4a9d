"""The kernel geometry: dense C plus a stabilised kernel K̃, for CPUs.

On a CPU an exp per entry per half-step is the cost of a log-domain iteration; a product
with a precomputed kernel only reads memory, several times faster. This module keeps that
kernel stable at any ε (absorbed potentials, exact rebuilds, squarings through the
annealing stages) and falls back to the log domain wherever it would not be exact.
"""

from __future__ import annotations

import math

import torch

from otcli.geometry.base import DEFAULT_BLOCK_ELEMS, masked_max, rows_per_block
from otcli.geometry.lse import exp_shifted, logsumexp_

# Kernel size (entries per problem) from which a product is split across threads.
_SLAB_MIN_ENTRIES = 1 << 16

# Annealing stages in a row served by squaring the kernel before an exact rebuild: each
# squaring doubles K̃'s relative rounding (2^8 float32 ulps ≈ 3e−5, ample for a warm start).
_MAX_SQUARINGS = 8

# Largest column factor exp(h − 2β) a squaring may apply (float32 overflows near e^88).
_SQUARE_MAX_SHIFT = 60.0

# Entries per block when a kernel is rebuilt (4 MiB of float64 exponents): measured best
# on a 2-core Zen 5; smaller blocks pay more per-operation overhead than they save in cache.
_REBUILD_BLOCK_ELEMS = 1 << 19


def _slabs_per_problem(batch: int, entries: int) -> int:
    """Row slabs each problem's kernel is cut into so a product keeps every thread busy."""
    threads = torch.get_num_threads()
    if batch >= 2 * threads or entries < _SLAB_MIN_ENTRIES:
        return 1
    return min(8, -(-2 * threads // batch))


class KernelGeometry:
    """C in memory plus a stabilised kernel K̃: matrix-vector products instead of exps.

    Log-domain updates cost an exp per entry per half-step; a matrix-vector product with a
    precomputed kernel only reads memory, several times faster on a CPU. Plain
    K = exp(−C/ε) under- and overflows at small ε (POT's ``sinkhorn`` returns wrong values
    there), so the kernel absorbs the current potentials (Schmitzer 2019):

        K̃_ij = exp(α_i + β_j − C_ij/ε),   rows normalised at build (Σ_j K̃_ij = 1)

    and the half-steps become

        lse_over_cols(h)_i = log Σ_j K̃_ij exp(h_j − β_j) − α_i
        lse_over_rows(h)_j = log Σ_i K̃_ij exp(h_i − α_i) − β_j

    exact identities, accurate while h stays within ``reach`` of the absorbed values. When
    it drifts further, when ε changes (a new annealing stage) or when a result is not
    finite, the half-step is done in the log domain instead, and the kernel is rebuilt
    around the new potentials by the next column half-step. The answer is the log-domain
    answer to rounding, with exps paid only at rebuilds. An annealing stage that halves ε
    squares the kernel instead of rebuilding it (:meth:`_square`); the target ε values
    (``exact_eps``) always get a rebuild.
    """

    name = "dense"  # C is held in memory, as in DenseGeometry
    engine = "kernel"

    def __init__(
        self,
        cost: torch.Tensor,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        block_elems: int = DEFAULT_BLOCK_ELEMS,
        reach: float = 30.0,
        vector_dtype: torch.dtype = torch.float64,
        exact_eps: torch.Tensor | None = None,
    ) -> None:
        self.cost = cost  # (B, n, m)
        self.mask_x, self.mask_y = mask_x, mask_y
        self._massless_x, self._massless_y = ~mask_x, ~mask_y  # padding, zero masses
        B, n, m = cost.shape
        self._n = n
        self._splits = _slabs_per_problem(B, n * m)
        n_pad = -(-n // self._splits) * self._splits
        # K̃, (B, n, m), in the cost's dtype: a view of a buffer whose zero rows round n up
        # to a whole number of slabs.
        self._full = cost.new_zeros((B, n_pad, m))
        self.kernel = self._full[:, :n]
        self.alpha = cost.new_zeros((B, n), dtype=vector_dtype)  # in the loop's precision
        self.beta = cost.new_zeros((B, m), dtype=vector_dtype)
        # ε each problem's kernel was built for; NaN: stale (rebuild at the next column step)
        self.eps_k = cost.new_full((B,), math.nan, dtype=vector_dtype)
        self.reach = reach
        self.rebuilds = 0  # problems rebuilt, summed over calls
        self._block_elems = block_elems
        # ε values whose kernel must be exact (the targets); None: never square a kernel.
        self.exact_eps = exact_eps
        self.squarings = torch.zeros(B, dtype=torch.int64, device=cost.device)  # since a build
        self._vector_dtype = vector_dtype
        self._padded_x, self._padded_y = not bool(mask_x.all()), not bool(mask_y.all())
        # e^{h − absorbed} in the kernel's dtype, reused every half-step; the row one is
        # as long as the slabs, its tail zero.
        self._w_cols = cost.new_empty((B, m))
        self._w_rows = cost.new_zeros((B, n_pad))
        # The products' operands and results as slab views, made once: a half-step is then
        # one bmm into a reused buffer.
        s = self._splits
        self._slabs = self._full.view(B * s, n_pad // s, m)
        self._slabs_t = self._slabs.transpose(1, 2)
        self._w_cols_slabs = (
            self._w_cols.view(B, 1, m)
            if s == 1
            else self._w_cols.view(1, 1, m).expand(s, 1, m)
            if B == 1
            else None
        )
        self._w_rows_slabs = self._w_rows.view(B * s, 1, n_pad // s)
        self._r_cols = cost.new_empty((B * s, 1, n_pad // s))
        self._r_cols_view = self._r_cols.view(B, n_pad)[:, :n]
        self._r_rows = cost.new_empty((B * s, 1, m))
        self._r_rows_view = self._r_rows.view(B, m) if s == 1 else self._r_rows.view(B, s, m)
        # Caches keyed on the ε tensor the loop passes (a new tensor whenever ε changes):
        # whether every kernel was built for it, and whether it was checked for squarings.
        self._eps_seen: torch.Tensor | None = None
        self._eps_match: bool | None = None
        self._eps_squared: torch.Tensor | None = None
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None  # see _scratch

    def select(self, idx: torch.Tensor) -> KernelGeometry:
        """Problems ``idx`` only: C and the kernels are copied, with the potentials and ε
        each kernel absorbed, so no kernel is rebuilt."""
        new = KernelGeometry(
            self.cost[idx], self.mask_x[idx], self.mask_y[idx], self._block_elems, self.reach,
            self._vector_dtype, None if self.exact_eps is None else self.exact_eps[idx],
        )  # fmt: skip
        new.kernel.copy_(self.kernel[idx])
        new.alpha, new.beta = self.alpha[idx], self.beta[idx]
        new.eps_k, new.squarings = self.eps_k[idx], self.squarings[idx]
        return new

    def _times(self, over_cols: bool) -> torch.Tensor:
        """K̃ w, (B, m) → (B, n) (``over_cols``), or wᵀ K̃, (B, n) → (B, m), in K̃'s dtype,
        for w in the buffer ``_w_cols`` or ``_w_rows`` (whose zero tail pads the slabs).

        Both run as batched vector-times-matrix products, the fast form of torch's CPU bmm,
        over ``splits`` row slabs per problem: torch parallelises bmm over the batch only,
        so a lone large problem would otherwise leave all cores but one idle.
        """
        if over_cols:
            w = self._w_cols_slabs if self._w_cols_slabs is not None else self._w_cols_copy()
            torch.bmm(w, self._slabs_t, out=self._r_cols)
            return self._r_cols_view
        torch.bmm(self._w_rows_slabs, self._slabs, out=self._r_rows)
        return self._r_rows_view if self._splits == 1 else self._r_rows_view.sum(dim=1)

    def _w_cols_copy(self) -> torch.Tensor:
        """w repeated for each slab of its problem: a copy where B > 1 (a view where B = 1)."""
        B, m = self._w_cols.shape
        s = self._splits
        return self._w_cols[:, None, None, :].expand(B, s, 1, m).reshape(B * s, 1, m)

    def _usable(self, d: torch.Tensor, eps: torch.Tensor, massless: torch.Tensor) -> torch.Tensor:
        """(B,) bool: kernel built for this ε and h − absorbed within reach where there is mass."""
        spread = d.masked_fill(massless, 0.0).abs_().amax(dim=1)
        return (eps == self.eps_k) & (spread <= self.reach)

    def _within_reach(self, d: torch.Tensor, eps: torch.Tensor, padded: bool) -> bool:
        """Whether every problem's kernel is usable: built for ``eps``, and h − absorbed
        within reach. Two reductions over the whole batch and a cached comparison of ε: the
        common case pays for no per-problem mask (see :meth:`_usable` for the rare one)."""
        if eps is not self._eps_seen or self._eps_match is None:
            self._eps_seen, self._eps_match = eps, bool((eps == self.eps_k).all())
        if not self._eps_match:
            return False
        if padded:  # padding holds −inf in h: only points with mass count
            return bool(torch.nan_to_num(d, neginf=0.0).abs_().max() <= self.reach)
        return bool(d.abs().max() <= self.reach)

    def _half_step(
        self, h: torch.Tensor, eps: torch.Tensor, over_cols: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log K̃ e^{h − β} − α (``over_cols``) or log K̃ᵀ e^{h − α} − β, in h's dtype, and the
        problems (indices) whose answer is not exact and must be recomputed (None: none).

        Runs in a handful of operations over the whole batch: the kernel product is taken
        for every problem, and the rare problem whose kernel turns out unusable (stale ε,
        potentials out of reach) or whose result is not finite is named for a redo.
        """
        absorbed, other = (self.beta, self.alpha) if over_cols else (self.alpha, self.beta)
        massless = self._massless_y if over_cols else self._massless_x
        padded = self._padded_y if over_cols else self._padded_x
        d = h - absorbed  # (B, m) or (B, n)
        fine = self._within_reach(d, eps, padded)
        w = self._w_cols if over_cols else self._w_rows[:, : self._n]
        torch.exp(d, out=w)  # in the kernel's dtype; padding: exp(−inf) = 0
        r = self._times(over_cols)  # may be a view of a reused buffer: never written
        out = (torch.log(r) if r.dtype == h.dtype else r.to(h.dtype).log_()).sub_(other)
        if not over_cols and self._padded_y:
            out = out.masked_fill_(self._massless_y, 0.0)
        if fine and math.isfinite(float(out.sum())):  # a sum is finite iff all terms are
            return out, None
        redo = ~(self._usable(d, eps, massless) & torch.isfinite(out.sum(dim=1)))
        return out, (redo.nonzero().squeeze(1) if bool(redo.any()) else None)

    def lse_over_cols(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.exact_eps is not None and eps is not self._eps_squared:
            # Only a new ε can call for a squaring: checked once per ε tensor.
            self._eps_squared = eps
            halved = (2 * eps == self.eps_k) & (eps != self.exact_eps)
            halved &= self.squarings < _MAX_SQUARINGS
            if bool(halved.any()):
                self._square(halved.nonzero().squeeze(1), h)
        out, idx = self._half_step(h, eps, over_cols=True)
        if idx is not None:
            out[idx] = self._rebuild(idx, h[idx], eps[idx])
        return out

    def lse_over_rows(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        out, idx = self._half_step(h, eps, over_cols=False)
        if idx is not None:
            out[idx] = self._exact_rows(idx, h[idx], eps[idx])
            self.eps_k[idx] = math.nan  # rebuilt at their next column half-step
            self._eps_match = None
        return out

    def scaling_steps(
        self,
        log_a: torch.Tensor,
        log_b: torch.Tensor,
        f: torch.Tensor,
        g: torch.Tensor,
        eps: torch.Tensor,
        omega: torch.Tensor,
        steps: int,
        stop: torch.Tensor | None = None,
        final: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Up to ``steps`` over-relaxed balanced Sinkhorn iterations from (f, g) in the
        scaling form, u ← u^{1−ω} (a / K̃v)^ω and v ← v^{1−ω} (b / K̃ᵀu)^ω: the new f and g,
        ĝ (the last column half-step before relaxation, for the error check), how many
        iterations each problem ran, (B,), and f̂ = F(g) of the state left (what
        ``lse_over_cols`` would give: the loop's next half-step, from a product the burst
        already made or one more). With ``stop`` (B,), they end early once every
        problem's marginal error ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁, read off the products already made,
        is at most its ``stop``; a problem of ``final`` (B,) bool whose error gets there is
        frozen at once (ω = 0: its error is its last one, for the check to confirm), so a
        batch ends at its slowest problem's iteration, not the next check's. None where the
        kernel cannot serve them exactly: not built for ``eps``, potentials out of reach at
        the start or the end, or a value not finite.

        u = e^{log a + f/ε − α} and v = e^{log b + g/ε − β} are the very vectors the
        log-domain half-steps exponentiate, so each iteration is two kernel products and a
        few operations on vectors in the kernel's dtype, instead of the log domain's exps,
        logs, reach checks and conversions. ``omega`` (B,) is ω per problem (0 freezes one).
        """
        if eps is not self._eps_seen or self._eps_match is None:
            self._eps_seen, self._eps_match = eps, bool((eps == self.eps_k).all())
        if not self._eps_match:
            return None
        inv_eps = (1.0 / eps)[:, None]
        du = torch.addcmul(log_a, f, inv_eps).sub_(self.alpha)  # log u, −inf on padding
        dv = torch.addcmul(log_b, g, inv_eps).sub_(self.beta)
        if not self._in_reach(
            du.masked_fill(self._massless_x, 0.0), dv.masked_fill(self._massless_y, 0.0)
        ):
            return None
        kd = self.kernel.dtype
        u, v = self._w_rows[:, : self._n], self._w_cols  # the products' operand buffers
        torch.exp(du, out=u)
        torch.exp(dv, out=v)
        a, b = log_a.exp().to(kd), log_b.exp().to(kd)
        w = omega.to(kd)[:, None]
        # ω = 1 everywhere (every annealing stage starts so): the plain steps u = a / K̃v,
        # v = b / K̃ᵀu, no powers, and the columns then match b to rounding.
        plain = bool((omega == 1).all())
        zero = a.new_zeros(a.shape[0])
        t = torch.empty_like(u)  # u ⊙ K̃v, then the row factor (a / (u ⊙ K̃v))^ω
        s = torch.empty_like(v)  # the column one
        ran, col_err, ktu = 0, None, None
        frozen = counts = None  # problems of ``final`` done, and their iterations
        for _ in range(steps):
            kv = self._times(True)
            if col_err is not None:  # the error of the state the last step left
                err = torch.mul(u, kv, out=t).sub_(a).abs_().sum(1)
                ok = err.add_(col_err) <= stop
                if final is None:
                    if bool(ok.all()):
                        break
                else:
                    done = ok & final
                    new = done if frozen is None else done & ~frozen
                    everyone, fresh = torch.stack([ok.all(), new.any()]).tolist()
                    if everyone:
                        break
                    if fresh:  # freeze them (ω = 0): u and v stay, the batch's products go on
                        if frozen is None:
                            frozen, counts = done, torch.where(done, ran, 0)
                        else:
                            frozen, counts = frozen | new, torch.where(new, ran, counts)
                        w = w.masked_fill(frozen[:, None], 0.0)
                        plain = False
            # u ← u^{1−ω} (a / K̃v)^ω = u (a / (u ⊙ K̃v))^ω: one power, not two
            if plain:
                torch.div(a, kv, out=u)
            else:
                u.mul_(torch.div(a, torch.mul(u, kv, out=t), out=t).pow_(w))
            if self._padded_x:  # padding: 0 / 0, or 0 · ∞
                u.masked_fill_(self._massless_x, 0.0)
            ktu = self._times(False)
            if plain:
                torch.div(b, ktu, out=v)
            else:
                v.mul_(torch.div(b, torch.mul(v, ktu, out=s), out=s).pow_(w))
            if self._padded_y:
                v.masked_fill_(self._massless_y, 0.0)
            if stop is not None:
                col_err = zero if plain else torch.addcmul(-b, v, ktu).abs_().sum(1)
            ran += 1
        v_hat = v if ktu is None else torch.div(b, ktu)  # the last step's b / K̃ᵀu
        if ran == steps:  # ended on a step, not on a reading: K̃v of the state it left
            kv = self._times(True)
        hd = f.dtype
        lu = u.to(hd).log_().masked_fill_(self._massless_x, 0.0)
        lv = v.to(hd).log_().masked_fill_(self._massless_y, 0.0)
        lh = v_hat.to(hd).log_().masked_fill_(self._massless_y, 0.0)
        lk = kv.to(hd).log_()  # f̂ = F(g) of the state left, as lse_over_cols gives it
        top = lk.abs().amax()
        if not self._in_reach(lu, lv, lh, top - top):  # the last: 0, or NaN if not finite
            return None
        eps_col = eps[:, None]
        f_hat = (self.alpha - lk).mul_(eps_col)
        f_new = (lu + self.alpha - log_a).mul_(eps_col)  # padding: −inf − (−inf), replaced
        g_new = (lv + self.beta - log_b).mul_(eps_col)
        g_hat = (lh + self.beta - log_b).mul_(eps_col)
        f_new = torch.where(self.mask_x, f_new, f)
        g_new = torch.where(self.mask_y, g_new, g)
        g_hat = torch.where(self.mask_y, g_hat, 0.0)
        ran_each = f.new_full((f.shape[0],), ran, dtype=torch.int64)
        if frozen is not None:
            ran_each = torch.where(frozen, counts, ran_each)
        return f_new, g_new, g_hat, ran_each, f_hat

    def _in_reach(self, *logs: torch.Tensor) -> bool:
        """Whether every entry of these log-vectors (padding set to 0) lies within ``reach``;
        NaN and ±inf do not. One host sync for all of them."""
        spans = torch.stack([t.abs().amax() for t in logs])
        return bool(spans.max() <= self.reach)

    def _square(self, idx: torch.Tensor, h: torch.Tensor) -> None:
        """Halve the kernel's ε for problems ``idx`` by squaring K̃: one cheap pass, no exp.

        exp(α + β − C/ε)² = exp(2α + 2β − C/(ε/2)). Columns are then scaled by
        exp(h_j − 2β_j), so that β = h as after a rebuild, and rows renormalised. Squaring
        doubles K̃'s relative rounding, so it serves the annealing stages only: the target ε
        always gets an exact rebuild (see ``exact_eps``), and after :data:`_MAX_SQUARINGS`
        in a row so does any stage. A problem whose column factors would overflow, or
        whose rows vanish, is marked stale and rebuilt instead.
        """
        whole = idx.numel() == self.kernel.shape[0]
        hb, beta = h[idx], self.beta[idx]
        shift = torch.where(torch.isfinite(hb), hb - 2 * beta, -math.inf)  # (b, m)
        ok = shift.amax(dim=1) <= _SQUARE_MAX_SHIFT
        if not bool(ok.all()):
            self.eps_k[idx[~ok]] = math.nan
            self._eps_match = None
            idx, hb, shift = idx[ok], hb[ok], shift[ok]
            whole = False
            if idx.numel() == 0:
                return
        kernel = self.kernel if whole else self.kernel[idx]  # (b, n, m)
        b, n, m = kernel.shape
        col = shift.exp().to(kernel.dtype)[:, None, :]  # (b, 1, m)
        sums = h.new_empty((b, n))
        step = rows_per_block(b, m, self._block_elems)
        for r0 in range(0, n, step):
            blk = kernel[:, r0 : r0 + step]
            blk.mul_(blk).mul_(col)
            total = blk.sum(dim=-1)  # (b, r)
            blk.div_(total[:, :, None])
            sums[:, r0 : r0 + step] = total.to(h.dtype)
        if not whole:
            self.kernel[idx] = kernel
        alpha = 2 * self.alpha[idx] - sums.log()
        self.alpha[idx] = alpha
        self.beta[idx] = torch.where(torch.isfinite(hb), hb, 0)
        fine = torch.isfinite(alpha).all(dim=1)
        self.eps_k[idx] = torch.where(fine, self.eps_k[idx] / 2, math.nan)
        self._eps_match = None
        self.squarings[idx] += 1

    def _scratch(
        self, b: int, rows: int, m: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (b, rows, m) work blocks, exponents (``dtype``) and exps (the kernel's), kept
        between calls: fresh multi-megabyte buffers cost a page fault per 4 KiB at every
        rebuild (at 1,000² that doubled a rebuild's time)."""
        size = b * rows * m
        if self._work is None or self._work[0].numel() < size or self._work[0].dtype != dtype:
            self._work = (
                torch.empty(size, dtype=dtype, device=self.cost.device),
                self.cost.new_empty(size),
            )
        hi, lo = self._work
        return hi[:size].view(b, rows, m), lo[:size].view(b, rows, m)

    def _rebuild(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Exact column half-step for problems ``idx``; their K̃ rebuilt around it.

        Done in the loop's precision, so the exponent α_i + β_j − C_ij/ε carries no rounding
        of C/ε: K̃ holds only the rounding of its own storage.
        """
        whole = idx.numel() == self.cost.shape[0]  # no copies of C when all are rebuilt
        cost = self.cost if whole else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = rows_per_block(b, m, _REBUILD_BLOCK_ELEMS)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        out = h.new_empty((b, n))
        kernel = self.kernel if whole else torch.empty_like(cost)
        # exponents in the loop's precision; exp(exponent − row max) in the kernel's dtype
        z_hi, z_lo = self._scratch(b, step, m, h.dtype)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = torch.addcmul(h[:, None, :], cost[:, r0:r1], neg_inv_eps, out=z_hi[:, : r1 - r0])
            # Shifted exponents lie in [−80, 0]: rounding them to the kernel's dtype costs
            # K̃ no more than its own storage does, and the exp runs at single-precision speed.
            e, zmax = exp_shifted(z, dim=-1, exps=z_lo[:, : r1 - r0])  # (b, r, m), (b, r, 1)
            total = e.sum(dim=-1)  # (b, r)
            out[:, r0:r1] = total.to(h.dtype).log().add_(zmax[..., 0])  # lse_i (total kept)
            # K̃_ij = exp(h_j − C_ij/ε − lse_i) = e_ij / Σ_j e_ij: α_i = −lse_i, β_j = h_j,
            # rows sum to 1, and no second exp.
            torch.div(e, total[:, :, None], out=kernel[:, r0:r1])
        if not whole:
            self.kernel[idx] = kernel
        self.alpha[idx] = -out
        self.beta[idx] = torch.where(torch.isfinite(h), h, 0)  # padding: −inf in h, 0 in β
        self.eps_k[idx] = eps
        self._eps_match = None
        self.squarings[idx] = 0
        self.rebuilds += int(idx.numel())
        return out

    def _exact_rows(self, idx: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Log-domain row half-step for problems ``idx``, combining row blocks as it goes.

        Exponents in the loop's precision, exps of the shifted ones in the kernel's dtype, as
        in :meth:`_rebuild`.
        """
        cost = self.cost if idx.numel() == self.cost.shape[0] else self.cost[idx]  # (b, n, m)
        b, n, m = cost.shape
        step = rows_per_block(b, m, _REBUILD_BLOCK_ELEMS)
        neg_inv_eps = (-1.0 / eps)[:, None, None]
        acc = h.new_full((b, m), -math.inf)
        z_hi, z_lo = self._scratch(b, step, m, h.dtype)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            z = z_hi[:, : r1 - r0]
            torch.addcmul(h[:, r0:r1, None], cost[:, r0:r1], neg_inv_eps, out=z)
            part = logsumexp_(z, dim=1, exps=z_lo[:, : r1 - r0], dtype=h.dtype)  # (b, m)
            acc = torch.logaddexp(acc, part)
        return torch.where(self.mask_y[idx], acc, 0)

    def max_cost(self) -> torch.Tensor:
        return masked_max(self.cost, self.mask_x, self.mask_y)

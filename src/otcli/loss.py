"""A differentiable Sinkhorn loss for PyTorch: ``sinkhorn_loss`` and ``SinkhornLoss``.

The value is what :func:`otcli.solve` reports (``objective``, or the divergence); the
gradient comes from the optimum itself, never from backpropagation through the iterations.
By the envelope theorem, the derivative of OT_ε with respect to the data (weights and cost
matrix) is the partial derivative of the dual at the optimal potentials (f, g):

    D(a, b, C) = ⟨a, φ_a(f)⟩ + ⟨b, φ_b(g)⟩ − ε (Σ_ij a_i b_j e^{(f_i + g_j − C_ij)/ε} − 1)

with φ(f) = f on a balanced side and −ρ(e^{−f/ρ} − 1) on a side relaxed by ρ. So ∂/∂C_ij
is the plan P_ij, and ∇_x OT_ε = Σ_j P_ij ∇_x C(x_i, y_j): one pass over the cost after
convergence. For a named cost that pass runs block by block in a custom backward (O(n + m)
memory beyond one block, as the online geometry solves); a callable cost is differentiated
by autograd on its dense matrix, so parameters it closes over (a learnable metric) get their
gradient too. Weights are normalised inside the graph, as the solver normalises them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from otcli.errors import InputError, OptionError

#: Entries (rows × columns × coordinates) the backward pass of a named cost holds at once.
BACKWARD_BLOCK_ENTRIES = 1 << 22


def sinkhorn_loss(
    x: Any,
    y: Any,
    a: Any | None = None,
    b: Any | None = None,
    *,
    divergence: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """The Sinkhorn loss between point clouds as a torch tensor that autograd differentiates.

    ``x`` and ``y``: (n, d) and (m, d) tensors (a 0-dim loss), (B, n, d) and (B, m, d)
    tensors (B pairs: a (B,) loss) or lists of clouds of any sizes (a (B,) loss). ``a``,
    ``b``: optional weights of the same layout (normalised to mass 1 like everywhere in
    otcli). ``divergence=True`` is the debiased Sinkhorn divergence S_ε (0 at y = x),
    ``False`` the regularised cost OT_ε: the same numbers as ``otcli.divergence(...)``
    ``.divergence`` and ``otcli.solve(...).objective``. Every other keyword is
    :func:`otcli.solve`'s (``eps``, ``eps_rel``, ``cost``, ``reach``/``rho``, ``tol``,
    ``max_iter``, ``geometry``, ``device``, ``dtype``...). Gradients reach ``x``, ``y``,
    ``a``, ``b`` and, for a callable ``cost``, the parameters it uses. The loss has the
    inputs' floating dtype and device; the solve runs in float64 for float64 points unless
    ``dtype`` says otherwise. A solve that does not converge warns and still gives the loss
    of its best state.
    """
    from otcli import api

    _check_keywords(kwargs, api.solve)
    xs, batched = _clouds(x, "x")
    ys, batched_y = _clouds(y, "y")
    if batched != batched_y or len(xs) != len(ys):
        raise InputError("y", f"{len(ys)} cloud(s) for {len(xs)} in x: give one y per x")
    was = _weights(a, xs, "a", batched)
    wbs = _weights(b, ys, "b", batched)
    like = xs[0]
    kwargs.setdefault("dtype", "float64" if like.dtype == torch.float64 else "float32")
    kwargs.setdefault("device", str(like.device) if like.device.type != "mps" else "auto")
    plain = [_numpy(t) for t in xs], [_numpy(t) for t in ys]
    weights = [_numpy(w) for w in was], [_numpy(w) for w in wbs]
    solve = api.divergence if divergence else api.solve
    if batched:
        results = solve(plain[0], plain[1], weights[0], weights[1], **kwargs)
    else:  # one pair: errors name x, y, a, b themselves
        results = [solve(plain[0][0], plain[1][0], weights[0][0], weights[1][0], **kwargs)]
    loss = _losses(list(results), xs, ys, was, wbs, divergence)  # type: ignore[arg-type]
    out_dtype = like.dtype if like.dtype.is_floating_point else torch.float64
    loss = loss.to(out_dtype)
    return loss if batched else loss[0]


class SinkhornLoss(torch.nn.Module):
    """:func:`sinkhorn_loss` as a module: ``SinkhornLoss(eps=0.05)(x, y)``."""

    def __init__(self, *, divergence: bool = True, **kwargs: Any) -> None:
        super().__init__()
        self.divergence = divergence
        self.kwargs = kwargs

    def forward(self, x: Any, y: Any, a: Any | None = None, b: Any | None = None) -> torch.Tensor:
        return sinkhorn_loss(x, y, a, b, divergence=self.divergence, **self.kwargs)

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"divergence={self.divergence}" + (f", {options}" if options else "")


def _losses(
    results: list[Any],
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    was: Sequence[torch.Tensor],
    wbs: Sequence[torch.Tensor],
    div: bool,
) -> torch.Tensor:
    """(B,) losses: each pair's reported value, with the dual's gradient attached.

    A divergence is three OT terms (xy, and −½ xx, −½ yy); terms of one shape go through the
    dual together, so a (B, n, d) mini-batch costs a few batched operations, not 3B."""
    device = xs[0].device
    terms: list[tuple[int, float, Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    terms, values = [], []
    for k, res in enumerate(results):
        if div:
            values.append(res.divergence)
            terms += [(k, 1.0, res.xy, xs[k], ys[k], was[k], wbs[k]),
                      (k, -0.5, res.xx, xs[k], xs[k], was[k], was[k]),
                      (k, -0.5, res.yy, ys[k], ys[k], wbs[k], wbs[k])]  # fmt: skip
        else:
            values.append(res.objective)
            terms.append((k, 1.0, res, xs[k], ys[k], was[k], wbs[k]))
        if not res.converged:
            warnings.warn(_not_converged(res, k if len(results) > 1 else None), RuntimeWarning,
                          stacklevel=3)  # fmt: skip
    groups: dict[tuple[Any, ...], list[int]] = {}
    for t, (_, _, r, x, y, _, _) in enumerate(terms):
        callable_cost = type(r.cost_fn).__name__ == "CallableCost"
        key = (tuple(x.shape), tuple(y.shape), r.rho_a, r.rho_b, id(r.cost_fn) if callable_cost
               else r.cost_fn)  # fmt: skip
        groups.setdefault(key, []).append(t)
    total = torch.zeros(len(results), dtype=torch.float64, device=device)
    for members in groups.values():
        chosen = [terms[t] for t in members]
        duals = _duals([c[2] for c in chosen], *(torch.stack([c[i] for c in chosen])
                                                   for i in (3, 4, 5, 6)))  # fmt: skip
        signs = torch.tensor([c[1] for c in chosen], dtype=torch.float64, device=device)
        owners = torch.tensor([c[0] for c in chosen], device=device)
        total = total.index_add(0, owners, signs * duals)
    value = torch.tensor(values, dtype=torch.float64, device=device)
    return total - total.detach() + value


def _not_converged(res: Any, k: int | None) -> str:
    """Which solve of pair ``k`` missed its tolerance, and by how much."""
    parts = [("x–y", res.xy), ("x–x self term", res.xx), ("y–y self term", res.yy)] if hasattr(
        res, "xy") else [("x–y", res)]  # fmt: skip
    missed = [(name, r) for name, r in parts if not r.converged]
    where = "" if k is None else f" of pair {k}"
    what = ", ".join(
        f"{name}{where} (marginal error {r.marginal_error:.2e} > tol {r.tol:g} after "
        f"{r.iterations} iterations)"
        for name, r in missed
    )
    return (
        f"the Sinkhorn solve did not converge: {what}; the loss is that of its best state "
        "(raise max_iter or tol, or eps)"
    )


def _duals(
    results: Sequence[Any], x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """(G,) terms whose gradients are those of D(a, b, C(x, y)) at the results' potentials
    (held fixed), for G problems of one shape ((G, n, d) points), in float64 (their values
    are not D's: see :class:`_PlanMass`)."""
    dev = x.device
    f = torch.as_tensor(np.stack([r.f for r in results]), dtype=torch.float64, device=dev)
    g = torch.as_tensor(np.stack([r.g for r in results]), dtype=torch.float64, device=dev)
    a = a.to(device=dev, dtype=torch.float64)
    b = b.to(device=dev, dtype=torch.float64)
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    eps = torch.tensor([float(r.eps) for r in results], dtype=torch.float64, device=dev)
    first = results[0]
    phi_f = f if first.rho_a is None else -first.rho_a * torch.expm1(-f / first.rho_a)
    phi_g = g if first.rho_b is None else -first.rho_b * torch.expm1(-g / first.rho_b)
    linear = (a * phi_f).sum(1) + (b * phi_g).sum(1)
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    cost_fn = first.cost_fn
    if type(cost_fn).__name__ == "CallableCost":
        C = cost_fn.differentiable(x64, y64)  # autograd reaches the parameters it uses
        E = torch.exp((f[:, :, None] + g[:, None, :] - C) / eps[:, None, None])
        mass = (a[:, :, None] * b[:, None, :] * E).sum((1, 2))
    else:
        mass = _PlanMass.apply(x64, y64, a, b, f, g, eps, cost_fn)
    return linear - eps * (mass - 1.0)


class _PlanMass(torch.autograd.Function):
    """The gradient of Σ_ij a_i b_j e^{(f_i + g_j − C_ij(x, y))/ε} (f, g fixed) in x, y, a
    and b, for G problems of one shape at once and block by block: no (G, n, m) matrix
    outlives one row block. Its forward value is 0: the loss takes its value from the solve
    and only this term's gradient from here."""

    @staticmethod
    def forward(ctx, x, y, a, b, f, g, eps, cost_fn):  # type: ignore[override]
        # Only its gradient is used (the loss adds D − D.detach() to the reported value):
        # no pass over C here, one in backward.
        ctx.save_for_backward(x, y, a, b, f, g, eps)
        ctx.cost_fn = cost_fn
        return x.new_zeros(x.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, y, a, b, f, g, eps = ctx.saved_tensors
        cost_fn = ctx.cost_fn
        G, n, d = x.shape
        m = y.shape[1]
        gx, gy = torch.zeros_like(x), torch.zeros_like(y)
        ga, gb = torch.zeros_like(a), torch.zeros_like(b)
        scale = (grad / eps)[:, None, None]
        inv_eps = (1.0 / eps)[:, None, None]
        for r0, r1 in _blocks(n, G * m * d):
            with torch.enable_grad():
                xb = x[:, r0:r1].detach().requires_grad_(True)
                yb = y.detach().requires_grad_(True)
                C = cost_fn.differentiable(xb, yb)  # (G, r, m)
                E = torch.exp((f[:, r0:r1, None] + g[:, None, :] - C.detach()) * inv_eps)
                P = a[:, r0:r1, None] * b[:, None, :] * E  # the plan's block, fixed
                dx, dy = torch.autograd.grad((P * C).sum(), (xb, yb))
            gx[:, r0:r1] -= dx * scale
            gy -= dy * scale
            ga[:, r0:r1] += (E * b[:, None, :]).sum(2) * grad[:, None]  # exact where a_i = 0
            gb += (a[:, r0:r1, None] * E).sum(1) * grad[:, None]
        return gx, gy, ga, gb, None, None, None, None


def _blocks(n: int, m: int) -> list[tuple[int, int]]:
    step = max(1, BACKWARD_BLOCK_ENTRIES // max(m, 1))
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


def _check_keywords(kwargs: dict[str, Any], solve: Any) -> None:
    """Refuse a keyword :func:`otcli.solve` does not take, naming it (a misspelling would
    otherwise surface as a TypeError of an internal function)."""
    import inspect

    known = set(inspect.signature(inspect.unwrap(solve)).parameters) - {"x", "y", "a", "b"}
    for name in kwargs:
        if name not in known:
            raise OptionError(
                name, f"sinkhorn_loss takes otcli.solve's keywords: {', '.join(sorted(known))}"
            )


def _clouds(x: Any, name: str) -> tuple[list[torch.Tensor], bool]:
    """Tensors of points, one per pair, and whether the input was a batch."""
    if isinstance(x, (list, tuple)):
        clouds = [_points(t, f"{name}[{k}]") for k, t in enumerate(x)]
        if not clouds:
            raise InputError(name, "an empty list: give at least one cloud")
        return clouds, True
    t = _as_tensor(x, name)
    if t.ndim == 3:
        return [_points(c, f"{name}[{k}]") for k, c in enumerate(t.unbind(0))], True
    return [_points(t, name)], False


def _points(x: Any, name: str) -> torch.Tensor:
    t = _as_tensor(x, name)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(name, f"points must be (n, d) with n, d ≥ 1; got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t.detach()).all()):
        raise InputError(name, "holds NaN or infinite coordinates")
    return t


def _weights(
    w: Any, clouds: Sequence[torch.Tensor], name: str, batched: bool
) -> list[torch.Tensor]:
    """Weights per cloud (uniform where ``w`` is None), checked: finite, ≥ 0, not all 0."""
    if w is None:
        return [torch.full((c.shape[0],), 1.0 / c.shape[0], dtype=torch.float64,
                           device=c.device) for c in clouds]  # fmt: skip
    if batched:  # a list, or a (B, n) tensor or array: one weight vector per cloud
        ws = [_as_tensor(v, f"{name}[{k}]") for k, v in enumerate(w)]
    else:
        ws = [_as_tensor(w, name)]
    if len(ws) != len(clouds):
        raise InputError(name, f"{len(ws)} weight vector(s) for {len(clouds)} cloud(s)")
    for k, (v, c) in enumerate(zip(ws, clouds, strict=True)):
        where = name if len(ws) == 1 else f"{name}[{k}]"
        if v.ndim != 1 or v.shape[0] != c.shape[0]:
            raise InputError(where, f"needs {c.shape[0]} weights, one per point; got shape "
                             f"{tuple(v.shape)}")  # fmt: skip
        d = v.detach()
        if not bool(torch.isfinite(d).all()) or bool((d < 0).any()) or not bool(d.sum() > 0):
            raise InputError(where, "weights must be finite, ≥ 0 and not all 0")
    return ws


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise InputError(name, "complex values: give real coordinates")
        return x if x.dtype.is_floating_point else x.to(torch.float64)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(name, f"not an array of numbers ({exc})") from None
    return torch.from_numpy(arr)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()

"""The whole single-pair run as one library call: read → solve → write matrices → report.

``otdist A B`` is :func:`run_pair` plus rendering. Everything that can be refused is refused
before the solve (the two inputs, the output paths, a dense output that would not fit the
memory budget), so a run either writes every requested file or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from otcli.config import EPS_REL_FLOOR, ReadOptions, SolveConfig
from otcli.errors import OptionError
from otcli.solver import ProgressFn


@dataclass(frozen=True)
class PairOutputs:
    """Matrices to write: paths by extension (``None``: not written) and what long formats
    keep of the coupling (entries above ``coupling_threshold``, default 1e-9 × max P; only the
    ``coupling_topk`` largest of each row if given)."""

    coupling: str | os.PathLike[str] | None = None
    cost_matrix: str | os.PathLike[str] | None = None
    coupling_threshold: float | None = None
    coupling_topk: int | None = None


@dataclass(frozen=True)
class PairReport:
    """What a single-pair run found, as the text and JSON outputs show it.

    ``geometry`` is the user-facing choice (``dense``/``online``); ``engine`` is which engine
    ran (``dense``, ``kernel``, ``online``, ``block-sparse``). ``divergence`` is ``None``
    unless asked for; then ``converged`` covers its three problems and ``seconds`` their sum.
    """

    a: str
    b: str
    cost: float
    objective: float
    eps: float
    eps_rel: float
    cost_scale: float
    iterations: int
    converged: bool
    marginal_error: float
    tol: float
    n: int
    m: int
    dim: int
    cost_fn: str
    device: str
    dtype: str
    geometry: str
    engine: str
    seconds: float
    divergence: float | None = None
    p: float | None = None
    w_p: float | None = None

    def fields(self) -> dict[str, Any]:
        """The report as the JSON object's fields (``divergence``, ``p`` and ``w_p`` only
        when they exist)."""
        out = asdict(self)
        for key in ("divergence", "p", "w_p"):
            if out[key] is None:
                del out[key]
        return out


def cost_power(cost_fn: Any) -> float | None:
    """p where the cost is a p-th power of a distance (so that W_p = cost^(1/p)), else None."""
    powers = {"sqeuclidean": 2.0, "euclidean": 1.0, "cityblock": 1.0}
    return cost_fn.p if cost_fn.name == "pnorm" else powers.get(cost_fn.name)


def run_pair(
    a: str,
    b: str,
    config: SolveConfig,
    *,
    read: ReadOptions | None = None,
    outputs: PairOutputs | None = None,
    divergence: bool = False,
    exact: bool = False,
    progress: ProgressFn | None = None,
    warn: Callable[[str], None] | None = None,
) -> PairReport:
    """Solve the clouds in files ``a`` and ``b`` (``-``: CSV on stdin) and write ``outputs``.

    ε is resolved on the pair first (absolute, or ``eps_rel`` times the mean cost); where it
    is below :data:`~otcli.config.EPS_REL_FLOOR` of the mean cost, ``warn`` hears so before
    the solve, with the ways out. Raises :class:`~otcli.errors.OtcliError` for bad input,
    options or outputs (before any solving where it can be known),
    :class:`~otcli.errors.SolverError` when the numbers fail. ``exact`` solves the
    unregularised problem instead (:mod:`otcli.exact`; no ε, no divergence).
    """
    from otcli import api, export
    from otcli.io import check_output_path, read_cloud

    read = ReadOptions() if read is None else read
    outputs = PairOutputs() if outputs is None else outputs
    if a == "-" and b == "-":
        raise OptionError("B", "only one of A and B can be - (standard input)")
    for option, path in (("--coupling", outputs.coupling), ("--cost-matrix", outputs.cost_matrix)):
        if path is not None:
            check_output_path(path, option)
    x = read_cloud(a, columns=read.columns, weights=read.weights)
    y = read_cloud(b, columns=read.columns, weights=read.weights)
    export.check_writable(
        x.n, y.n, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,
        topk=outputs.coupling_topk, memory=config.memory,
    )  # fmt: skip
    api.check_pair(x, y, config.cost, "float64" if exact else config.dtype)
    if exact:
        return _exact_report(a, b, x, y, config, outputs)
    eps, scale = api.pair_eps(x, y, config)
    if warn is not None and eps < EPS_REL_FLOOR * scale:
        warn(small_eps_message(eps, scale, config.max_iter))
    div = None
    if divergence:
        div = api.divergence(x, y, eps=eps, config=config, progress=progress)
        res = div.xy  # type: ignore[union-attr]
    else:
        res = api.solve(x, y, eps=eps, config=config, progress=progress)
    export.write_matrices(
        res, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,  # type: ignore[arg-type]
        coupling_threshold=outputs.coupling_threshold, coupling_topk=outputs.coupling_topk,
    )  # fmt: skip
    seconds = res.seconds  # type: ignore[union-attr]
    if div is not None:
        seconds += div.xx.seconds + div.yy.seconds  # type: ignore[union-attr]
    return PairReport(
        a=a, b=b, cost=res.cost, objective=res.objective, eps=res.eps,  # type: ignore[union-attr]
        eps_rel=res.eps / scale if scale > 0 else float("inf"), cost_scale=scale,  # type: ignore[union-attr]
        iterations=res.iterations,  # type: ignore[union-attr]
        converged=div.converged if div is not None else res.converged,  # type: ignore[union-attr]
        marginal_error=res.marginal_error, tol=res.tol, n=res.n, m=res.m,  # type: ignore[union-attr]
        dim=res.dim, cost_fn=res.cost_fn.describe(), device=res.device,  # type: ignore[union-attr]
        dtype=res.dtype, geometry=res.geometry, engine=res.engine,  # type: ignore[union-attr]
        seconds=seconds,
        divergence=div.divergence if div is not None else None,  # type: ignore[union-attr]
        **_w_p(res.cost, config),  # type: ignore[union-attr]
    )  # fmt: skip


def _w_p(cost: float, config: SolveConfig) -> dict[str, float]:
    power = cost_power(config.cost)
    if power is None:
        return {}
    try:
        w_p = max(cost, 0.0) ** (1.0 / power)
    except OverflowError:  # a tiny --p: cost^(1/p) is beyond float64
        w_p = float("inf")
    return {"p": power, "w_p": w_p}


def _exact_report(
    a: str, b: str, x: Any, y: Any, config: SolveConfig, outputs: PairOutputs
) -> PairReport:
    """The unregularised optimum, written and reported like a Sinkhorn result."""
    from otcli import export
    from otcli.exact import solve_exact

    res = solve_exact(x, y, config)
    export.write_matrices(
        res, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,  # type: ignore[arg-type]
        coupling_threshold=outputs.coupling_threshold, coupling_topk=outputs.coupling_topk,
    )  # fmt: skip
    return PairReport(
        a=a, b=b, cost=res.cost, objective=res.cost, eps=0.0, eps_rel=0.0,
        cost_scale=float("nan"), iterations=0, converged=res.marginal_error <= 1e-9,
        marginal_error=res.marginal_error, tol=1e-9, n=res.n, m=res.m, dim=res.dim,
        cost_fn=config.cost.describe(), device="cpu", dtype="float64", geometry="dense",
        engine=res.method, seconds=res.seconds, **_w_p(res.cost, config),
    )  # fmt: skip


def small_eps_message(eps: float, scale: float, max_iter: int) -> str:
    """Said before solving when ε is too small against the costs for Sinkhorn to converge."""
    return (
        f"ε = {eps:g} is {eps / scale:.1e} of the mean cost {scale:.4g} between the clouds; "
        f"below {EPS_REL_FLOOR:g} of it Sinkhorn needs far more than --max-iter {max_iter} "
        f"iterations or does not converge at all; use --eps-rel 0.05 (ε = {0.05 * scale:.4g}) "
        "for an entropic estimate, or --exact for the unregularised optimum"
    )


def not_converged_message(report: PairReport, max_iter: int) -> str:
    """The warning for a pair that missed its tolerance, with the way out that fits."""
    what = f"marginal error {report.marginal_error:.2e} above --tol {report.tol:.0e}"
    if report.eps_rel < EPS_REL_FLOOR:
        return (
            f"not converged: {what} after {report.iterations} iterations; ε is "
            f"{report.eps_rel:.1e} of the mean cost, too small for Sinkhorn: use --eps-rel "
            f"0.05 (ε = {0.05 * report.cost_scale:.4g}) or --exact"
        )
    if report.iterations >= max_iter:
        return f"not converged: {what} after --max-iter {max_iter}; raise --max-iter or --tol"
    hint = "--dtype float64, a larger --eps" if report.dtype == "float32" else "a larger --eps"
    return (
        f"not converged: {what}; the error stopped falling after {report.iterations} "
        f"iterations at ε = {report.eps:g}; try {hint} or a larger --tol"
    )


__all__ = [
    "PairOutputs",
    "PairReport",
    "not_converged_message",
    "run_pair",
    "small_eps_message",
]

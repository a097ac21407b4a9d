"""The whole single-pair run as one library call: read → solve → write matrices → report.

``otdist A B`` is :func:`run_pair` plus rendering. Everything that can be refused is refused
before the solve (the two inputs, the output paths, a dense output that would not fit the
memory budget), so a run either writes every requested file or none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from otcli.config import EPS_REL_CEILING, EPS_REL_FLOOR, ReadOptions, SolveConfig
from otcli.errors import OptionError, SolverError
from otcli.solver import ProgressFn, report_stage


@dataclass(frozen=True)
class PairOutputs:
    """Matrices to write: paths by extension (``None``: not written) and what long formats
    keep of the coupling (entries above ``coupling_threshold``, default 1e-9 × max P; only the
    ``coupling_topk`` largest of each row if given). ``plot``: a picture of the pair
    (.png/.svg/.pdf, :func:`otcli.plot.pair_figure`) with at most ``plot_max_links`` links,
    ``plot_size`` inches (width, height) if given, a PNG at ``plot_dpi`` dots per inch. An
    existing file is replaced only with ``overwrite``, an input file never."""

    coupling: str | os.PathLike[str] | None = None
    cost_matrix: str | os.PathLike[str] | None = None
    coupling_threshold: float | None = None
    coupling_topk: int | None = None
    plot: str | os.PathLike[str] | None = None
    plot_max_links: int = 1000
    plot_size: tuple[float, float] | None = None
    overwrite: bool = False
    plot_dpi: int = 100


@dataclass(frozen=True)
class PairReport:
    """What a single-pair run found, as the text and JSON outputs show it.

    ``geometry`` is the user-facing choice (``dense``/``online``); ``engine`` is which engine
    ran (``dense``, ``kernel``, ``online``, ``block-sparse``). ``divergence`` is ``None``
    unless asked for; then ``converged`` covers its three problems and ``seconds`` their sum.
    ``columns`` names the coordinate columns read (header names, or 0-based indices as
    text); ``columns_b`` is set only where B's differ from A's.
    Unbalanced runs add ``mass`` (Σ P) and the penalties ``rho_a``/``rho_b`` of the relaxed
    sides; their ``objective`` carries the KL terms and ``marginal_error`` is measured against
    the relaxed marginals (see :class:`~otcli.result.SinkhornResult`). A problem given as a
    cost matrix reports as a :class:`MatrixReport`.
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
    columns: tuple[str, ...] = ()
    columns_b: tuple[str, ...] | None = None
    mass: float | None = None
    rho_a: float | None = None
    rho_b: float | None = None

    def __repr__(self) -> str:
        """One line: the files, sizes and figures (``fields()`` has everything)."""
        extra = "".join(
            f", {k}={v:.6g}" for k, v in (("divergence", self.divergence), ("w_p", self.w_p),
                                          ("mass", self.mass))
            if v is not None
        )  # fmt: skip
        return (
            f"PairReport(a={self.a!r}, b={self.b!r}, n={self.n}, m={self.m}, dim={self.dim}, "
            f"cost={self.cost:.6g}{extra}, eps={self.eps:.3g}, iterations={self.iterations}, "
            f"converged={self.converged}, engine={self.engine!r})"
        )

    def fields(self) -> dict[str, Any]:
        """The report as the JSON object's fields (``divergence``, ``p``, ``w_p``,
        ``columns_b``, ``mass``, ``rho_a`` and ``rho_b`` only when they exist)."""
        out = asdict(self)
        for key in ("divergence", "p", "w_p", "columns_b", "mass", "rho_a", "rho_b"):
            if out[key] is None:
                del out[key]
        for key in ("columns", "columns_b"):
            if key in out:
                out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class MatrixReport(PairReport):
    """The report of ``otdist matrix``: a :class:`PairReport` of the index clouds the matrix
    is posed between (:mod:`otcli.matrix`), shown without what only points have: no ``a``,
    ``b`` (the clouds' files), ``dim`` or ``columns``. The matrix is named in ``cost_fn``."""

    #: Fields that describe the index clouds, not the problem: left out of the output.
    POINTS_ONLY = ("a", "b", "dim", "columns", "columns_b")

    def __repr__(self) -> str:
        return (
            f"MatrixReport(n={self.n}, m={self.m}, cost={self.cost:.6g}, eps={self.eps:.3g}, "
            f"iterations={self.iterations}, converged={self.converged}, engine={self.engine!r})"
        )

    def fields(self) -> dict[str, Any]:
        """The report as the JSON object's fields, without :data:`POINTS_ONLY`."""
        return {k: v for k, v in super().fields().items() if k not in self.POINTS_ONLY}


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
    note: Callable[[str], None] | None = None,
    strict: bool = False,
) -> PairReport:
    """Solve the clouds in files ``a`` and ``b`` (``-``: standard input) and write ``outputs``.

    ε is resolved on the pair first (absolute, or ``eps_rel`` times the mean cost); where it
    is below :data:`~otcli.config.EPS_REL_FLOOR` of the mean cost or above
    :data:`~otcli.config.EPS_REL_CEILING` of it, ``warn`` hears so before the solve, with the
    ways out. ``strict``: a pair that does not converge is a :class:`SolverError` and
    nothing is written. Raises :class:`~otcli.errors.OtcliError` for bad input,
    options or outputs (before any solving where it can be known),
    :class:`~otcli.errors.SolverError` when the numbers fail. ``exact`` solves the
    unregularised problem instead (:mod:`otcli.exact`; no ε, no divergence). ``note`` hears
    what the readers decided on their own (``<file>: dropped column 0 (a pandas index...``).
    """
    from otcli import api, export
    from otcli.io import check_output_path, read_cloud
    from otcli.io.writers import check_distinct_outputs, check_new_output

    read = ReadOptions() if read is None else read
    outputs = PairOutputs() if outputs is None else outputs
    if a == "-" and b == "-":
        raise OptionError("B", "only one of A and B can be - (standard input)")
    if exact and config.unbalanced:
        raise OptionError("--exact", "solves balanced OT; drop --reach / --rho")
    export.check_threshold(outputs.coupling_threshold)
    for option, path in (("--coupling", outputs.coupling), ("--cost-matrix", outputs.cost_matrix)):
        if path is not None:
            check_output_path(path, option)
            check_new_output(path, option, overwrite=outputs.overwrite, inputs=(a, b))
    check_distinct_outputs(
        [("--coupling", outputs.coupling), ("--cost-matrix", outputs.cost_matrix),
         ("--plot", outputs.plot)]
    )  # fmt: skip
    if outputs.plot is not None:
        from otcli import plot

        plot.check_plot_path(outputs.plot)
        plot.check_plot_options(outputs.plot_max_links, outputs.plot_size, outputs.plot_dpi)
        check_new_output(outputs.plot, "--plot", overwrite=outputs.overwrite, inputs=(a, b))
    options = {
        "columns": read.columns, "weights": read.weights, "exclude": read.exclude,
        "id_column": read.id_column,
    }  # fmt: skip
    report_stage(progress, f"reading {a}")
    x = read_cloud(a, **options)
    report_stage(progress, f"reading {b}")
    y = read_cloud(b, **options)
    for cloud in (x, y):
        for message in cloud.notes if note is not None else ():
            note(f"{cloud.source}: {message}")
    export.check_writable(
        x.n, y.n, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,
        topk=outputs.coupling_topk, memory=config.memory, ids=read.id_column is not None,
    )  # fmt: skip
    api.check_pair(x, y, config.cost, "float64" if exact else config.dtype)
    if exact:
        return _exact_report(a, b, x, y, config, outputs, note)
    return solve_pair(
        a, b, x, y, config, outputs=outputs, divergence=divergence, progress=progress, warn=warn,
        strict=strict, note=note,
    )  # fmt: skip


def solve_pair(
    a: str,
    b: str,
    x: Any,
    y: Any,
    config: SolveConfig,
    *,
    outputs: PairOutputs,
    divergence: bool = False,
    progress: ProgressFn | None = None,
    warn: Callable[[str], None] | None = None,
    report_type: type[PairReport] = PairReport,
    strict: bool = False,
    note: Callable[[str], None] | None = None,
) -> PairReport:
    """Solve two checked clouds, write ``outputs`` and report under the names ``a``, ``b``.

    The part of a single-pair run after reading, shared with ``otdist matrix``
    (:mod:`otcli.matrix`), which asks for a ``report_type`` of :class:`MatrixReport`.
    """
    from otcli import api

    eps, scale = api.pair_eps(x, y, config)
    message = eps_message(eps, scale, config.max_iter)
    if warn is not None and message is not None:
        warn(message)
    div = None
    if divergence:
        div = api.divergence(x, y, eps=eps, config=config, progress=progress)
        res = div.xy  # type: ignore[union-attr]
    else:
        res = api.solve(x, y, eps=eps, config=config, progress=progress)
    seconds = res.seconds  # type: ignore[union-attr]
    if div is not None:
        seconds += div.xx.seconds + div.yy.seconds  # type: ignore[union-attr]
    report = report_type(
        a=a, b=b, cost=res.cost, objective=res.objective, eps=res.eps,  # type: ignore[union-attr]
        eps_rel=res.eps / scale if scale > 0 else float("inf"), cost_scale=scale,  # type: ignore[union-attr]
        iterations=res.iterations,  # type: ignore[union-attr]
        converged=div.converged if div is not None else res.converged,  # type: ignore[union-attr]
        marginal_error=res.marginal_error, tol=res.tol, n=res.n, m=res.m,  # type: ignore[union-attr]
        dim=res.dim, cost_fn=res.cost_fn.describe(),  # type: ignore[union-attr]
        device=res.device, dtype=res.dtype, geometry=res.geometry, engine=res.engine,  # type: ignore[union-attr]
        seconds=seconds,
        divergence=div.divergence if div is not None else None,  # type: ignore[union-attr]
        **_w_p(res.cost, config), **_columns(x, y),  # type: ignore[union-attr]
        **_relaxed(res),
    )  # fmt: skip
    if strict and not report.converged:
        raise SolverError(
            f"{a} vs {b}: {not_converged_message(report, config.max_iter)}; with --strict "
            "nothing is printed or written"
        )
    if outputs.coupling is not None or outputs.cost_matrix is not None or outputs.plot:
        report_stage(progress, "writing the outputs")
    _write_outputs(res, outputs, (x, y), config, note)
    return report


def _columns(x: Any, y: Any) -> dict[str, Any]:
    """The report's column fields: A's columns, and B's where they differ."""
    return {"columns": x.columns, "columns_b": None if y.columns == x.columns else y.columns}


def _relaxed(res: Any) -> dict[str, Any]:
    """The unbalanced figures of a report (none for balanced OT)."""
    if not res.unbalanced:
        return {}
    return {"mass": res.mass, "rho_a": res.rho_a, "rho_b": res.rho_b}


def _w_p(cost: float, config: SolveConfig) -> dict[str, float]:
    power = cost_power(config.cost)
    if power is None or config.unbalanced:  # P is no coupling of a and b: no W_p
        return {}
    try:
        w_p = max(cost, 0.0) ** (1.0 / power)
    except OverflowError:  # a tiny --p: cost^(1/p) is beyond float64
        w_p = float("inf")
    return {"p": power, "w_p": w_p}


def _exact_report(
    a: str,
    b: str,
    x: Any,
    y: Any,
    config: SolveConfig,
    outputs: PairOutputs,
    note: Callable[[str], None] | None = None,
) -> PairReport:
    """The unregularised optimum, written and reported like a Sinkhorn result."""
    from otcli.exact import solve_exact

    res = solve_exact(x, y, config)
    _write_outputs(res, outputs, (x, y), config, note)
    return PairReport(
        a=a, b=b, cost=res.cost, objective=res.cost, eps=0.0, eps_rel=0.0,
        cost_scale=float("nan"), iterations=0, converged=res.marginal_error <= 1e-9,
        marginal_error=res.marginal_error, tol=1e-9, n=res.n, m=res.m, dim=res.dim,
        cost_fn=config.cost.describe(), device="cpu", dtype="float64", geometry="dense",
        engine=res.method, seconds=res.seconds, **_w_p(res.cost, config), **_columns(x, y),
    )  # fmt: skip


def _write_outputs(
    res: Any,
    outputs: PairOutputs,
    clouds: tuple[Any, Any],
    config: SolveConfig,
    note: Callable[[str], None] | None = None,
) -> None:
    """The matrices and the picture: drawn first, all renamed into place at the end, or none."""
    from otcli import export

    with contextlib.ExitStack() as stack:
        if outputs.plot is not None:
            from otcli import plot

            fig = plot.pair_figure(
                res, clouds=clouds, max_links=outputs.plot_max_links, size=outputs.plot_size
            )
            stack.enter_context(plot.figure_file(fig, outputs.plot, outputs.plot_dpi))
        x, y = clouds
        export.write_matrices(
            res, coupling=outputs.coupling, cost_matrix=outputs.cost_matrix,
            coupling_threshold=outputs.coupling_threshold, coupling_topk=outputs.coupling_topk,
            ids=(x.ids, y.ids), memory=config.memory, note=note,
        )  # fmt: skip


def eps_message(eps: float, scale: float, max_iter: int) -> str | None:
    """Said before solving when ε is outside the sensible range against the pair's mean
    cost ``scale``: too small for Sinkhorn to converge, or so large that the entropy swamps
    the cost (standardized diabetes halves at ε = 0.1, 2.3× their mean cost, "converged" at
    3.7× the exact W₂², silently). None when ε is sensible (or the costs are all zero)."""
    if not scale > 0:
        return None
    if eps < EPS_REL_FLOOR * scale:
        return (
            f"ε = {eps:g} is {eps / scale:.1e} of the mean cost {scale:.4g} between the clouds; "
            f"below {EPS_REL_FLOOR:g} of it Sinkhorn needs far more than --max-iter {max_iter} "
            f"iterations or does not converge at all; use --eps-rel 0.05 (ε = "
            f"{0.05 * scale:.4g}) for an entropic estimate, or --exact for the unregularised "
            "optimum"
        )
    if eps > EPS_REL_CEILING * scale:
        return (
            f"ε = {eps:g} is {eps / scale:.3g}× the mean cost {scale:.4g} between the clouds; "
            f"above {EPS_REL_CEILING:g}× the entropy outweighs the cost and ⟨P, C⟩ is close to "
            "the mean cost of the independent coupling, not the transport cost; use --eps-rel "
            f"0.05 (ε = {0.05 * scale:.4g}) or --exact"
        )
    return None


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
    "MatrixReport",
    "PairOutputs",
    "PairReport",
    "eps_message",
    "not_converged_message",
    "run_pair",
    "solve_pair",
]

"""Everything a person sees: the summary on stdout, JSON, warnings, errors and progress on stderr.

This is the only module that imports rich. stdout carries results only; progress, warnings
and errors go to stderr, so ``otdist a.csv b.csv --quiet | ...`` pipes a bare number.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from otcli.errors import OtcliError
from otcli.safetext import json_dumps, one_line, printable

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """``Error: <where>: <what>`` as one line on stderr (no markup, no wrapping); bytes of a
    file name that are not UTF-8 show as ``\\xNN``, control characters in it (a newline)
    as escapes (:func:`~otcli.safetext.one_line`)."""
    stderr.print(f"Error: {one_line(printable(message))}", style="bold red", markup=False)


def warning(message: str) -> None:
    stderr.print(f"Warning: {one_line(printable(message))}", style="yellow", markup=False)


def require_stdout() -> None:
    """Refuse to start a command whose result goes to stdout when stdout was closed
    (``otdist A B >&-``): the :class:`~otcli.errors.OtcliError` of :func:`result`, before
    the work rather than after it (:mod:`otcli.cli.streams` says why it is an error)."""
    if sys.stdout is None:
        raise OtcliError(
            "stdout",
            "is closed, so the result has nowhere to go; redirect it to a file, or to "
            "/dev/null to drop it",
        )


def result(text: str) -> None:
    """``text`` and a newline on stdout, flushed now, so that a full disk or a closed pipe
    is an :class:`~otcli.errors.OtcliError` here, not a traceback at exit. After a failure
    stdout is pointed at /dev/null: Python's own flush at exit then has nothing to fail on."""
    require_stdout()
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        reason = exc.strerror or type(exc).__name__
        raise OtcliError("stdout", f"cannot write the result ({reason})") from None


def note(message: str) -> None:
    """``Note: <file>: <what>`` on stderr: something otdist decided the user should know."""
    stderr.print(f"Note: {one_line(printable(message))}", markup=False)


#: Engines that solve the unregularised problem (no ε, no iterations).
EXACT_ENGINES = ("assignment", "network-simplex")


def _num(x: float) -> str:
    return f"{x:.7g}"


def summary(fields: dict[str, Any]) -> str:
    """The human-readable result: what each number is, on a few aligned lines."""
    exact = fields.get("engine") in EXACT_ENGINES
    if exact:
        lines = [
            ("cost", f"{_num(fields['cost'])}   exact optimum ⟨P, C⟩ with {fields['cost_fn']} cost")
        ]
    else:
        rel = ""
        if "eps_rel" in fields and math.isfinite(fields["eps_rel"]) and fields["eps_rel"] > 0:
            rel = f" ({fields['eps_rel']:.2g} of the mean cost)"
        elif "cost_scale" in fields:  # a ratio to a mean cost ≤ 0 (a cost matrix) means nothing
            rel = f" (the mean cost is {fields['cost_scale']:.3g})"
        what = f"⟨P, C⟩ with {fields['cost_fn']} cost, ε = {fields['eps']:g}{rel}"
        objective = "OT_ε = ⟨P, C⟩ + ε KL(P‖a⊗b)"
        if "mass" in fields:
            terms = " + ".join(
                f"{rho} KL({m}‖{w})"
                for key, rho, m, w in (("rho_a", "ρ_a", "P1", "a"), ("rho_b", "ρ_b", "Pᵀ1", "b"))
                if fields.get(key) is not None
            )
            objective = f"min ⟨P, C⟩ + ε KL(P‖a⊗b) + {terms}, in dual form"
        lines = [
            ("cost", f"{_num(fields['cost'])}   {what}"),
            ("objective", f"{_num(fields['objective'])}   {objective}"),
        ]
        if "mass" in fields:
            rhos = ", ".join(
                f"{name} = {fields[key]:g}"
                for key, name in (("rho_a", "ρ_a"), ("rho_b", "ρ_b"))
                if fields.get(key) is not None
            )
            lines.append(
                ("mass", f"{_num(fields['mass'])}   transported, Σ P of 1 per cloud ({rhos})")
            )
    if "w_p" in fields:
        p = fields["p"]
        what = "exact" if exact else "of the entropic plan"
        lines.append((f"W_{p:g}", f"{_num(fields['w_p'])}   ⟨P, C⟩^(1/{p:g}), {what}"))
    if "divergence" in fields:
        lines.append(("divergence", f"{_num(fields['divergence'])}   debiased Sinkhorn divergence"))
    if exact:
        lines.append(
            ("solver", f"{fields['engine']}, marginal error {fields['marginal_error']:.2e}")
        )
    else:
        state = "converged" if fields["converged"] else "NOT converged"
        error = "marginal error" if "mass" not in fields else "error to relaxed marginals"
        lines.append((
            "iterations",
            f"{fields['iterations']}, {state} ({error} {fields['marginal_error']:.2e},"
            f" tol {fields['tol']:.0e})",
        ))  # fmt: skip
    shape = f"{fields['n']} × {fields['m']}"
    lines += [
        ("points", f"{shape} in {fields['dim']}-D" if "dim" in fields else f"{shape} cost matrix"),
        *_columns_lines(fields),
        ("device", f"{fields['device']}, {fields['dtype']}, {fields['seconds']:.3g} s"),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def _columns_lines(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``columns`` line: the coordinate columns read (A's and B's when they differ)."""
    if not fields.get("columns"):
        return []
    if "columns_b" not in fields:
        return [("columns", _column_list(fields["columns"]))]
    a, b = _column_list(fields["columns"]), _column_list(fields["columns_b"])
    return [("columns", f"A: {a}; B: {b}")]


def _column_list(names: list[str], shown: int = 8) -> str:
    """Column names, comma-separated; past ``shown`` the first few, the last and the count."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[: shown - 2])}, …, {names[-1]} ({len(names)} columns)"


def to_json(fields: dict[str, Any]) -> str:
    """One JSON object on one line; non-finite floats become null (JSON has no NaN), and
    file names that are not UTF-8 keep their bytes as ``\\udcNN`` escapes (valid UTF-8)."""
    return json_dumps(fields)


def _progress_console(force: bool | None) -> Console:
    """stderr; forced into terminal mode when --progress asked for a bar in a pipe or log."""
    if force and not sys.stderr.isatty():
        return Console(stderr=True, highlight=False, force_terminal=True)
    return stderr


class SolveProgress:
    """A live line on stderr for one pair: the stage (reading, building C, solving, measuring
    the plan, writing), then iteration, ε and marginal error while solving.

    It appears ``delay`` seconds after the run starts, whatever the run is doing then (a
    timer, not the solver, shows it: building a large C or measuring its plan makes no
    callbacks), keeps its clock and spinner running until closed, and stays silent in pipes
    unless ``force`` is set, so quick runs print nothing extra.
    """

    def __init__(self, *, force: bool | None, delay: float = 1.0) -> None:
        self.console = _progress_console(force)
        self.enabled = force if force is not None else sys.stderr.isatty()
        self.delay = 0.0 if force else delay
        self.start = time.perf_counter()
        self._progress: Progress | None = None
        self._task: Any = None
        self._stage = "starting"
        self._fields: dict[str, Any] = {"it": "", "eps": "", "err": ""}
        self._lock = threading.Lock()
        self._closed = False
        self._timer: threading.Timer | None = None
        if self.enabled and self.delay <= 0:
            self._show()
        elif self.enabled:
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()

    def stage(self, description: str) -> None:
        """What the run is doing now (shown until the next stage)."""
        self._stage = description
        self._update()

    def __call__(self, iteration: int, eps: float, err: float) -> None:
        if not self._stage.startswith("solving"):  # "solving: coarse, ..." stays
            self._stage = "solving"
        self._fields = {"it": f"iteration {iteration}", "eps": f"ε {eps:.3g}",
                        "err": f"marginal error {err:.2e}"}  # fmt: skip
        self._update()

    def _show(self) -> None:
        with self._lock:
            if self._closed or self._progress is not None:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description:<26}"),
                TextColumn("{task.fields[it]:<16}"),
                TextColumn("{task.fields[eps]:<12}"),
                TextColumn("{task.fields[err]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._stage, total=None, **self._fields)

    def _update(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.update(self._task, description=self._stage, **self._fields)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


class BatchProgress:
    """A progress bar on stderr for many pairs: done / total, pairs per second, ETA, failures.

    Shown only on a terminal unless ``force`` is set (``--progress``); ``--no-progress``
    (``force=False``) hides it everywhere. Call :meth:`start` with the totals, the returned
    hook as pairs finish, and :meth:`close` at the end (also on errors).
    """

    def __init__(self, *, force: bool | None) -> None:
        self.console = _progress_console(force)
        self.enabled = force if force is not None else sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: Any = None
        self._failed = 0

    def start(self, total: int, done: int) -> Any:
        """Begin at ``done`` of ``total`` (a resumed run); return the hook ``(n, failed)``."""
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("pairs"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8.1f} pairs/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "pairs", total=total, completed=done, rate=0.0, failed=0
            )
        self._start = time.perf_counter()
        self._done_here = 0
        return self.advance

    def advance(self, count: int, failed: int) -> None:
        self._failed += failed
        self._done_here += count
        if self._progress is not None:
            rate = self._done_here / max(time.perf_counter() - self._start, 1e-9)
            self._progress.update(self._task, advance=count, rate=rate, failed=self._failed)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def run_summary(summary: Any) -> None:
    """The end-of-run table on stderr: ok, failed, not converged, resumed, time, pairs/s."""
    from rich.table import Table

    table = Table(title=f"otdist: {summary.out}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("pairs", str(summary.total))
    table.add_row("ok", str(summary.ok))
    table.add_row("failed", f"[red]{summary.failed}[/red]" if summary.failed else "0")
    table.add_row("not converged", str(summary.not_converged))
    if summary.skipped:
        table.add_row("already done (resumed)", str(summary.skipped))
    table.add_row("total time", f"{summary.seconds:.2f} s")
    table.add_row("pairs/s", f"{summary.pairs_per_second:.1f}")
    stderr.print(table)


# --- otdist show: summaries of files written earlier (otcli.summary) ------------------------


def _plain(text: str) -> Any:
    """User text (paths, messages) kept verbatim: rich would read ``[...]`` as markup."""
    from rich.text import Text

    return Text(text)


def _range(lo: float, hi: float) -> str:
    """``lo … hi``, or ``-`` where there were no values to range over (NaN)."""
    if math.isnan(lo) or math.isnan(hi):
        return "-"
    return f"{_num(lo)} … {_num(hi)}"


def _table(title: str | None = None, header: bool = False) -> Any:
    from rich.table import Table

    return Table(title=title, title_justify="left", show_header=header, box=None, pad_edge=False)


def stored_summary(s: Any) -> None:
    """A :class:`~otcli.summary.MatrixSummary` or ``TableSummary`` as tables on stdout."""
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:  # a pipe or a file: whole lines, never wrapped at 80 columns
        out = Console(highlight=False, soft_wrap=True, width=10_000)
    if hasattr(s, "nonzero"):
        _matrix_summary(out, s)
    else:
        _table_summary(out, s)


def _matrix_summary(out: Console, s: Any) -> None:
    table = _table()
    table.add_column(style="bold")
    table.add_column()
    shape = f"{s.n} × {s.m}" if s.exact_shape else f"{s.n} × {s.m} (largest i, j + 1)"
    table.add_row("file", _plain(f"{s.path}  ({s.layout})"))
    table.add_row("shape", shape)
    if s.kept_share is not None:
        table.add_row("is", "a coupling (otdist's metadata)")
        how = f" ({s.kept_by})" if s.kept_by else ""
        table.add_row("kept", f"{s.kept_share:.1%} of the plan's mass{how}")
    else:
        kind = "a coupling (entries ≥ 0, sum 1)" if s.coupling else "a matrix (not a coupling)"
        table.add_row("looks like", kind)
    mass = "mass" if s.coupling else "sum"
    table.add_row(f"total {mass}", _num(s.total))
    empty = (
        f", {s.missing:,} empty (NaN: failed pairs' entries, left out of the sums)"
        if s.missing
        else ""
    )
    table.add_row(
        "entries",
        f"{s.stored:,} stored, {s.nonzero:,} nonzero, sparsity {s.sparsity:.1%} of "
        f"{s.n * s.m:,}{empty}",
    )
    table.add_row("values", _range(s.min, s.max))
    table.add_row(f"row {mass}es" if s.coupling else "row sums", _range(s.row_min, s.row_max))
    table.add_row(f"column {mass}es" if s.coupling else "column sums", _range(s.col_min, s.col_max))
    out.print(table)
    top = _table(f"{'strongest links' if s.coupling else 'largest entries'}", header=True)
    for name in ("i", "j", "value"):
        top.add_column(name, justify="right")
    if s.coupling:
        top.add_column("share of mass", justify="right")
    for i, j, v in s.top:
        share = [f"{v / s.total:.2%}"] if s.coupling and s.total > 0 else []
        top.add_row(str(i), str(j), _num(v), *share)
    out.print(top)


def _table_summary(out: Console, s: Any) -> None:
    table = _table()
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", _plain(f"{s.path}  ({s.kind} output)"))
    table.add_row(
        "pairs",
        f"{s.rows}: {s.ok} ok, {s.failed} failed, {s.not_converged} not converged",
    )
    for name, (lo, mid, hi) in (("cost", s.cost), ("iterations", s.iterations)):
        spread = _range(lo, hi)
        table.add_row(name, spread if spread == "-" else f"{spread}, median {_num(mid)}")
    table.add_row("ε", ", ".join(f"{e:g}" for e in s.eps) or "-")
    for label, message in s.errors:
        table.add_row("failed", _plain(f"{label}: {message}"), style="red")
    for label, err in s.unconverged:
        table.add_row("not converged", _plain(f"{label}: marginal error {err:.2e}"), style="yellow")
    out.print(table)


# --- otdist barycenter --------------------------------------------------------------------------


def iteration(index: int, objective: float, movement: float, divergence: bool) -> None:
    """One progress line per outer iteration of a barycenter, on stderr."""
    what = "S_ε" if divergence else "objective"
    if math.isnan(movement):
        text = f"iteration {index}: {what} {_num(objective)} (initial support, k-means++)"
    else:
        text = f"iteration {index}: {what} {_num(objective)}, movement {movement:.2e}"
    stderr.print(text, markup=False, highlight=False)


def barycenter_summary(fields: dict[str, Any]) -> str:
    """The human-readable result of ``otdist barycenter``: aligned lines, as :func:`summary`."""
    if fields["divergence"]:
        what = f"Σ_k w_k S_ε(bary, X_k), debiased, ε = {fields['eps']:g}"
    else:
        what = f"Σ_k w_k OT_ε(bary, X_k), ε = {fields['eps']:g}"
    state = "converged" if fields["converged"] else "NOT converged"
    weights = ", ".join(f"{w:.3g}" for w in fields["weights"])
    lines = [
        ("objective", f"{_num(fields['objective'])}   {what}"),
        ("clouds", f"{len(fields['files'])}, weights {weights}"),
        ("iterations", f"{fields['iterations']}, {state} (movement {fields['movement']:.2e} "
                       f"of the clouds' scale, tol {fields['outer_tol']:.0e})"),
        ("points", f"{fields['points']} in {fields['dim']}-D, written to {fields['output']}"),
        *_columns_lines(fields),
        ("device", f"{fields['device']}, {fields['dtype']}, {fields['seconds']:.3g} s"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)

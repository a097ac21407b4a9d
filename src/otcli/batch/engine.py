"""The batch engine: problems → buckets of similar size → batched solves, one bad pair apart.

Shared by ``otdist batch``, ``otdist pairwise`` and any backend that runs buckets elsewhere:
problems are sorted into buckets of similar size so padding wastes little, each bucket is one
call to :func:`otcli.api.solve_clouds` under one :class:`~otcli.config.SolveConfig`, and a
bucket whose solve fails is retried pair by pair, so one bad pair never poisons the others.
Any exception of one pair (not only :class:`~otcli.errors.OtcliError`: an ``OverflowError``
deep in the numerics too) becomes that pair's one-line message (:func:`failure_message`).
Clouds are read ahead of the solver on a thread pool (:class:`CloudLoader`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from otcli.buckets import plan_buckets
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import OptionError, OtcliError, SolverError
from otcli.lanes import Serialized, in_lanes, lane_count

if TYPE_CHECKING:
    from otcli.cloud import Cloud
    from otcli.result import SinkhornResult


def failure_message(exc: BaseException, where: str) -> str:
    """One line saying why a pair failed: the message of an OtcliError or SolverError as it
    is (the one a single-pair run prints), any other exception named with ``where`` (e.g.
    ``a.csv vs b.csv``) and its type, so that it reads as a row's error, not a traceback."""
    if isinstance(exc, (OtcliError, SolverError)):
        text = str(exc)
    else:
        detail = " ".join(str(exc).split())
        kind = type(exc).__name__
        text = f"{where}: the pair could not be solved ({kind}{': ' + detail if detail else ''})"
    return " ".join(text.splitlines())


def check_workers(workers: int) -> None:
    """The loader's thread count, refused unless positive."""
    if workers < 1:
        raise OptionError("--workers", f"must be ≥ 1, got {workers}")


def check_exact(exact: bool, *, divergence: bool, backend: object | None) -> None:
    """``--exact`` in a batch or pairwise run: POT installed, no divergence, in-process."""
    if not exact:
        return
    from otcli.exact import INSTALL_HINT, have_pot

    if not have_pot():
        raise OptionError(
            "--exact", f"needs POT's network simplex, an optional extra: {INSTALL_HINT}"
        )
    if divergence:
        raise OptionError(
            "--exact", "solves without ε: no divergence (its self terms are 0); drop --divergence"
        )
    if backend is not None:
        raise OptionError("--exact", "runs in this process only; drop --scheduler")


@dataclass(frozen=True)
class Problem:
    """One OT problem to solve: two validated clouds of one dimension and its ε."""

    x: Cloud
    y: Cloud
    eps: float | None  # None: the config's relative ε, resolved in the solve


@dataclass
class Engine:
    """Solves lists of problems bucket by bucket under one :class:`SolveConfig`.

    ``max_entries`` bounds a bucket's padded B·n·m: the smaller of what the memory budget
    holds (the same memory model that picks the geometry) and the cache-friendly work-unit
    size :data:`otcli.buckets.DEFAULT_MAX_ENTRIES`.
    """

    config: SolveConfig
    max_entries: int
    exact: bool = False  # the unregularised optimum of each pair (``--exact``), one by one

    @classmethod
    def create(cls, config: SolveConfig, exact: bool = False) -> Engine:
        """Size buckets from the config's memory budget (read once, here)."""
        return cls(config, config.bucket_entries(), exact)

    def check_pair(self, x: Cloud, y: Cloud) -> None:
        """The checks ``solve_clouds`` makes per pair, with the same messages, made up front
        so that one bad pair becomes one error row instead of failing its whole bucket."""
        from otcli.api import check_pair

        check_pair(x, y, self.config.cost, self.config.dtype)

    def pair_eps(self, x: Cloud, y: Cloud) -> float:
        """The pair's absolute ε under the config (``eps_rel`` × its mean cost if relative)."""
        from otcli.api import pair_eps

        return pair_eps(x, y, self.config)[0]

    def solve(
        self,
        problems: Sequence[Problem],
        checked: bool = False,
        progress: Callable[..., object] | None = None,
    ) -> list[SinkhornResult | str]:
        """One batched solve; if it fails, each problem alone, so only bad ones fail.

        ``checked``: every pair already passed :meth:`check_pair` (not checked twice).
        ``progress``: what the solves report to (in a lane: its stop check).
        """
        from otcli import api

        if self.exact:
            return [self._solve_exact(p) for p in problems]
        try:
            xs, ys = [p.x for p in problems], [p.y for p in problems]
            eps = [p.eps for p in problems]
            return list(
                api.solve_clouds(xs, ys, eps, self.config, progress=progress, checked=checked)
            )
        except Exception as exc:  # whatever one pair raises fails that pair only
            if len(problems) == 1:
                p = problems[0]
                return [failure_message(exc, f"{p.x.source} vs {p.y.source}")]
        return [self.solve([p], checked, progress)[0] for p in problems]

    def _solve_exact(self, p: Problem) -> Any:
        """One pair's exact optimum (:func:`otcli.exact.solve_exact`), or why it failed."""
        from otcli.exact import solve_exact

        try:
            return solve_exact(p.x, p.y, self.config)
        except Exception as exc:  # whatever one pair raises fails that pair only
            return failure_message(exc, f"{p.x.source} vs {p.y.source}")

    def solve_in_buckets(
        self, problems: Sequence[Problem], checked: bool = False
    ) -> Iterator[tuple[list[int], list[SinkhornResult | str]]]:
        """Yield ``(indices, outcomes)`` bucket by bucket, in order, as each batched solve
        finishes; on a CPU, buckets run side by side, one per core (:mod:`otcli.lanes`)."""
        shapes = [(p.x.n, p.y.n) for p in problems]
        buckets = plan_buckets(
            shapes, max_entries=self.max_entries, max_batch=self.config.max_batch
        )
        lanes = 1 if self.exact else lane_count(self.config, shapes, buckets)
        engine = self if lanes == 1 else replace(self, config=replace(self.config, threads=1))
        stop = Serialized() if lanes > 1 else None  # a lane stops at a check when given up

        def job(idx: list[int]) -> Callable[[], list[SinkhornResult | str]]:
            return lambda: engine.solve([problems[k] for k in idx], checked, stop)

        yield from zip(buckets, in_lanes([job(idx) for idx in buckets], lanes), strict=True)


class CloudLoader:
    """Reads clouds on a thread pool, each path once, ahead of the solver.

    ``prefetch`` submits reads; ``get`` waits for one and returns the cloud or the one-line
    message saying why it could not be read; ``release`` forgets paths no longer needed.
    """

    def __init__(self, pool: ThreadPoolExecutor, read: ReadOptions) -> None:
        self._pool = pool
        self._options = read
        self._futures: dict[str, Future[Cloud]] = {}

    def _read(self, path: str) -> Cloud:
        from otcli.io import read_cloud

        o = self._options
        return read_cloud(
            path, columns=o.columns, weights=o.weights, exclude=o.exclude, id_column=o.id_column
        )

    def prefetch(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in self._futures:
                self._futures[path] = self._pool.submit(self._read, path)

    def get(self, path: str) -> Cloud | str:
        self.prefetch([path])
        try:
            return self._futures[path].result()
        except Exception as exc:  # a reader bug must not stop the run: report it on the row
            if isinstance(exc, OtcliError):
                return " ".join(str(exc).splitlines())
            detail = " ".join(str(exc).split())
            return f"{path}: cannot read the file ({type(exc).__name__}: {detail})"

    def release(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._futures.pop(path, None)


def divergence_value(xy: SinkhornResult, xx: SinkhornResult, yy: SinkhornResult) -> float:
    """S = OT_ε(a,b) − ½ OT_ε(a,a) − ½ OT_ε(b,b) from the three problems' objectives."""
    from otcli.result import DivergenceResult

    return DivergenceResult(xy=xy, xx=xx, yy=yy).divergence


@dataclass
class RunSummary:
    """What a batch or pairwise run did: counts and time, for the summary table."""

    total: int
    ok: int = 0
    failed: int = 0
    not_converged: int = 0
    skipped: int = 0
    seconds: float = 0.0
    out: str = ""
    first_error: str | None = None
    row_columns: bool = True  # OUT has status, error, converged columns (not a bare matrix)

    @classmethod
    def of_rows(
        cls, rows: Sequence[dict[str, Any]], skipped: int, seconds: float, out: str, **kw: Any
    ) -> RunSummary:
        """The summary of a run's final rows (``skipped``: done by an earlier run)."""
        s = cls(total=len(rows), skipped=skipped, seconds=seconds, out=out, **kw)
        for r in rows:
            if r.get("status") == "ok":
                s.ok += 1
                s.not_converged += not r.get("converged", True)
            else:
                s.failed += 1
                s.first_error = s.first_error or r.get("error")
        return s

    @property
    def pairs_per_second(self) -> float:
        done = self.total - self.skipped
        return done / self.seconds if self.seconds > 0 else math.inf


ProgressHook = Callable[[int, int], None]
"""Called with (pairs just finished, of which failed) as rows are recorded."""


class FailFast(SolverError):
    """``--fail-fast`` stopped the run at a failed pair (its message is the error text)."""

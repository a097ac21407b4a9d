"""Solving pairs in this process: the part of a batch or pairwise run that a worker runs too.

:class:`BatchRun` scores a batch's pairs window by window (clouds read ahead, self terms,
buckets, rows, couplings) into a journal-like sink; :func:`solve_pairs` solves pairs of a
list of clouds for ``pairwise``. The runs (:mod:`otcli.batch.run`,
:mod:`otcli.batch.pairwise`) call these in-process or hand shards to a backend
(:mod:`otcli.batch.cluster`), whose workers call them too (:mod:`otcli.batch.shards`):
backends import this module, never the runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import (
    CloudLoader,
    Engine,
    FailFast,
    Problem,
    ProgressHook,
    divergence_value,
    failure_message,
)
from otcli.batch.journal import error_row, ok_row
from otcli.config import ReadOptions

if TYPE_CHECKING:
    from otcli.batch.manifest import PairSpec
    from otcli.cloud import Cloud
    from otcli.io.tables import Journal
    from otcli.result import SinkhornResult

# Pairs loaded and bucketed together; the next window loads while this one is solved.
WINDOW_PAIRS = 2048


@dataclass
class BatchRun:
    """One ``otdist batch`` run: the manifest's pairs, the output, the journal, the engine."""

    pairs: list[PairSpec]
    out: Path
    engine: Engine
    read: ReadOptions
    divergence: bool = False
    workers: int = 4
    coupling_dir: Path | None = None
    coupling_format: str = "npy"
    fail_fast: bool = False
    progress: ProgressHook | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    journal: Journal | None = None
    _self_terms: dict[tuple[str, float], SinkhornResult | str] = field(default_factory=dict)

    def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Journal a group of finished rows (fsynced), then count them."""
        failed = [r for r in rows if r["status"] != "ok"]
        if self.fail_fast and failed:
            good = [r for r in rows if r["status"] == "ok"]
            self.journal.append(good)  # type: ignore[union-attr]
            raise FailFast(failed[0]["error"])
        self.journal.append(rows)  # type: ignore[union-attr]
        for r in rows:
            self.rows[str(r["id"])] = r
        if self.progress is not None:
            self.progress(len(rows), len(failed))

    def score_rest(
        self, progress: Callable[[int, int], ProgressHook] | None, backend: Any = None
    ) -> int:
        """Score every pair not already ok in :attr:`rows` (an earlier run's), here or on
        ``backend``'s cluster, then close the journal; returns how many were done before."""
        todo = [p for p in self.pairs if self.rows.get(p.key, {}).get("status") != "ok"]
        done = len(self.pairs) - len(todo)
        if progress is not None:
            self.progress = progress(len(self.pairs), done)
        try:
            if backend is None:
                self.run(todo)
            else:
                backend.run_batch(self, todo)
        finally:
            self.journal.close()  # type: ignore[union-attr]
        return done

    def eps_of(self, pair: PairSpec) -> float | None:
        """The row's ε, else the config's absolute one (``None``: relative, per pair)."""
        return self.engine.config.eps if pair.eps is None else pair.eps

    def run(self, todo: Sequence[PairSpec]) -> None:
        """Score ``todo`` window by window, loading the next window while solving this one."""
        windows = [list(todo[k : k + WINDOW_PAIRS]) for k in range(0, len(todo), WINDOW_PAIRS)]
        last_use = {}
        for w, window in enumerate(windows):
            for pair in window:
                last_use[pair.path_a] = last_use[pair.path_b] = w
        with ThreadPoolExecutor(self.workers, thread_name_prefix="otdist-io") as pool:
            loader = CloudLoader(pool, self.read)
            try:
                for w, window in enumerate(windows):
                    loader.prefetch(p for pair in window for p in (pair.path_a, pair.path_b))
                    if w + 1 < len(windows):
                        loader.prefetch(
                            p for pair in windows[w + 1] for p in (pair.path_a, pair.path_b)
                        )
                    self._run_window(window, loader, pool)
                    loader.release(p for p, last in last_use.items() if last == w)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _run_window(
        self, window: Sequence[PairSpec], loader: CloudLoader, pool: ThreadPoolExecutor
    ) -> None:
        problems: list[Problem] = []
        owners: list[PairSpec] = []
        bad: list[dict[str, Any]] = []
        for pair in window:
            problem = self._problem(pair, loader)
            if isinstance(problem, dict):
                bad.append(problem)
            else:
                problems.append(problem)
                owners.append(pair)
        if bad:
            self.record(bad)
        if self.divergence:
            self._solve_self_terms(problems)
        for idx, outcomes in self.engine.solve_in_buckets(problems, checked=True):
            rows = [
                self._row(owners[k], problems[k], out, len(idx))
                for k, out in zip(idx, outcomes, strict=True)
            ]
            self._write_couplings(rows, outcomes, pool)
            self.record(rows)

    def _problem(self, pair: PairSpec, loader: CloudLoader) -> Problem | dict[str, Any]:
        """The pair's problem, or its error row (unreadable file, bad ε, dimension, cost)."""
        if pair.eps_error is not None:
            return error_row(pair, pair.eps_error, None)
        eps = self.eps_of(pair)
        x, y = loader.get(pair.path_a), loader.get(pair.path_b)
        for c in (x, y):
            if isinstance(c, str):
                return error_row(pair, c, eps)
        try:
            self.engine.check_pair(x, y)  # type: ignore[arg-type]
            if eps is None:  # relative ε: resolved on the pair, so its self terms share it
                eps = self.engine.pair_eps(x, y)  # type: ignore[arg-type]
        except Exception as exc:  # whatever this pair raises fails this pair only
            message = failure_message(exc, f"{pair.path_a} vs {pair.path_b}")
            return error_row(pair, message, eps, x.n, y.n)  # type: ignore[union-attr]
        return Problem(x, y, eps)

    def _solve_self_terms(self, problems: Sequence[Problem]) -> None:
        """OT_ε(a, a) for every cloud not seen yet: once per (file, ε), not once per pair."""
        need: dict[tuple[str, float], Problem] = {}
        for p in problems:
            for c in (p.x, p.y):
                key = (c.source, p.eps)
                if key not in self._self_terms:
                    need[key] = Problem(c, c, p.eps)
        keys = list(need)
        for idx, outcomes in self.engine.solve_in_buckets([need[k] for k in keys]):
            for k, out in zip(idx, outcomes, strict=True):
                self._self_terms[keys[k]] = out

    def _row(
        self, pair: PairSpec, problem: Problem, out: SinkhornResult | str, bucket: int
    ) -> dict[str, Any]:
        if isinstance(out, str):
            return error_row(pair, out, problem.eps, problem.x.n, problem.y.n)
        seconds = out.seconds / bucket
        if not self.divergence:
            return ok_row(pair, out, seconds)
        xx = self._self_terms[(problem.x.source, problem.eps)]
        yy = self._self_terms[(problem.y.source, problem.eps)]
        for term in (xx, yy):
            if isinstance(term, str):
                return error_row(pair, term, problem.eps, problem.x.n, problem.y.n)
        converged = out.converged and xx.converged and yy.converged  # type: ignore[union-attr]
        div = divergence_value(out, xx, yy)  # type: ignore[arg-type]
        return ok_row(pair, out, seconds, div, converged)

    def _write_couplings(
        self, rows: list[dict[str, Any]], outcomes: list[Any], pool: ThreadPoolExecutor
    ) -> None:
        """Each ok pair's coupling to ``DIR/<id>.<format>``, on the pool, before journaling:
        a row in the journal means its coupling file is complete."""
        if self.coupling_dir is None:
            return
        from otcli.export import write_matrices

        memory = self.engine.config.memory
        jobs = [
            (r, pool.submit(write_matrices, res, coupling=self.coupling_file(r["id"]),
                            memory=memory))
            for r, res in zip(rows, outcomes, strict=True)
            if r["status"] == "ok"
        ]  # fmt: skip
        for r, job in jobs:
            try:
                job.result()
            except Exception as exc:  # a coupling that cannot be written fails its row
                r.update(
                    status="error", error=failure_message(exc, str(self.coupling_file(r["id"])))
                )

    def coupling_file(self, pair_id: int | str) -> Path:
        return self.coupling_dir / f"{pair_id}.{self.coupling_format}"  # type: ignore[operator]


def solve_pairs(
    clouds: Sequence[Cloud | str],
    engine: Engine,
    eps: float | None,
    hook: ProgressHook | None,
    pairs: Sequence[tuple[int, int]] | None = None,
    self_terms: bool = False,
) -> tuple[dict[tuple[int, ...], SinkhornResult | str], dict[tuple[int, int], float]]:
    """Outcome of every pair i ≤ j, or of ``pairs`` only (solved in buckets, or the reason it
    could not be) and each solved pair's share of its bucket's seconds.

    ``self_terms`` (a divergence at a relative ε, ``eps`` None): each pair i < j is solved at
    its own ε = eps_rel × its mean cost, and so are its two self terms OT_ε(a, a) and
    OT_ε(b, b), under the keys (i, j, 0) and (i, j, 1): the diagonal's own ε is not the
    pair's."""
    outcomes: dict[tuple[int, ...], SinkhornResult | str] = {}
    shares: dict[tuple[int, int], float] = {}
    problems: list[Problem] = []
    keys: list[tuple[int, ...]] = []
    failed_now = 0
    n = len(clouds)
    if pairs is None:
        pairs = [(i, j) for i in range(n) for j in range(i, n)]
    for i, j in pairs:
        ci, cj = clouds[i], clouds[j]
        reason = ci if isinstance(ci, str) else cj if isinstance(cj, str) else None
        pair_eps = eps
        if reason is None:
            try:
                engine.check_pair(ci, cj)  # type: ignore[arg-type]
                if self_terms and i != j:
                    pair_eps = engine.pair_eps(ci, cj)  # type: ignore[arg-type]
            except Exception as exc:  # whatever this pair raises fails this pair only
                reason = failure_message(exc, f"{ci.source} vs {cj.source}")  # type: ignore[union-attr]
        if reason is not None:
            outcomes[(i, j)] = reason
            failed_now += 1
            continue
        keys.append((i, j))
        problems.append(Problem(ci, cj, pair_eps))  # type: ignore[arg-type]
        if self_terms and i != j:
            keys += [(i, j, 0), (i, j, 1)]
            problems += [Problem(ci, ci, pair_eps), Problem(cj, cj, pair_eps)]  # type: ignore[arg-type]
    if hook is not None and failed_now:
        hook(failed_now, failed_now)
    for idx, outs in engine.solve_in_buckets(problems, checked=True):
        done = failed = 0
        for k, o in zip(idx, outs, strict=True):
            outcomes[keys[k]] = o
            if len(keys[k]) == 2:  # a pair (self terms are counted with theirs)
                shares[keys[k]] = 0.0 if isinstance(o, str) else o.seconds / len(idx)  # type: ignore[index]
                done, failed = done + 1, failed + isinstance(o, str)
        if hook is not None and done:
            hook(done, failed)
    return outcomes, shares

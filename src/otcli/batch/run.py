"""``otdist batch``: every pair of a manifest scored into one table, resumable.

The run reads the manifest, opens (or resumes) the journal, loads clouds a window ahead of the
solver, solves bucket by bucket through the :class:`~otcli.batch.engine.Engine` and journals
each bucket's rows. Once every pair is done, OUT is rendered from the journal through a
temporary file and a rename, then the journal is removed: OUT is always either absent, the
previous file, or complete and valid.
"""

from __future__ import annotations

import math
import os
import time
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
    RunSummary,
    check_workers,
    divergence_value,
    failure_message,
)
from otcli.batch.journal import (
    JOURNAL_SUFFIX,
    ROW_FIELDS,
    error_row,
    journal_path,
    ok_row,
    prepare_output,
    run_fingerprint,
)
from otcli.batch.manifest import PairSpec, check_coupling_dir, read_manifest
from otcli.config import ReadOptions, SolveConfig
from otcli.io import check_output_path
from otcli.io.tables import SETTINGS_SUFFIX, settings_path, write_rows
from otcli.io.writers import check_name_length, check_new_output, file_identities

if TYPE_CHECKING:
    from otcli.batch.cluster import DaskBackend
    from otcli.io.tables import Journal
    from otcli.result import SinkhornResult

#: Output formats of ``otdist batch``, by extension.
BATCH_SUFFIXES = (".parquet", ".csv", ".jsonl")

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


def run_batch(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: SolveConfig,
    *,
    read: ReadOptions | None = None,
    divergence: bool = False,
    workers: int = 4,
    resume: bool = False,
    overwrite: bool = False,
    fail_fast: bool = False,
    coupling_dir: str | os.PathLike[str] | None = None,
    coupling_format: str = "npy",
    progress: Callable[[int, int], ProgressHook] | None = None,
    backend: DaskBackend | None = None,
) -> RunSummary:
    """Score every pair of ``manifest`` into ``out`` (.parquet, .csv, .jsonl); resumable.

    ``progress(total, already_done)`` may return a hook called as rows finish. Raises
    :class:`~otcli.errors.OtcliError` for a bad manifest or options (before any work) and
    :class:`FailFast` when ``fail_fast`` meets a failed pair (the journal keeps the good rows,
    so ``resume`` continues). Failed pairs are otherwise rows with ``status`` ``error``; a
    resumed run tries them again. With a ``backend`` (a :class:`~otcli.batch.cluster.DaskBackend`)
    the pairs are solved on its cluster, which it connects to before any file is written.
    """
    start = time.perf_counter()
    read = ReadOptions() if read is None else read
    check_workers(workers)
    out_path = check_output_path(out, "-o", BATCH_SUFFIXES)
    check_name_length(out_path, "-o", (JOURNAL_SUFFIX, SETTINGS_SUFFIX))
    pairs = read_manifest(manifest)
    inputs = file_identities([manifest, *{p for q in pairs for p in (q.path_a, q.path_b)}])
    for path in (out_path, journal_path(out_path), settings_path(out_path)):
        check_new_output(path, "-o", overwrite=True, inputs=inputs)  # never over an input
    engine = Engine.create(config)
    cdir = None
    if coupling_dir is not None:
        cdir = check_coupling_dir(
            coupling_dir, pairs, coupling_format, replace=overwrite or resume, inputs=inputs
        )
    fingerprint = run_fingerprint(config, read, divergence)
    if backend is not None:
        backend.connect(config)
    journal, previous = prepare_output(out_path, fingerprint, resume=resume, overwrite=overwrite)
    run = BatchRun(
        pairs, out_path, engine, read, divergence, workers, cdir, coupling_format, fail_fast,
        journal=journal,
    )  # fmt: skip
    by_key = {p.key: p for p in pairs}
    for r in previous:
        pair = by_key.get(str(r.get("id")))
        if pair is not None and _still_valid(r, pair, config):
            run.rows[pair.key] = r
    todo = [p for p in pairs if run.rows.get(p.key, {}).get("status") != "ok"]
    done = len(pairs) - len(todo)
    if progress is not None:
        run.progress = progress(len(pairs), done)
    try:
        if backend is None:
            run.run(todo)
        else:
            backend.run_batch(run, todo)
    finally:
        journal.close()
    fields = [f for f in ROW_FIELDS if divergence or f != "divergence"]
    final = [_with_manifest_id(run.rows[p.key], p) for p in pairs]
    write_rows(out_path, final, fields, settings=fingerprint)
    journal.path.unlink(missing_ok=True)
    return _summary(final, len(pairs), done, time.perf_counter() - start, str(out_path))


def _still_valid(row: dict[str, Any], pair: PairSpec, config: SolveConfig) -> bool:
    """Whether a previous row (journal or output) still answers the manifest's pair of that
    id: same ``a`` and ``b``, and for a solved pair the same absolute ε. A row that does not
    is solved again, never kept under an id it no longer belongs to."""
    if pair.eps_error is not None or (row.get("a"), row.get("b")) != (pair.a, pair.b):
        return False
    want = config.eps if pair.eps is None else pair.eps
    if row.get("status") != "ok" or want is None:  # relative ε: in the fingerprint
        return True
    got = row.get("eps")
    return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-12)


def _with_manifest_id(row: dict[str, Any], pair: PairSpec) -> dict[str, Any]:
    """A row with the manifest's id, a and b (a journal or CSV may have changed their types)."""
    return {**row, "id": pair.id, "a": pair.a, "b": pair.b}


def _summary(
    rows: Sequence[dict[str, Any]], total: int, skipped: int, seconds: float, out: str
) -> RunSummary:
    s = RunSummary(total=total, skipped=skipped, seconds=seconds, out=out)
    for r in rows:
        if r.get("status") == "ok":
            s.ok += 1
            s.not_converged += not r.get("converged", True)
        else:
            s.failed += 1
            s.first_error = s.first_error or r.get("error")
    return s

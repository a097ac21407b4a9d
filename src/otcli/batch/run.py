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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import (
    Engine,
    ProgressHook,
    RunSummary,
    check_exact,
    check_workers,
)
from otcli.batch.journal import (
    JOURNAL_SUFFIX,
    ROW_FIELDS,
    check_output,
    journal_path,
    run_fingerprint,
)
from otcli.batch.lock import output_lock
from otcli.batch.manifest import PairSpec, check_coupling_dir, read_manifest
from otcli.batch.solving import BatchRun
from otcli.config import ReadOptions, SolveConfig
from otcli.io import check_output_path
from otcli.io.tables import SETTINGS_SUFFIX, settings_path, write_rows
from otcli.io.writers import (
    check_name_length,
    check_new_output,
    file_identities,
    remove_leftover_temps,
)

if TYPE_CHECKING:
    from otcli.batch.cluster import DaskBackend


#: Output formats of ``otdist batch``, by extension.
BATCH_SUFFIXES = (".parquet", ".csv", ".jsonl")


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
    exact: bool = False,
) -> RunSummary:
    """Score every pair of ``manifest`` into ``out`` (.parquet, .csv, .jsonl); resumable.

    ``exact``: each pair's unregularised optimum (:mod:`otcli.exact`) instead of Sinkhorn.

    ``progress(total, already_done)`` may return a hook called as rows finish. Raises
    :class:`~otcli.errors.OtcliError` for a bad manifest or options (before any work) and
    :class:`FailFast` when ``fail_fast`` meets a failed pair (the journal keeps the good rows,
    so ``resume`` continues). Failed pairs are otherwise rows with ``status`` ``error``; a
    resumed run tries them again. With a ``backend`` (a :class:`~otcli.batch.cluster.DaskBackend`)
    the pairs are solved on its cluster, which it connects to after every check of the outputs
    and before any file is written.
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
    check_exact(exact, divergence=divergence, backend=backend)
    engine = Engine.create(config, exact)
    cdir = None
    if coupling_dir is not None:
        own = [("-o", p) for p in (out_path, journal_path(out_path), settings_path(out_path))]
        cdir = check_coupling_dir(
            coupling_dir, pairs, coupling_format, replace=overwrite or resume, inputs=inputs,
            others=own,
        )  # fmt: skip
    fingerprint = run_fingerprint(config, read, divergence, exact)
    with output_lock(out_path):  # one run per OUT: a second is refused at once
        # What a killed run (kill -9) left: no other run writes these while OUT is locked.
        remove_leftover_temps(
            [out_path, settings_path(out_path)]
            + ([] if cdir is None else [cdir / f"{p.id}.{coupling_format}" for p in pairs])
        )
        plan = check_output(out_path, fingerprint, resume=resume, overwrite=overwrite)
        if backend is not None:  # after every check of the outputs, before the first write
            backend.connect(config, [p for q in pairs for p in (q.path_a, q.path_b)])
        journal, previous = plan.open(), plan.rows
        run = BatchRun(
            pairs, out_path, engine, read, divergence, workers, cdir, coupling_format, fail_fast,
            journal=journal,
        )  # fmt: skip
        by_key = {p.key: p for p in pairs}
        for r in previous:
            pair = by_key.get(str(r.get("id")))
            if pair is not None and _still_valid(r, pair, config, exact):
                run.rows[pair.key] = r
        done = run.score_rest(progress, backend)
        fields = [f for f in ROW_FIELDS if divergence or f != "divergence"]
        final = [_with_manifest_id(run.rows[p.key], p) for p in pairs]
        write_rows(out_path, final, fields, settings=fingerprint)
        journal.path.unlink(missing_ok=True)
        return RunSummary.of_rows(final, done, time.perf_counter() - start, str(out_path))


def _still_valid(
    row: dict[str, Any], pair: PairSpec, config: SolveConfig, exact: bool = False
) -> bool:
    """Whether a previous row (journal or output) still answers the manifest's pair of that
    id: same ``a`` and ``b``, and for a solved pair the same absolute ε. A row that does not
    is solved again, never kept under an id it no longer belongs to."""
    if pair.eps_error is not None or (row.get("a"), row.get("b")) != (pair.a, pair.b):
        return False
    want = 0.0 if exact else config.eps if pair.eps is None else pair.eps
    if row.get("status") != "ok" or want is None:  # relative ε: in the fingerprint
        return True
    got = row.get("eps")
    return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-12)


def _with_manifest_id(row: dict[str, Any], pair: PairSpec) -> dict[str, Any]:
    """A row with the manifest's id, a and b (a journal or CSV may have changed their types)."""
    return {**row, "id": pair.id, "a": pair.a, "b": pair.b}

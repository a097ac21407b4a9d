"""``otdist pairwise A... --against B...``: the rectangular |A|×|B| matrix, resumable.

The workload of comparing generated clouds with reference ones: every file of A against
every file of B, each pair solved once. The pairs are the rows of a batch run
(:class:`~otcli.batch.solving.BatchRun`): the same windows read ahead, buckets, self terms
(one per file and ε, for ``divergence``), journal, lock and backend as ``otdist batch``, so a
killed run continues with ``resume``. OUT is rendered from the rows at the end: ``.npy`` the
|A|×|B| float64 matrix, ``.csv`` the same with A's files as row labels and B's as column
labels, ``.parquet`` the long table (i into A, j into B, status and error per pair) that
records its options, so a finished one can be extended by ``resume`` with longer lists.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from otcli.batch.engine import Engine, ProgressHook, RunSummary, check_exact, check_workers
from otcli.batch.journal import JOURNAL_SUFFIX, check_output, journal_path, run_fingerprint
from otcli.batch.lock import output_lock
from otcli.batch.manifest import PairSpec
from otcli.batch.solving import BatchRun
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import InputError, OptionError
from otcli.io import check_output_path
from otcli.io.tables import SETTINGS_SUFFIX, settings_path, write_long, write_matrix
from otcli.io.writers import (
    check_name_length,
    check_new_output,
    file_identities,
    remove_leftover_temps,
)

if TYPE_CHECKING:
    from otcli.batch.cluster import DaskBackend

#: Output formats, by extension (as for the square matrix).
CROSS_SUFFIXES = (".npy", ".csv", ".parquet")


def run_cross(
    a_files: Sequence[str],
    b_files: Sequence[str],
    out: str | os.PathLike[str],
    config: SolveConfig,
    *,
    read: ReadOptions | None = None,
    divergence: bool = False,
    workers: int = 4,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], ProgressHook] | None = None,
    backend: DaskBackend | None = None,
    exact: bool = False,
    lists: Sequence[str | os.PathLike[str]] = (),
) -> RunSummary:
    """Solve every pair (a, b) of ``a_files`` × ``b_files`` once and write the |A|×|B| matrix
    or long table to ``out``; resumable like :func:`~otcli.batch.run_batch`.

    Entry (i, j) is OT_ε(a_i, b_j)'s cost, or the debiased divergence with ``divergence``
    (each file's self term solved once per ε). A file in both lists is read once; its
    entry against itself is its entropic self-cost (not 0). Raises
    :class:`~otcli.errors.OtcliError` for bad options, a file that does not exist, or an
    existing ``out`` (unless ``overwrite`` or ``resume``; an input file or one of the
    ``lists`` the files were read from never); unreadable files and failed solves become
    NaN entries and error rows.
    """
    start = time.perf_counter()
    read = ReadOptions() if read is None else read
    check_workers(workers)
    out_path = check_output_path(out, "-o", CROSS_SUFFIXES)
    check_name_length(out_path, "-o", (JOURNAL_SUFFIX, SETTINGS_SUFFIX))
    if not a_files:
        raise OptionError("FILE", "no files to compare; give at least one before --against")
    if not b_files:
        raise OptionError("--against", "no files to compare against; give at least one")
    missing = [f for f in (*a_files, *b_files) if not os.path.exists(f)]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise InputError(missing[0], f"no such file; check the path{more}")
    inputs = file_identities([*a_files, *b_files, *lists])
    for path in (out_path, journal_path(out_path), settings_path(out_path)):
        check_new_output(path, "-o", overwrite=True, inputs=inputs)  # never over an input
    matrix = out_path.suffix.lower() != ".parquet"
    if matrix and out_path.exists() and not journal_path(out_path).exists() and not overwrite:
        if resume:
            raise OptionError(
                "--resume",
                f"{str(out_path)!r} is a finished matrix, which keeps no per-pair record to "
                "extend: start again with --overwrite (a .parquet output can be resumed)",
            )
        check_new_output(out_path, "-o", overwrite=False)
    check_exact(exact, divergence=divergence, backend=backend)
    engine = Engine.create(config, exact)
    nb = len(b_files)
    pairs = [
        PairSpec(id=str(i * nb + j), a=a, b=b, path_a=a, path_b=b, eps=None)
        for i, a in enumerate(a_files)
        for j, b in enumerate(b_files)
    ]
    fingerprint = {**run_fingerprint(config, read, divergence, exact), "against": True}
    with output_lock(out_path):  # one run per OUT: a second is refused at once
        remove_leftover_temps([out_path])  # what a killed run left: no other run writes it
        plan = check_output(out_path, fingerprint, resume=resume, overwrite=overwrite)
        if backend is not None:  # after every check of the outputs, before the first write
            backend.connect(config, [*a_files, *b_files])
        journal, previous = plan.open(), plan.rows
        run = BatchRun(pairs, out_path, engine, read, divergence, workers, journal=journal)
        _take_previous(run, previous, 0.0 if exact else config.eps)
        done = run.score_rest(progress, backend)
        final = [_long_row(run.rows[p.key], int(p.id) // nb, int(p.id) % nb) for p in pairs]
        if not matrix:
            write_long(out_path, final, divergence, settings=fingerprint)
        else:
            value = "divergence" if divergence else "cost"
            mat = np.full((len(a_files), nb), np.nan)
            for r in final:
                if r["status"] == "ok":
                    mat[r["i"], r["j"]] = r[value]
            write_matrix(out_path, mat, a_files, b_files)
        journal.path.unlink(missing_ok=True)
        return RunSummary.of_rows(
            final, done, time.perf_counter() - start, str(out_path),
            row_columns=not matrix,
        )  # fmt: skip


def _take_previous(run: BatchRun, previous: Sequence[dict[str, Any]], eps: float | None) -> None:
    """Keep the previous run's solved rows (journal or long table) for the pairs of the same
    two files at the same ε, matched by their paths, not their place: the lists may have
    grown or been reordered since."""
    by_files: dict[tuple[str, str], list[PairSpec]] = {}
    for p in run.pairs:
        by_files.setdefault((p.a, p.b), []).append(p)
    for r in previous:
        if r.get("status") != "ok":
            continue  # a failed pair is tried again
        got = r.get("eps")
        if eps is not None and not (
            isinstance(got, (int, float)) and math.isclose(got, eps, rel_tol=1e-12)
        ):
            continue
        for p in by_files.get((r.get("a"), r.get("b")), ()):  # type: ignore[arg-type]
            run.rows[p.key] = {**r, "id": p.id}


def _long_row(row: dict[str, Any], i: int, j: int) -> dict[str, Any]:
    """A batch row as a long-table row: the pair's place (i into A, j into B) for its id."""
    return {**{k: v for k, v in row.items() if k != "id"}, "i": i, "j": j}

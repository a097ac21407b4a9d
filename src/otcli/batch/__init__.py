"""Many pairs in one run: ``otdist batch`` (a manifest of pairs) and ``otdist pairwise``.

- :mod:`~otcli.batch.engine`: problems → buckets → batched solves (one bad pair apart), and
  the thread pool that reads clouds ahead of the solver;
- :mod:`~otcli.batch.manifest`: the manifest's pairs (paths, ids, per-row ε);
- :mod:`~otcli.batch.journal`: result rows, the journal and the resume rules;
- :mod:`~otcli.batch.solving`: solving pairs in this process (a batch's windows, pairwise's
  pairs), what the runs and a backend's workers both call;
- :mod:`~otcli.batch.run`: the ``batch`` run itself; :mod:`~otcli.batch.pairwise`: every
  unordered pair of N clouds;
- :mod:`~otcli.batch.cluster` and :mod:`~otcli.batch.shards`: the Dask backend, its client
  and its workers' tasks. The runs call the backend; the backend never imports the runs.

Everything a user can get wrong in the manifest or the options raises
:class:`~otcli.errors.OtcliError` before any solve; everything wrong with one pair becomes that
pair's row, with the message a single-pair run would print.
"""

from __future__ import annotations

from otcli.batch.engine import (
    CloudLoader,
    Engine,
    FailFast,
    Problem,
    ProgressHook,
    RunSummary,
    check_workers,
    divergence_value,
)
from otcli.batch.journal import (
    JOURNAL_SUFFIX,
    ROW_FIELDS,
    error_row,
    journal_path,
    ok_row,
    run_fingerprint,
)
from otcli.batch.manifest import PairSpec, read_manifest
from otcli.batch.run import BATCH_SUFFIXES, run_batch
from otcli.batch.solving import WINDOW_PAIRS
from otcli.buckets import plan_buckets

__all__ = [
    "BATCH_SUFFIXES",
    "JOURNAL_SUFFIX",
    "ROW_FIELDS",
    "WINDOW_PAIRS",
    "CloudLoader",
    "Engine",
    "FailFast",
    "PairSpec",
    "Problem",
    "ProgressHook",
    "RunSummary",
    "check_workers",
    "divergence_value",
    "error_row",
    "journal_path",
    "ok_row",
    "plan_buckets",
    "read_manifest",
    "run_batch",
    "run_fingerprint",
]

"""Many pairs in one run: ``otdist batch`` (a manifest of pairs) and ``otdist pairwise``.

- :mod:`~otcli.batch.engine`: problems → buckets → batched solves (one bad pair apart), and
  the thread pool that reads clouds ahead of the solver;
- :mod:`~otcli.batch.manifest`: the manifest's pairs (paths, ids, per-row ε);
- :mod:`~otcli.batch.journal`: result rows, the journal and the resume rules;
- :mod:`~otcli.batch.run`: the ``batch`` run itself; :mod:`~otcli.batch.pairwise`: every
  unordered pair of N clouds.

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
from otcli.batch.run import BATCH_SUFFIXES, WINDOW_PAIRS, run_batch
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

"""The rows of ``otdist batch`` and the journal that makes a run resumable.

Rows go to ``OUT.journal.jsonl`` (one JSON object per line, flushed and fsynced after every
bucket). The journal is the source of truth while running: ``--resume`` reads it (a torn last
line from a ``kill -9`` is dropped), skips the ids already scored and goes on, and refuses a
journal written with other options that change the numbers (:func:`run_fingerprint`). A
finished OUT records the same fingerprint (:func:`~otcli.io.tables.read_output_settings`), so
``--resume`` from it (journal gone) is refused just the same when the options changed, or
when it cannot tell which options wrote it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.config import ReadOptions, SolveConfig
from otcli.errors import OptionError
from otcli.io.tables import Journal, read_output_settings, read_rows

if TYPE_CHECKING:
    from otcli.batch.manifest import PairSpec
    from otcli.result import SinkhornResult

JOURNAL_SUFFIX = ".journal.jsonl"
JOURNAL_VERSION = 1


def run_fingerprint(
    config: SolveConfig, read: ReadOptions, divergence: bool, exact: bool = False
) -> dict[str, Any]:
    """The options that change a run's numbers: a resumed run must use the same ones.
    (``exact`` only where set: journals of earlier Sinkhorn runs still resume.)"""
    extra = {"exact": True} if exact else {}
    return {**config.fingerprint(), "divergence": divergence, **extra, **read.fingerprint()}


#: Fingerprint keys as the options that set them, in the order a difference is reported
#: (``dtype`` before ``tol``: the default tolerance follows the dtype).
_OPTIONS = {
    "eps": "--eps", "eps_rel": "--eps-rel", "cost": "--cost", "p": "--p", "dtype": "--dtype",
    "tol": "--tol", "max_iter": "--max-iter", "scaling": "--scaling",
    "divergence": "--divergence", "exact": "--exact", "columns": "--columns",
    "weights": "--weights",
}  # fmt: skip


def _setting(key: str, value: Any) -> str:
    """One fingerprint entry as the command line would give it."""
    option = _OPTIONS.get(key, key)
    if key in ("divergence", "exact"):
        return option if value else f"no {option}"
    if key == "scaling" and value is None:
        return "--no-scaling"
    if value is None:
        return f"no {option}"
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"{option} {value}"


def check_same_settings(old: Any, new: dict[str, Any], where: str) -> None:
    """Refuse to resume ``where`` (a journal or finished output) written with ``old``
    settings when they differ from ``new``: exit 2, naming the first option that differs."""
    if old == new:
        return
    old = old if isinstance(old, dict) else {}
    keys = [k for k in _OPTIONS if k in new] + [k for k in new if k not in _OPTIONS]
    key = next((k for k in keys if old.get(k) != new[k]), None)
    if key is None:
        return
    was = _setting(key, old.get(key)) if key in old else f"no record of {_OPTIONS.get(key, key)}"
    raise OptionError(
        "--resume",
        f"{where!r} was written with {was}, not {_setting(key, new[key])}; resume with the "
        "same options, or start again with --overwrite",
    )


#: Output columns, in order (``divergence`` only with ``--divergence``).
ROW_FIELDS = (
    "id", "a", "b", "n", "m", "eps", "cost", "objective", "divergence", "iterations",
    "converged", "marginal_error", "status", "error", "seconds",
)  # fmt: skip


def ok_row(
    pair: PairSpec,
    res: SinkhornResult,
    seconds: float,
    divergence: float | None = None,
    converged: bool | None = None,
) -> dict[str, Any]:
    """The row of a solved pair."""
    row = {
        "id": pair.id, "a": pair.a, "b": pair.b, "n": res.n, "m": res.m, "eps": res.eps,
        "cost": res.cost, "objective": res.objective, "divergence": divergence,
        "iterations": res.iterations,
        "converged": res.converged if converged is None else converged,
        "marginal_error": res.marginal_error, "status": "ok", "error": None,
        "seconds": seconds,
    }  # fmt: skip
    return row


def error_row(
    pair: PairSpec, message: str, eps: float | None, n: int | None = None, m: int | None = None
) -> dict[str, Any]:
    """The row of a pair that could not be scored: ``error`` holds the one-line reason."""
    row = dict.fromkeys(ROW_FIELDS)
    row.update(id=pair.id, a=pair.a, b=pair.b, n=n, m=m, eps=eps, status="error", error=message)
    return row


def journal_path(out: str | os.PathLike[str]) -> Path:
    """Where ``batch`` keeps its journal while writing ``out``."""
    return Path(os.fspath(out) + JOURNAL_SUFFIX)


@dataclass
class OutputPlan:
    """What :func:`check_output` found, before anything is written: the rows already done
    and how :meth:`open` starts the journal (a new one with ``header``, or the old one cut
    to ``keep_bytes``; ``carry``: the rows come from a finished OUT and go into it)."""

    journal: Journal
    rows: list[dict[str, Any]]
    header: dict[str, Any] | None
    keep_bytes: int = 0
    carry: bool = False

    def open(self) -> Journal:
        """Open the journal as planned; the first write of the run."""
        self.journal.open(self.header, self.keep_bytes)
        if self.carry:
            self.journal.append(self.rows)  # the journal is the one source of truth from here
        return self.journal


def check_output(
    out: Path, fingerprint: dict[str, Any], *, resume: bool, overwrite: bool
) -> OutputPlan:
    """Every check of OUT and its journal for a fresh or resumed run, writing nothing: an
    existing OUT or journal without ``resume``/``overwrite``, a journal or finished OUT
    written with other options. A run makes them all before it connects to a cluster or
    solves anything, then calls :meth:`OutputPlan.open`."""
    jpath = journal_path(out)
    journal = Journal(jpath)
    header = {"otcli_journal": JOURNAL_VERSION, "settings": fingerprint}
    if resume and overwrite:
        raise OptionError("--resume", "--resume and --overwrite contradict each other; pick one")
    if not resume:
        existing = [p for p in (out, jpath) if p.exists()]
        if existing and not overwrite:
            raise OptionError(
                "-o",
                f"{str(existing[0])!r} exists; use --resume to continue that run or "
                "--overwrite to start again",
            )
        return OutputPlan(journal, [], header)
    if jpath.exists():
        old_header, rows, keep = Journal.read(jpath)
        if keep and not old_header:
            raise OptionError(
                "--resume",
                f"{str(jpath)!r} does not start with an otdist journal header; it is damaged "
                "or not a journal: start again with --overwrite",
            )
        check_same_settings(old_header.get("settings"), fingerprint, str(jpath))
        if keep == 0:
            return OutputPlan(journal, rows, header)
        return OutputPlan(journal, rows, None, keep)
    rows = []
    if out.exists():
        settings, why = read_output_settings(out)
        if settings is None:
            raise OptionError(
                "--resume",
                f"cannot tell which options wrote {str(out)!r}: {why}; start again with "
                "--overwrite",
            )
        check_same_settings(settings, fingerprint, str(out))
        rows = read_rows(out)
    return OutputPlan(journal, rows, header, carry=True)

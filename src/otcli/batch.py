"""Many pairs in one run: manifest → load (thread pool) → bucket by size → batched solve → rows.

``otdist batch`` and ``otdist pairwise`` share one engine (:func:`solve_in_buckets`): problems
are sorted into buckets of similar size so padding wastes little, each bucket is one call to
:func:`otcli.api.solve_clouds` (one batched loop, each problem with its own convergence), and a
bucket whose solve fails is retried pair by pair, so one bad pair never poisons the others.

``batch`` streams rows into a journal (``OUT.journal.jsonl``: one JSON object per line, flushed
and fsynced after every bucket). The journal is the source of truth while running: ``--resume``
reads it (a torn last line from a ``kill -9`` is dropped), skips the ids already scored and
goes on. Once every pair is done, OUT is rendered from the journal through a temporary file
and a rename, then the journal is removed: OUT is always either absent, the previous file, or
complete and valid.

Everything a user can get wrong in the manifest or the options raises
:class:`~otcli.errors.OtcliError` before any solve; everything wrong with one pair becomes that
pair's row, with the message ``str(OtcliError)`` a single-pair run would print.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.buckets import DEFAULT_MAX_BATCH, bucket_entries, plan_buckets
from otcli.errors import InputError, OptionError, OtcliError

if TYPE_CHECKING:
    from otcli.cloud import Cloud
    from otcli.costs import CostFn
    from otcli.result import SinkhornResult

__all__ = [
    "BATCH_SUFFIXES",
    "Engine",
    "FailFast",
    "PairSpec",
    "Problem",
    "RunSummary",
    "SolveSettings",
    "check_out_path",
    "plan_buckets",
    "read_manifest",
    "run_batch",
]

#: Output formats of ``otdist batch``, by extension.
BATCH_SUFFIXES = (".parquet", ".csv", ".jsonl")
#: Manifest formats, by extension.
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")
JOURNAL_SUFFIX = ".journal.jsonl"
JOURNAL_VERSION = 1

# Pairs loaded and bucketed together; the next window loads while this one is solved.
WINDOW_PAIRS = 2048

_INT_ID = re.compile(r"-?(?:0|[1-9]\d{0,17})")  # canonical only: "007" stays text
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


# --------------------------------------------------------------------------------------------
# Settings shared by batch and pairwise
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolveSettings:
    """Solver and reader options for every pair of a run (the CLI's shared options).

    ``memory`` is the byte budget for a bucket's n×m buffers (``None``: half the free memory);
    ``max_batch`` caps the pairs per solve; ``workers`` is the loader's thread count.
    """

    eps: float = 0.1
    cost: str = "sqeuclidean"
    p: float | None = None
    max_iter: int = 1000
    tol: float | None = None
    scaling: float | None = 0.5
    device: str = "auto"
    dtype: str = "float32"
    divergence: bool = False
    columns: tuple[str, ...] | None = None
    weights: str | None = None
    memory: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    workers: int = 4

    def fingerprint(self) -> dict[str, Any]:
        """The options that change the numbers: a resumed run must use the same ones."""
        return {
            "eps": self.eps, "cost": self.cost, "p": self.p, "max_iter": self.max_iter,
            "tol": self.tol, "scaling": self.scaling, "dtype": self.dtype,
            "divergence": self.divergence,
            "columns": list(self.columns) if self.columns is not None else None,
            "weights": self.weights,
        }  # fmt: skip

    def check(self) -> None:
        """Refuse bad option values up front, naming the option."""
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise OptionError("--eps", f"ε must be a positive finite number, got {self.eps}")
        if self.max_batch < 1:
            raise OptionError("--max-batch", f"must be ≥ 1, got {self.max_batch}")
        if self.workers < 1:
            raise OptionError("--workers", f"must be ≥ 1, got {self.workers}")
        if self.p is not None and self.cost != "pnorm":
            raise OptionError("--p", f"--p applies to --cost pnorm only (got --cost {self.cost})")


# --------------------------------------------------------------------------------------------
# The engine: problems → buckets → batched solves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One OT problem to solve: two validated clouds of one dimension and its ε."""

    x: Cloud
    y: Cloud
    eps: float


@dataclass
class Engine:
    """Solves lists of problems bucket by bucket with one cost, device and dtype.

    ``max_entries`` bounds a bucket's padded B·n·m: the smaller of the memory budget (about
    three n×m buffers plus a mask per problem live during a solve) and the cache-friendly
    work-unit size :data:`otcli.buckets.DEFAULT_MAX_ENTRIES`.
    """

    settings: SolveSettings
    cost_fn: CostFn
    max_entries: int

    @classmethod
    def create(cls, settings: SolveSettings) -> Engine:
        """Resolve the cost, device, dtype and memory budget (raises OptionError if bad)."""
        import torch

        from otcli.api import DEFAULT_TOL, check_options
        from otcli.costs import get_cost
        from otcli.device import memory_budget, pick_device, pick_dtype

        settings.check()
        cost_fn = get_cost(settings.cost, settings.p)
        dev = pick_device(settings.device)
        dt = pick_dtype(settings.dtype, dev)
        tol = DEFAULT_TOL[settings.dtype] if settings.tol is None else settings.tol
        check_options([settings.eps], settings.max_iter, tol, settings.scaling, 1)
        budget = memory_budget(dev) if settings.memory is None else settings.memory
        return cls(settings, cost_fn, bucket_entries(budget, torch.finfo(dt).bits // 8))

    def check_pair(self, x: Cloud, y: Cloud) -> None:
        """The checks ``solve_clouds`` makes per pair, with the same messages, made up front
        so that one bad pair becomes one error row instead of failing its whole bucket."""
        from otcli.api import check_pair

        check_pair(x, y, self.cost_fn)

    def solve(self, problems: Sequence[Problem]) -> list[SinkhornResult | str]:
        """One batched solve; if it fails, each problem alone, so only bad ones fail."""
        from otcli.api import SolverError, solve_clouds

        s = self.settings
        try:
            return list(
                solve_clouds(
                    [p.x for p in problems],
                    [p.y for p in problems],
                    eps=[p.eps for p in problems],
                    cost_fn=self.cost_fn,
                    max_iter=s.max_iter,
                    tol=s.tol,
                    scaling=s.scaling,
                    device=s.device,
                    dtype=s.dtype,
                    check_every=None,
                    progress=None,
                )
            )
        except (SolverError, OtcliError) as exc:
            if len(problems) == 1:
                return [str(exc)]
        return [self.solve([p])[0] for p in problems]

    def solve_in_buckets(
        self, problems: Sequence[Problem]
    ) -> Iterator[tuple[list[int], list[SinkhornResult | str]]]:
        """Yield ``(indices, outcomes)`` bucket by bucket, as each batched solve finishes."""
        shapes = [(p.x.n, p.y.n) for p in problems]
        for idx in plan_buckets(
            shapes, max_entries=self.max_entries, max_batch=self.settings.max_batch
        ):
            yield idx, self.solve([problems[k] for k in idx])


class CloudLoader:
    """Reads clouds on a thread pool, each path once, ahead of the solver.

    ``prefetch`` submits reads; ``get`` waits for one and returns the cloud or the one-line
    message saying why it could not be read; ``release`` forgets paths no longer needed.
    """

    def __init__(self, pool: ThreadPoolExecutor, settings: SolveSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._futures: dict[str, Future[Cloud]] = {}

    def _read(self, path: str) -> Cloud:
        from otcli.io import read_cloud

        s = self._settings
        return read_cloud(path, columns=s.columns, weights=s.weights)

    def prefetch(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in self._futures:
                self._futures[path] = self._pool.submit(self._read, path)

    def get(self, path: str) -> Cloud | str:
        self.prefetch([path])
        try:
            return self._futures[path].result()
        except OtcliError as exc:
            return str(exc)
        except Exception as exc:  # a reader bug must not stop the run: report it on the row
            return f"{path}: cannot read the file ({type(exc).__name__}: {exc})"

    def release(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._futures.pop(path, None)


def divergence_value(xy: SinkhornResult, xx: SinkhornResult, yy: SinkhornResult) -> float:
    """S = OT_ε(a,b) − ½ OT_ε(a,a) − ½ OT_ε(b,b) from the three problems' objectives."""
    from otcli.result import DivergenceResult

    return DivergenceResult(xy=xy, xx=xx, yy=yy).divergence


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairSpec:
    """One manifest row: ``a``/``b`` as written, ``path_a``/``path_b`` resolved against the
    manifest's folder, and ``eps`` (``None``: the ``--eps`` option). ``id`` is an int or str."""

    id: int | str
    a: str
    b: str
    path_a: str
    path_b: str
    eps: float | None

    @property
    def key(self) -> str:
        """The id as text: how rows are matched against a journal or a previous output."""
        return str(self.id)


def resolve_path(base: str, path: str) -> str:
    """``path`` relative to the folder ``base`` unless absolute: ``data/`` + ``a.csv``."""
    return path if os.path.isabs(path) else os.path.join(base, path)


def read_table(path: str, what: str) -> Any:
    """A CSV/TSV/Parquet table as a pyarrow Table; errors name the file and the fix."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = Path(path).suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise InputError(
            path, f"unknown {what} type {suffix or '(none)'!r}; use .csv, .tsv or .parquet"
        )
    if not os.path.isfile(path):
        reason = (
            "is a directory, not a file" if os.path.isdir(path) else "no such file; check the path"
        )
        raise InputError(path, reason)
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        text = pa.string()
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            # Paths and ids verbatim: an id "nan" or "NA" is a name, not a missing value.
            convert_options=pacsv.ConvertOptions(
                column_types={"a": text, "b": text, "id": text}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot read the {what} ({first})") from None


def read_manifest(path: str | os.PathLike[str]) -> list[PairSpec]:
    """The pairs of a manifest: columns ``a``, ``b`` (paths), optional ``id`` and ``eps``.

    Relative paths resolve against the manifest's folder. ``id`` defaults to the 0-based row
    number; ids must be unique. Empty ``eps`` cells mean ``--eps``. Raises
    :class:`~otcli.errors.InputError` naming the manifest for a missing column, an empty path,
    a non-numeric ``eps`` column or a duplicate id.
    """
    import pyarrow as pa

    where = os.fspath(path)
    table = read_table(where, "manifest")
    names = table.column_names
    missing = [c for c in ("a", "b") if c not in names]
    if missing:
        found = ", ".join(names) if names else "none"
        raise InputError(
            where,
            f"no column {missing[0]!r}; a manifest needs columns a and b (paths) and may "
            f"have id and eps (found: {found})",
        )
    a = [_path_cell(v, where, "a", k) for k, v in enumerate(table["a"].to_pylist())]
    b = [_path_cell(v, where, "b", k) for k, v in enumerate(table["b"].to_pylist())]
    ids = _ids(table, where)
    eps: list[float | None] = [None] * len(a)
    if "eps" in names:
        col = table["eps"]
        if not (
            pa.types.is_floating(col.type)
            or pa.types.is_integer(col.type)
            or pa.types.is_null(col.type)
        ):
            raise InputError(where, f"column 'eps' holds {col.type} values; it must be numeric")
        eps = [None if v is None else float(v) for v in col.to_pylist()]
    base = os.path.dirname(where)
    return [
        PairSpec(i, pa_, pb, resolve_path(base, pa_), resolve_path(base, pb), e)
        for i, pa_, pb, e in zip(ids, a, b, eps, strict=True)
    ]


def _path_cell(value: object, where: str, column: str, row: int) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise InputError(
            where, f"row {row} (0-based, header excluded) has no path in column {column!r}"
        )
    return text


def _ids(table: Any, where: str) -> list[int | str]:
    import pyarrow as pa

    if "id" not in table.column_names:
        return list(range(table.num_rows))
    col = table["id"]
    raw = col.to_pylist()
    ids: list[int | str] = []
    for k, v in enumerate(raw):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise InputError(where, f"row {k} (0-based, header excluded) has no id")
        ids.append(int(v) if pa.types.is_integer(col.type) else str(v).strip())
    if all(isinstance(v, str) and _INT_ID.fullmatch(v) for v in ids):
        ids = [int(v) for v in ids]  # a text column of whole numbers (CSV): integer ids
    seen: dict[str, int] = {}
    for k, v in enumerate(ids):
        if str(v) in seen:
            raise InputError(
                where,
                f"duplicate id {v!r} in rows {seen[str(v)]} and {k} (0-based, header "
                "excluded); ids must be unique",
            )
        seen[str(v)] = k
    return ids


# --------------------------------------------------------------------------------------------
# Rows, journal and output
# --------------------------------------------------------------------------------------------

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


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def row_json(row: dict[str, Any]) -> str:
    """One row as one line of JSON (NaN/inf become null)."""
    return json.dumps({k: _clean(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=False)


def journal_path(out: str | os.PathLike[str]) -> Path:
    """Where ``batch`` keeps its journal while writing ``out``."""
    return Path(os.fspath(out) + JOURNAL_SUFFIX)


class Journal:
    """Append-only JSON lines: a header object, then one row per scored pair.

    Rows are written in groups, each flushed and fsynced before the next solve, so a
    ``kill -9`` loses at most the group being written, of which at most the last line is torn.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        """(header, rows, bytes of whole lines): a torn last line is left out."""
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = data[:end].splitlines()
        if not lines:
            return {}, [], 0
        objs = []
        for k, line in enumerate(lines, start=1):
            try:
                obj = json.loads(line)
            except ValueError:
                raise InputError(
                    str(path),
                    f"line {k} is not valid JSON; the journal is damaged: rerun with --overwrite",
                ) from None
            objs.append(obj)
        header = objs[0] if isinstance(objs[0], dict) and "otcli_journal" in objs[0] else {}
        return header, objs[1:] if header else objs, end

    def open(self, header: dict[str, Any] | None, keep_bytes: int = 0) -> None:
        """Start a new journal (``header`` given) or reopen one cut to ``keep_bytes``."""
        if header is not None:
            self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
            self._write([json.dumps(header)])
        else:
            self._fh = open(self.path, "r+b")  # noqa: SIM115
            self._fh.truncate(keep_bytes)
            self._fh.seek(keep_bytes)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._write([row_json(r) for r in rows])

    def _write(self, lines: Sequence[str]) -> None:
        self._fh.write(("\n".join(lines) + "\n").encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def check_out_path(
    out: str | os.PathLike[str], suffixes: Sequence[str], option: str = "-o"
) -> Path:
    """The output's extension is one of ``suffixes`` and its folder exists and is writable."""
    from otcli.io import check_output_path

    return check_output_path(out, option, suffixes)


def rows_table(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Any:
    """Rows as a pyarrow Table with fixed column types (ids: int64 if all ints, else text)."""
    import pyarrow as pa

    types = {
        "a": pa.string(), "b": pa.string(), "n": pa.int64(), "m": pa.int64(),
        "i": pa.int64(), "j": pa.int64(), "eps": pa.float64(), "cost": pa.float64(),
        "objective": pa.float64(), "divergence": pa.float64(), "iterations": pa.int64(),
        "converged": pa.bool_(), "marginal_error": pa.float64(), "status": pa.string(),
        "error": pa.string(), "seconds": pa.float64(),
    }  # fmt: skip
    ids = [r.get("id") for r in rows]
    int_ids = all(isinstance(v, int) and not isinstance(v, bool) for v in ids)
    types["id"] = pa.int64() if int_ids else pa.string()
    columns = {}
    for name in fields:
        values = [_clean(r.get(name)) for r in rows]
        if name == "id" and not int_ids:
            values = [str(v) for v in values]
        columns[name] = pa.array(values, type=types[name])
    return pa.table(columns)


def write_rows(out: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Write rows to ``out`` by extension (.jsonl, .csv, .parquet), atomically."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from otcli.io import atomic_write

    suffix = out.suffix.lower()
    try:
        with atomic_write(out) as tmp:
            if suffix == ".jsonl":
                with open(tmp, "w", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(row_json({k: r.get(k) for k in fields}) + "\n")
            elif suffix == ".csv":
                pacsv.write_csv(rows_table(rows, fields), str(tmp))
            else:
                pq.write_table(rows_table(rows, fields), str(tmp))
    except OSError as exc:
        raise OtcliError(str(out), f"cannot write the file ({exc.strerror or exc})") from None


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Rows of a previous complete output (to resume from when its journal is gone)."""
    if out.suffix.lower() == ".jsonl":
        return Journal.read(out)[1]
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(out) if out.suffix.lower() == ".parquet" else pacsv.read_csv(out)
    except Exception as exc:
        raise InputError(str(out), f"cannot read the previous output to resume ({exc})") from None
    return table.to_pylist()


# --------------------------------------------------------------------------------------------
# otdist batch
# --------------------------------------------------------------------------------------------


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

    @property
    def pairs_per_second(self) -> float:
        done = self.total - self.skipped
        return done / self.seconds if self.seconds > 0 else math.inf


ProgressHook = Callable[[int, int], None]
"""Called with (pairs just finished, of which failed) as rows are recorded."""


class FailFast(Exception):
    """``--fail-fast`` stopped the run at a failed pair (its message is the error text)."""


@dataclass
class BatchRun:
    """One ``otdist batch`` run: the manifest's pairs, the output, the journal, the engine."""

    pairs: list[PairSpec]
    out: Path
    settings: SolveSettings
    engine: Engine
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

    def eps_of(self, pair: PairSpec) -> float:
        return self.settings.eps if pair.eps is None else pair.eps

    def run(self, todo: Sequence[PairSpec]) -> None:
        """Score ``todo`` window by window, loading the next window while solving this one."""
        windows = [list(todo[k : k + WINDOW_PAIRS]) for k in range(0, len(todo), WINDOW_PAIRS)]
        last_use = {}
        for w, window in enumerate(windows):
            for pair in window:
                last_use[pair.path_a] = last_use[pair.path_b] = w
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="otdist-io") as pool:
            loader = CloudLoader(pool, self.settings)
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
        if self.settings.divergence:
            self._solve_self_terms(problems)
        for idx, outcomes in self.engine.solve_in_buckets(problems):
            rows = [
                self._row(owners[k], problems[k], out, len(idx))
                for k, out in zip(idx, outcomes, strict=True)
            ]
            self._write_couplings(rows, outcomes, pool)
            self.record(rows)

    def _problem(self, pair: PairSpec, loader: CloudLoader) -> Problem | dict[str, Any]:
        """The pair's problem, or its error row (unreadable file, bad ε, dimension, cost)."""
        eps = self.eps_of(pair)
        if not (math.isfinite(eps) and eps > 0):
            return error_row(pair, f"eps: ε must be a positive finite number, got {eps}", eps)
        x, y = loader.get(pair.path_a), loader.get(pair.path_b)
        for c in (x, y):
            if isinstance(c, str):
                return error_row(pair, c, eps)
        try:
            self.engine.check_pair(x, y)  # type: ignore[arg-type]
        except OtcliError as exc:
            return error_row(pair, str(exc), eps, x.n, y.n)  # type: ignore[union-attr]
        return Problem(x, y, eps)  # type: ignore[arg-type]

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
        if not self.settings.divergence:
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

        jobs = [
            (r, pool.submit(write_matrices, res, coupling=self.coupling_file(r["id"])))
            for r, res in zip(rows, outcomes, strict=True)
            if r["status"] == "ok"
        ]
        for r, job in jobs:
            try:
                job.result()
            except OtcliError as exc:
                r.update(status="error", error=str(exc))

    def coupling_file(self, pair_id: int | str) -> Path:
        return self.coupling_dir / f"{pair_id}.{self.coupling_format}"  # type: ignore[operator]


def check_coupling_dir(
    directory: str | os.PathLike[str], pairs: Sequence[PairSpec], fmt: str
) -> Path:
    """The coupling folder (created if its parent exists) and ids that are safe file names."""
    if fmt not in ("npy", "parquet"):
        raise OptionError("--coupling-format", f"unknown format {fmt!r}; use npy or parquet")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OptionError("--coupling-dir", f"{str(path)!r} exists and is not a directory")
    if not path.parent.is_dir():
        raise OptionError(
            "--coupling-dir", f"directory {str(path.parent)!r} does not exist; create it first"
        )
    for pair in pairs:
        if not _SAFE_ID.fullmatch(str(pair.id)):
            raise OptionError(
                "--coupling-dir",
                f"id {pair.id!r} is not a safe file name (letters, digits, . _ + - only, not "
                "starting with a dot); rename it in the manifest",
            )
    path.mkdir(exist_ok=True)
    return path


def _prepare_output(
    out: Path, settings: SolveSettings, *, resume: bool, overwrite: bool
) -> tuple[Journal, list[dict[str, Any]]]:
    """Open the journal for a fresh or resumed run; return it and the rows already done."""
    jpath = journal_path(out)
    journal = Journal(jpath)
    header = {"otcli_journal": JOURNAL_VERSION, "settings": settings.fingerprint()}
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
        journal.open(header)
        return journal, []
    if jpath.exists():
        old_header, rows, keep = Journal.read(jpath)
        old = old_header.get("settings")
        if old is not None and old != header["settings"]:
            diff = next(k for k in header["settings"] if old.get(k) != header["settings"][k])
            raise OptionError(
                "--resume",
                f"{str(jpath)!r} was written with {diff}={old.get(diff)!r}, not "
                f"{header['settings'][diff]!r}; use the same options, or --overwrite",
            )
        if keep == 0:
            journal.open(header)
        else:
            journal.open(None, keep)
        return journal, rows
    rows = read_rows(out) if out.exists() else []
    journal.open(header)
    journal.append(rows)  # the journal is the one source of truth from here on
    return journal, rows


def run_batch(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: SolveSettings,
    *,
    resume: bool = False,
    overwrite: bool = False,
    fail_fast: bool = False,
    coupling_dir: str | os.PathLike[str] | None = None,
    coupling_format: str = "npy",
    progress: Callable[[int, int], ProgressHook] | None = None,
) -> RunSummary:
    """Score every pair of ``manifest`` into ``out`` (.parquet, .csv, .jsonl); resumable.

    ``progress(total, already_done)`` may return a hook called as rows finish. Raises
    :class:`~otcli.errors.OtcliError` for a bad manifest or options (before any work) and
    :class:`FailFast` when ``fail_fast`` meets a failed pair (the journal keeps the good rows,
    so ``resume`` continues). Failed pairs are otherwise rows with ``status`` ``error``; a
    resumed run tries them again.
    """
    start = time.perf_counter()
    out_path = check_out_path(out, BATCH_SUFFIXES)
    pairs = read_manifest(manifest)
    engine = Engine.create(settings)
    cdir = None
    if coupling_dir is not None:
        cdir = check_coupling_dir(coupling_dir, pairs, coupling_format)
    journal, previous = _prepare_output(out_path, settings, resume=resume, overwrite=overwrite)
    run = BatchRun(pairs, out_path, settings, engine, cdir, coupling_format, fail_fast,
                   journal=journal)  # fmt: skip
    wanted = {p.key for p in pairs}
    for r in previous:
        if str(r.get("id")) in wanted:
            run.rows[str(r["id"])] = r
    todo = [p for p in pairs if run.rows.get(p.key, {}).get("status") != "ok"]
    done = len(pairs) - len(todo)
    if progress is not None:
        run.progress = progress(len(pairs), done)
    try:
        run.run(todo)
    finally:
        journal.close()
    fields = [f for f in ROW_FIELDS if settings.divergence or f != "divergence"]
    final = [_with_manifest_id(run.rows[p.key], p) for p in pairs]
    write_rows(out_path, final, fields)
    journal.path.unlink(missing_ok=True)
    return _summary(final, len(pairs), done, time.perf_counter() - start, str(out_path))


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

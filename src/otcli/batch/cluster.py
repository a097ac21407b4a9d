"""``otdist batch`` and ``otdist pairwise`` on a Dask cluster (``--scheduler``).

The client cuts the work into shards of a few buckets and submits each as one Dask task; on the
worker the task runs the in-process code on its shard (:func:`solve_batch_shard`: read the
clouds, solve them bucket by bucket with the :class:`~otcli.batch.engine.Engine`, return the
rows), and the client records the rows as shards finish. So the journal, ``--resume``, the
progress bar, the output formats and the error rows are the local ones. Dask does the rest:
placement, a dead worker's shard computed again elsewhere (the scheduler's
``allowed-failures``), a shard that raised tried again (``retries=``), GPU workers through
dask-cuda. Nothing is shared with the workers but the files they read: paths reachable from
them, or fsspec URLs.

dask is imported here only, and only when a run connects: without ``--scheduler`` it is never
imported.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import CloudLoader, Engine, ProgressHook
from otcli.batch.run import BatchRun
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import OptionError, OtcliError, SolverError

if TYPE_CHECKING:
    from otcli.batch.manifest import PairSpec
    from otcli.result import SinkhornResult

#: The hint when ``--scheduler`` is given but dask.distributed is not installed.
NEEDS_DASK = "needs dask.distributed, an optional extra: pip install 'otcli[dask]'"
#: Seconds to wait for a scheduler at a ``tcp://`` address before saying it is unreachable.
CONNECT_TIMEOUT = 10.0
#: Times Dask runs a shard again after it raised (a shard whose worker died is rescheduled
#: by the scheduler itself, up to its ``allowed-failures``).
RETRIES = 2
#: Shards per worker thread the client aims for: enough to balance uneven shards and to lose
#: little when a worker dies; few enough that the per-shard overhead stays small.
SHARDS_PER_THREAD = 4
#: Most buckets (of ``--max-batch`` pairs) in one shard.
BUCKETS_PER_SHARD = 4
#: Shards in flight per worker thread: more are submitted as these finish, so a run of
#: millions of pairs never sits in the scheduler all at once.
IN_FLIGHT_PER_THREAD = 8


def parse_scheduler(value: str) -> tuple[str, int | None]:
    """``local:N`` → ``("local", N)``; a scheduler's address (``tcp://host:8786``) → ``(it,
    None)``."""
    text = value.strip()
    name, sep, count = text.partition(":")
    if name.lower() == "local":
        if not (sep and count.isdigit() and int(count) >= 1):
            raise OptionError(
                "--scheduler",
                f"bad value {value!r}: local:N starts N worker processes here (N ≥ 1), e.g. "
                "local:4",
            )
        return "local", int(count)
    if not text or any(c.isspace() for c in text):
        raise OptionError(
            "--scheduler",
            f"bad value {value!r}: give a scheduler address such as tcp://host:8786, or local:N",
        )
    return text, None


def shard_size(pairs: int, threads: int, max_batch: int) -> int:
    """Pairs per shard: whole buckets of ``max_batch`` pairs (the in-process buckets, when the
    clouds of a bucket are alike), at most :data:`BUCKETS_PER_SHARD` of them, and few enough
    that each worker thread gets about :data:`SHARDS_PER_THREAD` shards."""
    wanted = math.ceil(pairs / (max(1, threads) * SHARDS_PER_THREAD))
    return max_batch * min(BUCKETS_PER_SHARD, max(1, math.ceil(wanted / max_batch)))


@dataclass(frozen=True)
class ShardSettings:
    """What every shard of one run needs besides its own pairs (pickled with each shard).

    ``device`` is the user's ``--device``, resolved on each worker (``auto``: that worker's
    best device); ``None`` keeps ``config.device``. ``threads_on_host`` counts the worker
    threads on each host, which share its cores.
    """

    config: SolveConfig
    read: ReadOptions
    device: str | None
    threads_on_host: dict[str, int]
    run_id: str
    divergence: bool = False
    io_threads: int = 4
    couplings: bool = False


@dataclass(frozen=True)
class PairFigures:
    """A solved pair's figures without its potentials: what a pairwise row needs, sent back
    from a worker instead of the whole :class:`~otcli.result.SinkhornResult`."""

    cost: float
    objective: float
    iterations: int
    converged: bool
    marginal_error: float
    eps: float
    seconds: float

    @classmethod
    def of(cls, res: SinkhornResult) -> PairFigures:
        return cls(
            res.cost, res.objective, res.iterations, res.converged, res.marginal_error,
            res.eps, res.seconds,
        )  # fmt: skip


@dataclass(frozen=True)
class CloudSize:
    """A cloud read on a worker, as the client's pairwise rows see it: its point count."""

    n: int


class DaskBackend:
    """Runs ``batch`` and ``pairwise`` shards on a Dask cluster.

    ``scheduler`` is a running scheduler's address (``tcp://host:8786``) or ``local:N``, a
    ``LocalCluster`` of N single-threaded worker processes on this machine for the backend's
    life. Use it as a context manager: the run connects (:meth:`connect`) after its own checks
    and before it writes anything; leaving the block closes the client (and a local cluster).
    ``announce`` receives one line about the cluster (workers, devices, dashboard link).
    """

    def __init__(
        self,
        scheduler: str,
        *,
        device: str | None = None,
        announce: Callable[[str], None] | None = None,
        timeout: float = CONNECT_TIMEOUT,
        retries: int = RETRIES,
    ) -> None:
        self.address, self.local_workers = parse_scheduler(scheduler)
        self.device = device
        self.announce = announce
        self.timeout = timeout
        self.retries = retries
        self.client: Any = None
        self._cluster: Any = None
        self._threads_on_host: dict[str, int] = {}
        # What each worker runs; a test wraps one (to kill its worker once mid-shard).
        self.batch_shard: Callable[..., Any] = solve_batch_shard
        self.pairwise_shard: Callable[..., Any] = solve_pairwise_shard

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; a local cluster's workers stop."""
        client, cluster, self.client, self._cluster = self.client, self._cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def connect(self, config: SolveConfig) -> None:
        """Connect (once), check that every worker can use the device, announce the cluster.

        Raises :class:`~otcli.errors.OptionError` naming ``--scheduler`` when dask is not
        installed or the scheduler cannot be reached within ``timeout`` seconds, and naming
        ``--device`` when a worker cannot use the device.
        """
        if self.client is None:
            self.client = self._open()
        answers = self.client.run(probe_worker, config, self.device)
        for addr, (where, what) in sorted(answers.items()):
            if where:
                raise OptionError(where, f"{what} (on Dask worker {addr})")
        self._threads_on_host = _threads_on_host(self.client.nthreads())
        if self.announce is not None:
            self.announce(self._description(answers))

    def _open(self) -> Any:
        try:
            import distributed
        except ImportError:
            raise OptionError("--scheduler", NEEDS_DASK) from None
        if self.local_workers is not None:
            cluster = distributed.LocalCluster(
                n_workers=self.local_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0",
            )  # fmt: skip
            self._cluster = cluster
            client = distributed.Client(cluster)
            client.wait_for_workers(self.local_workers)
            return client
        try:
            return distributed.Client(self.address, timeout=self.timeout)
        except (OSError, TimeoutError, ValueError) as exc:  # OSError: dask's timeout too
            reason = f" ({exc})" if isinstance(exc, ValueError) else ""
            raise OptionError(
                "--scheduler",
                f"cannot reach a Dask scheduler at {self.address} within {self.timeout:g} s"
                f"{reason}; start one there with `dask scheduler`, or check the address",
            ) from None

    def _description(self, answers: dict[str, tuple[str, str]]) -> str:
        where = f"local:{self.local_workers}" if self.local_workers else self.address
        if not answers:
            workers = "no workers yet (shards wait for `dask worker`)"
        else:
            devices = Counter(what for _, what in answers.values())
            kinds = ", ".join(f"{d} ×{k}" for d, k in sorted(devices.items()))
            workers = f"{len(answers)} worker(s) ({kinds})"
        info = self.client.scheduler_info(n_workers=0)
        if "dashboard" in info.get("services", {}):
            board = f"dashboard: {self.client.dashboard_link}"
        else:
            board = "no dashboard (it needs bokeh: pip install bokeh)"
        return f"Dask {where}: {workers}; {board}"

    def _settings(self, config: SolveConfig, read: ReadOptions, **extra: Any) -> ShardSettings:
        return ShardSettings(
            config, read, self.device, dict(self._threads_on_host), uuid.uuid4().hex, **extra
        )

    def _threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    # --- batch -----------------------------------------------------------------------------

    def run_batch(self, run: BatchRun, todo: Sequence[PairSpec]) -> None:
        """Score ``todo`` on the cluster; each finished shard's rows are journaled by ``run``
        (and its couplings written here, by the client) as in the in-process run."""
        config = run.engine.config
        settings = self._settings(
            config, run.read, divergence=run.divergence, io_threads=run.workers,
            couplings=run.coupling_dir is not None,
        )  # fmt: skip
        size = shard_size(len(todo), self._threads(), config.max_batch)
        portable = [
            replace(p, path_a=_portable(p.path_a), path_b=_portable(p.path_b)) for p in todo
        ]
        shards = [(portable[k : k + size],) for k in range(0, len(portable), size)]
        with contextlib.ExitStack() as stack:
            pool = None
            if run.coupling_dir is not None:
                pool = stack.enter_context(ThreadPoolExecutor(run.workers, "otdist-io"))

            def record(value: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
                rows, results = value
                if pool is not None:
                    outcomes = [results.get(str(r["id"])) for r in rows]
                    run._write_couplings(rows, outcomes, pool)
                run.record(rows)

            self._stream(self.batch_shard, shards, settings, record)

    # --- pairwise --------------------------------------------------------------------------

    def run_pairwise(
        self,
        files: Sequence[str],
        config: SolveConfig,
        read: ReadOptions,
        workers: int,
        hook: ProgressHook | None,
    ) -> tuple[list[CloudSize | str], dict[tuple[int, int], Any], dict[tuple[int, int], float]]:
        """Every pair i ≤ j of ``files`` on the cluster, each worker reading each file it
        needs once: the clouds' sizes (or why one could not be read), each pair's figures (or
        why it failed) and its share of its bucket's seconds."""
        n = len(files)
        keys = [(i, j) for i in range(n) for j in range(i, n)]
        size = shard_size(len(keys), self._threads(), config.max_batch)
        paths = [_portable(f) for f in files]
        shards = []
        for k in range(0, len(keys), size):
            part = keys[k : k + size]
            needed = sorted({i for key in part for i in key})
            shards.append(({i: paths[i] for i in needed}, part))
        outcomes: dict[tuple[int, int], Any] = {}
        shares: dict[tuple[int, int], float] = {}
        sizes: dict[int, int | str] = {}

        def record(value: tuple[dict[tuple[int, int], Any], dict[Any, float], dict[int, Any]]):
            figures, share, size = value
            outcomes.update(figures)
            shares.update(share)
            sizes.update(size)
            if hook is not None:
                hook(len(figures), sum(isinstance(o, str) for o in figures.values()))

        settings = self._settings(config, read, io_threads=workers)
        self._stream(self.pairwise_shard, shards, settings, record)
        clouds = [s if isinstance(s, str) else CloudSize(s) for s in (sizes[i] for i in range(n))]
        return clouds, outcomes, shares

    # --- submitting ------------------------------------------------------------------------

    def _stream(
        self,
        fn: Callable[..., Any],
        shards: Sequence[tuple[Any, ...]],
        settings: ShardSettings,
        record: Callable[[Any], None],
    ) -> None:
        """Submit the shards (a bounded number in flight) and ``record`` each one's result as
        it finishes; if recording stops the run (an error, ``--fail-fast``, Ctrl-C), the
        shards still queued or running are cancelled."""
        from distributed import as_completed

        client = self.client
        queue = iter(enumerate(shards))
        finished = as_completed()
        live: set[Any] = set()

        def submit(count: int) -> None:
            for k, args in itertools.islice(queue, count):
                name = getattr(fn, "__name__", "shard")
                future = client.submit(
                    fn, *args, settings, key=f"otdist-{name}-{k}-{settings.run_id}",
                    retries=self.retries, pure=False,
                )  # fmt: skip
                live.add(future)
                finished.add(future)

        submit(max(4, IN_FLIGHT_PER_THREAD * self._threads()))
        try:
            for future in finished:
                value = _shard_result(future)
                live.discard(future)
                future.release()
                submit(1)
                record(value)
        finally:
            if live:
                client.cancel(list(live))


def _shard_result(future: Any) -> Any:
    """A finished shard's value; a shard the cluster could not compute is a SolverError."""
    try:
        return future.result()
    except OtcliError:
        raise
    except Exception as exc:
        raise SolverError(
            f"--scheduler: the cluster could not compute a shard ({type(exc).__name__}: {exc})"
        ) from None


def _portable(path: str) -> str:
    """A path a worker can open: absolute (workers need not share the client's folder), or a
    URL as given (``s3://...``, read through fsspec)."""
    from otcli.io.common import is_url

    return path if is_url(path) else os.path.abspath(path)


def _threads_on_host(nthreads: dict[str, int]) -> dict[str, int]:
    from distributed.comm import get_address_host

    hosts: Counter[str] = Counter()
    for addr, count in nthreads.items():
        hosts[get_address_host(addr)] += count
    return dict(hosts)


# --- on the worker -------------------------------------------------------------------------


def probe_worker(config: SolveConfig, device: str | None) -> tuple[str, str]:
    """On a worker: ``("", device)`` it would solve on, or ``(option, what is wrong)``."""
    try:
        return "", _on_device(config, device).device
    except OtcliError as exc:
        return exc.where, exc.what


def _on_device(config: SolveConfig, device: str | None) -> SolveConfig:
    """``config`` with ``device`` resolved on this machine as :func:`make_config` resolves
    it (``auto``: this machine's best device, and the convergence-check interval with it);
    ``None`` checks that ``config.device`` is here."""
    from otcli.config import make_config

    here = make_config(device=config.device if device is None else device, dtype=config.dtype)
    if device is None:
        return config
    return config.with_(device=here.device, check_every=here.check_every)


def worker_config(config: SolveConfig, device: str | None) -> SolveConfig:
    """``config`` on this worker: its device (:func:`_on_device`) and, without ``--memory``,
    a memory budget within this worker thread's share of its Dask memory limit (a worker
    past that limit is restarted by its nanny)."""
    config = _on_device(config, device)
    worker = _this_worker()
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if config.memory is None and limit and config.torch_device.type == "cpu":
        share = limit // (2 * max(1, worker.state.nthreads))
        config = config.with_(memory=min(config.memory_budget(), share))
    return config


def _this_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # called in-process, not in a Dask task
        return None


def share_cores(threads_on_host: dict[str, int]) -> None:
    """Give torch this worker thread's share of the host's cores: the worker threads on one
    host each solve at once, and oversubscribed torch threads slow a solve several-fold."""
    worker = _this_worker()
    if worker is None:
        return
    import torch
    from distributed.comm import get_address_host

    sharing = threads_on_host.get(get_address_host(worker.address)) or worker.state.nthreads
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, sharing))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass
class _RowSink:
    """Takes the place of the journal on a worker: the shard's rows go back to the client."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(rows)


@dataclass
class _ShardRun(BatchRun):
    """The in-process :class:`BatchRun` on a worker; couplings are written by the client, so
    the ok pairs' results are kept to send back instead (when the run writes couplings)."""

    keep_results: bool = False
    results: dict[str, Any] = field(default_factory=dict)

    def _write_couplings(
        self, rows: list[dict[str, Any]], outcomes: list[Any], pool: ThreadPoolExecutor
    ) -> None:
        if self.keep_results:
            for r, res in zip(rows, outcomes, strict=True):
                if r["status"] == "ok":
                    self.results[str(r["id"])] = res


def solve_batch_shard(
    pairs: list[PairSpec], settings: ShardSettings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """On a worker: the in-process batch code on ``pairs`` (read, self terms, buckets, rows);
    their rows, and the ok pairs' results when the client writes couplings."""
    share_cores(settings.threads_on_host)
    config = worker_config(settings.config, settings.device)
    sink = _RowSink()
    shard = _ShardRun(
        pairs, Path(), Engine.create(config), settings.read, settings.divergence,
        settings.io_threads, journal=sink, keep_results=settings.couplings,  # type: ignore[arg-type]
    )  # fmt: skip
    shard.run(pairs)
    return sink.rows, shard.results


# Clouds this worker process has read for a pairwise run, each file once: (run id, clouds).
_read_clouds: tuple[str, dict[str, Any]] = ("", {})
_read_lock = threading.Lock()


def _clouds(paths: dict[int, str], settings: ShardSettings) -> dict[int, Any]:
    """Each index's cloud (or why it could not be read), reading only files not read yet."""
    global _read_clouds
    with _read_lock:
        if _read_clouds[0] != settings.run_id:
            _read_clouds = (settings.run_id, {})
        cache = _read_clouds[1]
        missing = [p for p in dict.fromkeys(paths.values()) if p not in cache]
    got: dict[str, Any] = {}
    if missing:
        with ThreadPoolExecutor(settings.io_threads, "otdist-io") as pool:
            loader = CloudLoader(pool, settings.read)
            loader.prefetch(missing)
            got = {p: loader.get(p) for p in missing}
        with _read_lock:
            cache.update(got)
    return {i: got[p] if p in got else cache[p] for i, p in paths.items()}


def solve_pairwise_shard(
    paths: dict[int, str], keys: list[tuple[int, int]], settings: ShardSettings
) -> tuple[dict[tuple[int, int], Any], dict[tuple[int, int], float], dict[int, int | str]]:
    """On a worker: the in-process pairwise code on the pairs ``keys`` of the files
    ``paths`` (index → path); each pair's figures or error, its seconds, the clouds' sizes."""
    from otcli.batch.pairwise import _solve_all

    share_cores(settings.threads_on_host)
    config = worker_config(settings.config, settings.device)
    clouds = _clouds(paths, settings)
    listed = [clouds.get(i, "") for i in range(max(paths) + 1)]  # only the shard's are read
    outcomes, shares = _solve_all(listed, Engine.create(config), config.eps, None, keys)
    figures = {k: o if isinstance(o, str) else PairFigures.of(o) for k, o in outcomes.items()}
    sizes = {i: c if isinstance(c, str) else c.n for i, c in clouds.items()}
    return figures, shares, sizes

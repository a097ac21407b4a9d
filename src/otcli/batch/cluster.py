"""``otdist batch`` and ``otdist pairwise`` on a Dask cluster (``--scheduler``).

The client cuts the work into shards of a few buckets and submits each as one Dask task; on the
worker the task runs the in-process code on its shard (:mod:`otcli.batch.shards`: read the
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
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import ProgressHook
from otcli.batch.shards import (
    CloudSize,
    ShardSettings,
    probe_worker,
    solve_batch_shard,
    solve_pairwise_shard,
)
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import OptionError, OtcliError, SolverError

if TYPE_CHECKING:
    from otcli.batch.manifest import PairSpec
    from otcli.batch.solving import BatchRun

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
        if not (sep and count.isascii() and count.isdigit() and int(count) >= 1):  # not '²'
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


#: What a Dask transport other than plain TCP needs on this machine, said when Dask cannot
#: set it up (it raises a TypeError: an abstract UCX connector, a TLS context of None).
_TRANSPORT_NEEDS = {
    "ucx": "the UCX transport needs Dask's UCX support (pip install distributed-ucxx), "
    "which is not installed; use tcp://",
    "tls": "TLS needs certificates in Dask's configuration (distributed.comm.tls: ca-file, "
    "and client cert and key), and none are set; configure them, or use tcp://",
}


def shard_size(pairs: int, threads: int, max_batch: int) -> int:
    """Pairs per shard: whole buckets of ``max_batch`` pairs (the in-process buckets, when the
    clouds of a bucket are alike), at most :data:`BUCKETS_PER_SHARD` of them, and few enough
    that each worker thread gets about :data:`SHARDS_PER_THREAD` shards."""
    wanted = math.ceil(pairs / (max(1, threads) * SHARDS_PER_THREAD))
    return max_batch * min(BUCKETS_PER_SHARD, max(1, math.ceil(wanted / max_batch)))


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
        except TypeError as exc:  # dask's word for a transport it cannot set up here
            scheme = self.address.partition("://")[0].lower()
            raise OptionError(
                "--scheduler",
                f"cannot connect to {self.address}: "
                + _TRANSPORT_NEEDS.get(scheme, f"Dask cannot use this address ({exc})"),
            ) from None
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
            figures, share, read = value
            outcomes.update(figures)
            shares.update(share)
            sizes.update(read)
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

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

What Dask leaves to the caller is done here: the scheduler is identified with a bounded
handshake before a client is made (Dask's own connect waits for ever on a port where something
else listens), every worker is checked when the run connects (device, otcli and torch
versions, whether it sees the input files), a worker that cannot see an input the client sees
gets no more shards, and a lost scheduler ends the run with one line that says what was kept.
Dask's own log lines are silenced while a run is connected: the run says what went wrong.

dask is imported here only, and only when a run connects: without ``--scheduler`` it is never
imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import ProgressHook
from otcli.batch.journal import error_row
from otcli.batch.shards import (
    CloudSize,
    ShardSettings,
    UnfitWorker,
    WorkerReport,
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
#: Seconds to wait for a scheduler at a ``tcp://`` address before saying it is unreachable
#: (with the interpreter's start and the imports, the command ends within 10 s).
CONNECT_TIMEOUT = 3.0
#: Input files each worker is asked about when the run connects (a stat each).
SAMPLE_PATHS = 8
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


class SchedulerLost(SolverError):
    """The client lost its scheduler mid-run; the message says what was kept."""


class DaskBackend:
    """Runs ``batch`` and ``pairwise`` shards on a Dask cluster.

    ``scheduler`` is a running scheduler's address (``tcp://host:8786``) or ``local:N``, a
    ``LocalCluster`` of N single-threaded worker processes on this machine for the backend's
    life. Use it as a context manager: the run connects (:meth:`connect`) after its own checks
    and before it writes anything; leaving the block closes the client (and a local cluster).
    ``announce`` receives one line about the cluster (workers, devices, dashboard link);
    ``warn`` each warning (a worker that cannot see the inputs, another torch, ``local:N``
    with more workers than cores).
    """

    def __init__(
        self,
        scheduler: str,
        *,
        device: str | None = None,
        announce: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
        timeout: float = CONNECT_TIMEOUT,
        retries: int = RETRIES,
    ) -> None:
        self.address, self.local_workers = parse_scheduler(scheduler)
        self.device = device
        self.announce = announce
        self.warn = warn
        self.timeout = timeout
        self.retries = retries
        self.client: Any = None
        self._cluster: Any = None
        self._quiet = contextlib.ExitStack()
        self._threads_on_host: dict[str, int] = {}
        self._blind: dict[str, str] = {}  # worker → an input it cannot see
        # What each worker runs; a test wraps one (to kill its worker once mid-shard).
        self.batch_shard: Callable[..., Any] = solve_batch_shard
        self.pairwise_shard: Callable[..., Any] = solve_pairwise_shard

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        """The scheduler as the user gave it: its address, or ``local:N``."""
        return f"local:{self.local_workers}" if self.local_workers else self.address

    def close(self) -> None:
        """Disconnect; a local cluster's workers stop. Dask's loggers speak again after."""
        client, cluster, self.client, self._cluster = self.client, self._cluster, None, None
        try:
            if client is not None:
                with contextlib.suppress(Exception):  # a lost scheduler: nothing to tell
                    client.close(timeout=self.timeout)
            if cluster is not None:
                cluster.close()
        finally:
            self._quiet.close()

    def connect(self, config: SolveConfig, inputs: Sequence[str] = ()) -> None:
        """Connect (once), check every worker, announce the cluster.

        Raises :class:`~otcli.errors.OptionError` naming ``--scheduler`` when dask is not
        installed, the scheduler cannot be reached within ``timeout`` seconds (nothing there,
        or something that is not a Dask scheduler), or a worker runs another otcli than this
        machine; naming ``--device`` when a worker cannot use the device. A worker that
        cannot see the first few ``inputs`` this machine sees is named in a warning and gets
        no shards; one with another torch release is named in a warning.
        """
        if self.client is None:
            self.client = self._open()
        sample = [_portable(p) for p in dict.fromkeys(inputs) if _here(p)][:SAMPLE_PATHS]
        try:
            reports: dict[str, WorkerReport] = self.client.run(
                probe_worker, config, self.device, sample
            )
        except Exception as exc:  # e.g. a worker without otcli cannot unpickle the probe
            raise OptionError(
                "--scheduler",
                f"a Dask worker cannot run otcli ({type(exc).__name__}: {exc}); install it "
                "on every worker: pip install 'otcli[dask]'",
            ) from None
        for addr, report in sorted(reports.items()):
            if report.where:
                raise OptionError(report.where, f"{report.what} (on Dask worker {addr})")
        self._check_versions(reports)
        for addr, report in sorted(reports.items()):
            if report.unseen:
                self._exclude(addr, report.unseen[0])
        self._threads_on_host = _threads_on_host(self.client.nthreads())
        if self.announce is not None:
            self.announce(self._description(reports))

    def _open(self) -> Any:
        try:
            import distributed
        except ImportError:
            raise OptionError("--scheduler", NEEDS_DASK) from None
        self._quiet.enter_context(_quiet_dask_logs())
        if self.local_workers is not None:
            self._warn_oversubscribed(self.local_workers)
            cluster = distributed.LocalCluster(
                n_workers=self.local_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.CRITICAL,
            )  # fmt: skip
            self._cluster = cluster
            client = distributed.Client(cluster)
            client.wait_for_workers(self.local_workers)
            return client
        deadline = time.monotonic() + self.timeout
        identify_scheduler(self.address, self.timeout)
        left = max(1.0, deadline - time.monotonic())
        try:
            return distributed.Client(self.address, timeout=left)
        except (OSError, TimeoutError) as exc:  # gone between the handshake and now
            raise OptionError("--scheduler", _unreachable(self.address, self.timeout)) from exc

    def _check_versions(self, reports: dict[str, WorkerReport]) -> None:
        """Refuse workers with another otcli (the numbers may differ between versions); warn
        of another torch release (a CUDA build beside this CPU one is the same release)."""
        import torch

        import otcli

        mine = otcli.__version__
        other = {a: r.otcli for a, r in reports.items() if r.otcli != mine}
        if other:
            raise OptionError("--scheduler", _other_otcli(other, mine))
        release = torch.__version__.partition("+")[0]
        torches = {a: r.torch for a, r in reports.items() if r.torch.partition("+")[0] != release}
        if torches and self.warn is not None:
            named = _some(f"{a} (torch {v})" for a, v in sorted(torches.items()))
            self.warn(
                f"Dask worker(s) {named} run another torch than this machine "
                f"({torch.__version__}): their last digits may differ from an in-process run"
            )

    def _exclude(self, worker: str, unseen: str) -> None:
        """Send no more shards to ``worker``, which cannot see ``unseen``; say so once."""
        if worker in self._blind:
            return
        self._blind[worker] = unseen
        if self.warn is not None:
            self.warn(
                f"Dask worker {worker} cannot see {unseen}, which this machine reads; it gets "
                "no shards of this run (every worker needs the input files at the same "
                "absolute paths, or fsspec URLs)"
            )

    def _allowed_workers(self) -> list[str] | None:
        """The workers a shard may run on: ``None`` (any) until one was found blind."""
        if not self._blind:
            return None
        workers = self.client.nthreads()  # asked now (scheduler_info's copy may be stale)
        return sorted(set(workers) - set(self._blind))

    def _nobody_sees(self) -> str:
        """The error of the pairs no worker can read."""
        worker, path = next(iter(self._blind.items()))
        return (
            f"no Dask worker can see the input files this machine reads ({worker} cannot see "
            f"{path}); give every worker the files at the same absolute paths (a shared "
            "filesystem), or use fsspec URLs"
        )

    def _warn_oversubscribed(self, workers: int) -> None:
        from otcli.device import usable_cores

        cores = usable_cores()
        if workers > cores and self.warn is not None:
            self.warn(
                f"--scheduler local:{workers} starts {workers} worker processes on {cores} "
                f"usable core(s): likely slower than without --scheduler (local:4 on 2 cores "
                f"was 3.9× slower); use local:{cores} or leave --scheduler out"
            )

    def _description(self, reports: dict[str, WorkerReport]) -> str:
        if not reports:
            workers = "no workers yet (shards wait for `dask worker`)"
        else:
            devices = Counter(r.what for r in reports.values())
            kinds = ", ".join(f"{d} ×{k}" for d, k in sorted(devices.items()))
            workers = f"{len(reports)} worker(s) ({kinds})"
        info = self.client.scheduler_info(n_workers=0)
        if "dashboard" in info.get("services", {}) and self._scheduler_has_bokeh():
            board = f"dashboard: {self.client.dashboard_link}"
        else:
            board = "no dashboard (it needs bokeh on the scheduler: pip install bokeh)"
        return f"Dask {self.where}: {workers}; {board}"

    def _scheduler_has_bokeh(self) -> bool:
        """Whether the scheduler can draw its dashboard: without bokeh its pages only say
        that Dask needs bokeh."""
        import importlib.metadata

        try:
            return bool(self.client.run_on_scheduler(importlib.metadata.version, "bokeh"))
        except Exception:  # not installed there (or the scheduler runs no functions)
            return False

    def _settings(
        self, config: SolveConfig, read: ReadOptions, absent: frozenset[str] = frozenset(),
        **extra: Any,
    ) -> ShardSettings:  # fmt: skip
        import otcli

        return ShardSettings(
            config, read, self.device, dict(self._threads_on_host), uuid.uuid4().hex,
            otcli_version=otcli.__version__, absent=absent, **extra,
        )  # fmt: skip

    def _threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    # --- batch -----------------------------------------------------------------------------

    def run_batch(self, run: BatchRun, todo: Sequence[PairSpec]) -> None:
        """Score ``todo`` on the cluster; each finished shard's rows are journaled by ``run``
        (and its couplings written here, by the client) as in the in-process run.

        Raises :class:`SchedulerLost` if the scheduler goes away: the rows journaled so far
        are kept, and the message says that ``--resume`` continues."""
        config = run.engine.config
        portable = [
            replace(p, path_a=_portable(p.path_a), path_b=_portable(p.path_b)) for p in todo
        ]
        paths = {path for p in portable for path in (p.path_a, p.path_b)}
        absent = frozenset(path for path in paths if not _here(path))  # one stat per file
        settings = self._settings(
            config, run.read, absent, divergence=run.divergence, io_threads=run.workers,
            couplings=run.coupling_dir is not None,
        )  # fmt: skip
        size = shard_size(len(todo), self._threads(), config.max_batch)
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

            def fail(args: tuple[Any, ...], message: str) -> Any:
                return [error_row(p, message, run.eps_of(p)) for p in args[0]], {}

            try:
                self._stream(self.batch_shard, shards, settings, record, fail)
            except SchedulerLost:
                journal = getattr(run.journal, "path", "the journal")
                raise SchedulerLost(
                    f"--scheduler: lost the Dask scheduler at {self.where} mid-run; "
                    f"{len(run.rows)} of {len(run.pairs)} pairs are done and kept in "
                    f"{str(journal)!r}: rerun the same command with --resume, once a "
                    "scheduler runs, to continue"
                ) from None

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

        def fail(args: tuple[Any, ...], message: str) -> Any:
            part_paths, part = args
            return dict.fromkeys(part, message), {}, dict.fromkeys(part_paths, message)

        absent = frozenset(p for p in paths if not _here(p))
        settings = self._settings(config, read, absent, io_threads=workers)
        try:
            self._stream(self.pairwise_shard, shards, settings, record, fail)
        except SchedulerLost:
            done = len(outcomes)
            raise SchedulerLost(
                f"--scheduler: lost the Dask scheduler at {self.where} mid-run, with {done} "
                f"of {len(keys)} pairs done; a square matrix is written whole at the end, so "
                "nothing was written: run the command again once a scheduler runs"
            ) from None
        clouds = [s if isinstance(s, str) else CloudSize(s) for s in (sizes[i] for i in range(n))]
        return clouds, outcomes, shares

    # --- submitting ------------------------------------------------------------------------

    def _stream(
        self,
        fn: Callable[..., Any],
        shards: Sequence[tuple[Any, ...]],
        settings: ShardSettings,
        record: Callable[[Any], None],
        fail: Callable[[tuple[Any, ...], str], Any],
    ) -> None:
        """Submit the shards (a bounded number in flight) and ``record`` each one's result as
        it finishes; if recording stops the run (an error, ``--fail-fast``, Ctrl-C), the
        shards still queued or running are cancelled.

        A shard that a worker did not run (:class:`~otcli.batch.shards.UnfitWorker`) stops
        the run if that worker runs another otcli; if it cannot see an input, the worker
        is excluded and the shard goes to the others, or, when no worker is left that sees
        the inputs, its pairs fail with ``fail(shard, why)``, recorded like a result."""
        from distributed import as_completed

        client = self.client
        name = getattr(fn, "__name__", "shard")
        queue = iter(enumerate(shards))
        tries = itertools.count()
        finished = as_completed()
        live: dict[Any, tuple[int, tuple[Any, ...]]] = {}

        def submit(k: int, args: tuple[Any, ...]) -> None:
            allowed = self._allowed_workers()
            if allowed == []:  # every worker was found blind
                record(fail(args, self._nobody_sees()))
                return
            future = client.submit(
                fn, *args, settings, key=f"otdist-{name}-{k}-{next(tries)}-{settings.run_id}",
                retries=self.retries, pure=False, workers=allowed, allow_other_workers=False,
            )  # fmt: skip
            live[future] = (k, args)
            finished.add(future)

        def top_up(count: int) -> None:
            for k, args in itertools.islice(queue, count):
                submit(k, args)

        try:
            top_up(max(4, IN_FLIGHT_PER_THREAD * self._threads()))
            for future in finished:
                k, args = live.pop(future)
                value = self._shard_result(future)
                future.release()
                if isinstance(value, UnfitWorker):
                    if value.otcli is not None:
                        other = {value.address: value.otcli}
                        raise OptionError(
                            "--scheduler", _other_otcli(other, settings.otcli_version)
                        )
                    self._exclude(value.address, value.unseen or "")
                    submit(k, args)
                    continue
                top_up(1)
                record(value)
        finally:
            if live and self._connected():
                client.cancel(list(live))

    def _connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    def _gone(self, exc: Exception, wait: float = 2.0) -> bool:
        """Whether a closed connection was the scheduler's: it names the scheduler, or the
        client stops running within ``wait`` seconds."""
        if str(self.where) in str(exc):
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self._connected():
                return True
            time.sleep(0.1)
        return False

    def _shard_result(self, future: Any) -> Any:
        """A finished shard's value; a shard the cluster could not compute is a SolverError,
        and one cancelled because the scheduler went away is :class:`SchedulerLost`."""
        try:
            return future.result()
        except OtcliError:
            raise
        except Exception as exc:
            lost = getattr(exc, "reason", None) == "scheduler-connection-lost"
            # The connection to the scheduler can close under a gather before the client
            # notices (seen in CI: CommClosedError naming the scheduler, status "running").
            lost = lost or (type(exc).__name__ == "CommClosedError" and self._gone(exc))
            if lost or not self._connected():
                raise SchedulerLost(
                    f"--scheduler: lost the Dask scheduler at {self.where}"
                ) from None
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


def _here(path: str) -> bool:
    """Whether this machine sees an input (a URL: taken as seen, the workers read it)."""
    from otcli.io.common import is_url

    return is_url(path) or os.path.exists(path)


def _some(names: Iterator[str] | Sequence[str], most: int = 3) -> str:
    """The first ``most`` of ``names``, and how many more."""
    names = list(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _other_otcli(workers: dict[str, str], mine: str) -> str:
    """Why workers with another otcli (worker → its version) are refused."""
    named = _some(f"{a} (otcli {v})" for a, v in sorted(workers.items()))
    return (
        f"Dask worker(s) {named} run another otcli than this machine ({mine}), and the numbers "
        f"may differ between versions: install otcli {mine} on every worker"
    )


def _unreachable(address: str, timeout: float, why: str = "") -> str:
    return (
        f"cannot reach a Dask scheduler at {address} within {timeout:g} s{why}; start one "
        "there with `dask scheduler`, or check the address"
    )


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Silence Dask's (and tornado's) loggers in this process for the block: a lost scheduler
    or worker is told by the run in one line, not by their tracebacks."""
    prefixes = ("distributed", "tornado")
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes]
    loggers = [logging.getLogger(n) for n in {*prefixes, *names}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def identify_scheduler(address: str, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """What answers at ``address``: the scheduler's identity (its ``services`` say whether it
    has a dashboard), asked with a handshake bounded by ``timeout`` seconds.

    Dask's own connect retries a refused connection for its timeout, but once a socket is open
    it waits for the other side's handshake with no limit: on a port where something else
    listens (the dashboard's 8787, a web server, a silent socket) ``Client(timeout=10)`` waits
    for ever. Here the whole exchange runs under ``asyncio.wait_for`` in a thread of its own
    (a caller may have its own event loop running). Raises
    :class:`~otcli.errors.OptionError` naming ``--scheduler``: nothing answers, something that
    is not a Dask scheduler answers, or a Dask worker answers.
    """
    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    answer: dict[str, Any] = {}

    def run() -> None:
        try:
            answer["identity"] = asyncio.run(asyncio.wait_for(ask(), timeout))
        except BaseException as exc:  # reported by the caller's thread
            answer["error"] = exc

    thread = threading.Thread(target=run, name="otdist-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    exc, identity = answer.get("error"), answer.get("identity")
    if isinstance(exc, TypeError):  # dask's word for a transport it cannot set up here
        scheme = address.partition("://")[0].lower()
        raise OptionError(
            "--scheduler",
            f"cannot connect to {address}: "
            + _TRANSPORT_NEEDS.get(scheme, f"Dask cannot use this address ({exc})"),
        )
    if thread.is_alive() or exc is not None:
        if _listens(address):
            why = (
                ": something listens there but does not answer as a Dask scheduler (the "
                "dashboard's port is 8787, the scheduler's 8786)"
            )
        else:
            why = f" ({exc})" if isinstance(exc, ValueError) else ""  # an unparsable address
        raise OptionError("--scheduler", _unreachable(address, timeout, why))
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        kind = identity.get("type") if isinstance(identity, dict) else None
        what = f"a Dask {kind.lower()}" if isinstance(kind, str) else "not a Dask scheduler"
        raise OptionError(
            "--scheduler",
            f"{address} is {what}, not the scheduler; give the scheduler's address (`dask "
            "scheduler` prints it)",
        )
    return identity


def _listens(address: str) -> bool:
    """Whether a plain TCP connection to ``address`` opens (within a second): something
    listens there, whatever it speaks."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme != "tcp":
            return False
        with socket.create_connection(parse_host_port(location), timeout=1.0):
            return True
    except (OSError, ValueError, TypeError):
        return False

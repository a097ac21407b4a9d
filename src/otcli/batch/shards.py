"""The work of one Dask task of ``otdist batch`` or ``pairwise``: the in-process code on a shard.

:func:`solve_batch_shard` runs the in-process :class:`~otcli.batch.solving.BatchRun` on a shard's
pairs (reading their clouds, self terms, buckets, rows) and returns the rows instead of
journaling them; :func:`solve_pairwise_shard` runs the in-process pairwise solve on a shard's
pairs, each file read once per worker process. Both first resolve the device on this worker
and give torch this worker's share of the host's cores. The client side is
:mod:`otcli.batch.cluster`; nothing here imports dask unless it runs in a Dask worker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otcli.batch.engine import CloudLoader, Engine
from otcli.batch.solving import BatchRun, solve_pairs
from otcli.config import ReadOptions, SolveConfig
from otcli.errors import OtcliError

if TYPE_CHECKING:
    from otcli.batch.manifest import PairSpec
    from otcli.result import SinkhornResult


@dataclass(frozen=True)
class ShardSettings:
    """What every shard of one run needs besides its own pairs (pickled with each shard).

    ``device`` is the user's ``--device``, resolved on each worker (``auto``: that worker's
    best device); ``None`` keeps ``config.device``. ``threads_on_host`` counts the worker
    threads on each host, which share its cores. ``otcli_version`` and ``absent`` let a
    worker tell that it must not run a shard (:class:`UnfitWorker`).
    """

    config: SolveConfig
    read: ReadOptions
    device: str | None
    threads_on_host: dict[str, int]
    run_id: str
    divergence: bool = False
    io_threads: int = 4
    couplings: bool = False
    #: The client's otcli version: a worker that runs another one does not solve the shard.
    otcli_version: str = ""
    #: Input paths the client cannot see either: missing there too, they fail their pairs.
    absent: frozenset[str] = frozenset()


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


@dataclass(frozen=True)
class WorkerReport:
    """What a worker says about itself when the client connects (:func:`probe_worker`)."""

    where: str  # "" when the device is usable here, else the option at fault
    what: str  # the device it would solve on, or what is wrong with it
    otcli: str  # its otcli version
    torch: str  # its torch version
    unseen: tuple[str, ...] = ()  # of the paths asked about, those it cannot see


def probe_worker(
    config: SolveConfig, device: str | None, paths: Sequence[str] = ()
) -> WorkerReport:
    """On a worker: the device it would solve on (or what is wrong), its otcli and torch
    versions, and which of ``paths`` (input files the client sees) it cannot see."""
    import torch

    import otcli

    try:
        where, what = "", _on_device(config, device).device
    except OtcliError as exc:
        where, what = exc.where, exc.what
    return WorkerReport(where, what, otcli.__version__, torch.__version__, _unseen(paths))


@dataclass(frozen=True)
class UnfitWorker:
    """A shard's answer from a worker that did not run it, and why: it runs another otcli
    than the client (``otcli``, its version), or it cannot see an input file that the client
    sees (``unseen``: another mount namespace, a machine without the shared filesystem).
    Its pairs are not at fault; the client decides (refuse the run, or send the shard to
    another worker)."""

    address: str
    otcli: str | None = None
    unseen: str | None = None


def unfit_worker(settings: ShardSettings, paths: Sequence[str]) -> UnfitWorker | None:
    """On a worker, before a shard: why this worker must not run it, else ``None``.

    A stat of each input path of the shard (not of URLs, nor of paths the client cannot
    see either: those fail their own pairs as in-process)."""
    import otcli

    if settings.otcli_version and otcli.__version__ != settings.otcli_version:
        return UnfitWorker(_address(), otcli=otcli.__version__)
    unseen = _unseen(p for p in paths if p not in settings.absent)
    return UnfitWorker(_address(), unseen=unseen[0]) if unseen else None


def _unseen(paths: Iterable[str]) -> tuple[str, ...]:
    """The local paths among ``paths`` that do not exist on this machine."""
    from otcli.io.common import is_url

    return tuple(p for p in dict.fromkeys(paths) if not is_url(p) and not os.path.exists(p))


def _address() -> str:
    worker = _this_worker()
    return "this process" if worker is None else str(worker.address)


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

    from otcli.device import usable_cores

    sharing = threads_on_host.get(get_address_host(worker.address)) or worker.state.nthreads
    threads = max(1, usable_cores() // max(1, sharing))
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
) -> tuple[list[dict[str, Any]], dict[str, Any]] | UnfitWorker:
    """On a worker: the in-process batch code on ``pairs`` (read, self terms, buckets, rows);
    their rows, and the ok pairs' results when the client writes couplings (or why this
    worker must not run them: :func:`unfit_worker`)."""
    unfit = unfit_worker(settings, [path for p in pairs for path in (p.path_a, p.path_b)])
    if unfit is not None:
        return unfit
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
) -> (
    tuple[dict[tuple[int, int], Any], dict[tuple[int, int], float], dict[int, int | str]]
    | UnfitWorker
):
    """On a worker: the in-process pairwise code on the pairs ``keys`` of the files
    ``paths`` (index → path); each pair's figures or error, its seconds, the clouds' sizes
    (or why this worker must not run them: :func:`unfit_worker`)."""
    unfit = unfit_worker(settings, list(paths.values()))
    if unfit is not None:
        return unfit
    share_cores(settings.threads_on_host)
    config = worker_config(settings.config, settings.device)
    clouds = _clouds(paths, settings)
    listed = [clouds.get(i, "") for i in range(max(paths) + 1)]  # only the shard's are read
    outcomes, shares = solve_pairs(listed, Engine.create(config), config.eps, None, keys)
    figures = {k: o if isinstance(o, str) else PairFigures.of(o) for k, o in outcomes.items()}
    sizes = {i: c if isinstance(c, str) else c.n for i, c in clouds.items()}
    return figures, shares, sizes

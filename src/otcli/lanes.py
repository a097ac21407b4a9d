"""Buckets of small problems solved side by side on a CPU, one per core.

A list of pairs is solved bucket by bucket (:func:`otcli.buckets.plan_buckets`). On a CPU,
a bucket of small clouds does not keep two cores busy with torch's own threads: between its
kernel products, most of an iteration is small tensor operations and the Python that
decides (a few microseconds each, one core), and a second thread meets the first at a
barrier after every parallel operation. Two buckets side by side, each on one thread,
keep both cores at work instead: torch releases the GIL inside its operations, so the
lanes wait on each other only for the Python around them.

Each bucket's result is the same as alone: every bucket is its own batched solve, only
torch's thread count (one) differs from a sequential run, and results come back in the
buckets' order.

A list given up (Ctrl-C or SIGTERM in the main thread, a bucket that raised) stops its
running buckets at their next convergence check: each lane's solve reports to a
:class:`Serialized` progress, which raises :class:`Stopped` there. Without it the main
thread waited for them to end: Ctrl-C on ``otdist batch --threads 2`` (200-point pairs,
ε = 3e-4) took 7.5 s to exit, against 0.05 s on one thread (measured under load).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, TypeVar

from otcli.buckets import CPU_BUCKET_BYTES
from otcli.config import DENSE_MATRICES
from otcli.device import auto_threads, solve_threads, usable_cores

if TYPE_CHECKING:
    from otcli.config import SolveConfig

T = TypeVar("T")

#: How often the main thread wakes while it waits for a lane: a signal the kernel hands to
#: a lane's thread runs its Python handler only when the main thread runs Python.
WAKE_SECONDS = 0.1

_lane = threading.local()  # ``stop``: the running list's event, in a lane's thread


class Stopped(BaseException):
    """Raised in a lane at its solve's next check once its list is given up. Not an
    ``Exception``: the batch engine's per-pair retry must not catch it."""


def lane_count(
    config: SolveConfig, shapes: Sequence[tuple[int, int]], buckets: Sequence[Sequence[int]]
) -> int:
    """How many buckets to solve at once: on a CPU, the threads the config asks for (or,
    for ``auto``, the cores other work leaves free now), given two buckets per lane and as
    many of the largest bucket as the memory budget holds at once; one where a bucket is
    larger than the CPU's cache-sized unit (a pair too large to share a bucket: its memory
    was budgeted for one solve at a time, and torch's threads pay on it).

    ``shapes`` are the problems' (n, m), ``buckets`` their indices as solved together.
    """
    if config.torch_device.type != "cpu" or len(buckets) < 2:
        return 1
    unit = CPU_BUCKET_BYTES // config.itemsize
    largest = max(
        len(idx) * max(shapes[k][0] for k in idx) * max(shapes[k][1] for k in idx)
        for idx in buckets
    )
    if largest > unit:
        return 1
    threads = config.threads if config.threads is not None else auto_threads()
    threads = min(threads, usable_cores())  # a lane per core: more only queue for the GIL
    # Buckets are sized for one solve at a time within the memory budget: side by side,
    # the lanes share it (one memory model: DENSE_MATRICES matrices per padded entry).
    room = config.memory_budget() // (DENSE_MATRICES * config.itemsize)
    threads = min(threads, max(1, room // largest))
    # With fewer than two buckets per lane the last ones run alone on one thread, where
    # torch's threads would have shared the cores.
    return threads if len(buckets) >= 2 * threads else 1


def in_lanes(jobs: Sequence[Callable[[], T]], lanes: int) -> Iterator[T]:
    """The jobs' results in order, ``lanes`` of them running at once with torch on one
    thread each (``lanes`` ≤ 1: one after another, as the caller set torch).

    A job that raises stops the rest and its exception is raised where its result would
    have been yielded; so does an exception in the caller (Ctrl-C) or closing the iterator.
    Jobs not started are cancelled, running ones stop at their next check (their solves
    report to a :class:`Serialized` progress), and this returns once they have.
    """
    if lanes <= 1:
        for job in jobs:
            yield job()
        return
    stop = threading.Event()

    def run(job: Callable[[], T]) -> T:
        _lane.stop = stop
        try:
            return job()
        finally:
            _lane.stop = None

    with solve_threads(1), ThreadPoolExecutor(lanes, thread_name_prefix="otcli-lane") as pool:
        futures = [pool.submit(run, job) for job in jobs]
        try:
            for future in futures:
                yield _result(future)
        finally:
            stop.set()
            for future in futures:
                future.cancel()


def _result(future: Future[T]) -> T:
    """The future's result, the main thread waking every :data:`WAKE_SECONDS` meanwhile."""
    while not future.done():
        wait([future], timeout=WAKE_SECONDS)
    return future.result()


def _check_stop() -> None:
    """Raise :class:`Stopped` in a lane whose list was given up; elsewhere nothing."""
    stop = getattr(_lane, "stop", None)
    if stop is not None and stop.is_set():
        raise Stopped


class Serialized:
    """What a lane's solve reports to: the caller's progress callback (and its ``stage``
    hook), if any, called from one lane at a time; first, the stop check (:class:`Stopped`
    once the lane's list is given up)."""

    def __init__(self, progress: Callable[..., object] | None = None) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, *args: object) -> None:
        _check_stop()
        if self._progress is not None:
            with self._lock:
                self._progress(*args)

    def stage(self, description: str) -> None:
        _check_stop()
        hook = getattr(self._progress, "stage", None)
        if hook is not None:
            with self._lock:
                hook(description)


__all__ = ["Serialized", "Stopped", "in_lanes", "lane_count"]

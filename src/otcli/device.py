"""Device and dtype choice (CUDA, then Apple MPS, else CPU), CPU threads, the memory budget."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from otcli.errors import DeviceError, OptionError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def pick_device(spec: str | torch.device = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:K|mps`` (or a ``torch.device``) to a device this machine
    has, or raise DeviceError."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError("--device", "mps requested but Apple MPS is not available here")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2]
        if index and not index.isdigit():
            raise DeviceError("--device", f"bad CUDA device {spec!r}; use cuda or cuda:K")
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device", f"{spec} requested but CUDA is not available here; use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(
                "--device", f"{spec}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        return torch.device(spec)
    raise OptionError("--device", f"unknown device {spec!r}; use auto, cpu, cuda, cuda:K or mps")


def pick_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Resolve ``float32|float64`` (or ``torch.float32``/``torch.float64``); MPS has no
    float64."""
    if isinstance(name, torch.dtype):
        name = str(name).removeprefix("torch.")
    if name not in DTYPES:
        raise OptionError("--dtype", f"unknown dtype {name!r}; use float32 or float64")
    if device.type == "mps" and name == "float64":
        raise DeviceError(
            "--dtype", "Apple MPS has no float64; use --dtype float32 or --device cpu"
        )
    return DTYPES[name]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def memory_budget(device: torch.device) -> int:
    """Bytes the solver may spend on n×m buffers: half of what is free on the device now."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        return info.get("MemAvailable", info["MemFree"]) // 2
    except (OSError, KeyError, ValueError, IndexError):
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return max(pages * os.sysconf("SC_PAGE_SIZE") // 2, 1 << 30)


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB': sizes in messages a person reads."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def resolve_threads(spec: str | int | None) -> int | None:
    """CPU threads for torch: a count, or ``None`` for ``auto`` (and where neither
    ``spec`` nor ``OTCLI_THREADS`` says): then each solve takes the cores other work leaves
    free at its start (:func:`solve_threads`). A long batch sees the load as it changes; a
    count fixed once when the command started kept one thread for a whole run because
    another process happened to run at that moment."""
    if spec is None:
        spec = os.environ.get("OTCLI_THREADS") or None
        if spec is None:
            return None
        option = "OTCLI_THREADS"
    else:
        option = "--threads"
    text = str(spec).strip().lower()
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise OptionError(option, f"must be a positive whole number or auto, got {spec!r}")
    return count


@contextlib.contextmanager
def solve_threads(threads: int | None) -> Iterator[int]:
    """Torch's CPU threads for one solve: ``threads`` where given, else the cores other work
    leaves free (:func:`auto_threads`): idle, a second thread made a 500-point pair 1.5×
    faster; beside a busy process, its barriers made one 15× slower. The caller's setting
    is restored after."""
    if threads is None:  # looked at per solve: the load changes between a batch's buckets
        threads = auto_threads()
    before = torch.get_num_threads()
    if threads == before:
        yield threads
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def auto_threads() -> int:
    """The cores this process may use, less those other work keeps busy right now, at least one.

    Torch's worker threads meet at a barrier after every parallel operation: where another
    process shares a core, each barrier can wait for a time slice, and a solve of small
    problems slowed 10-100x on the 2-core machines here under heavy load (a 45 x 180 x 180
    batched product took 8 ms instead of 85 us on one thread). A thread that does not share
    its core never waits. "Busy right now" is the count of other runnable processes
    (``/proc/loadavg``'s fourth field), the least of three looks 2 ms apart so that a passing
    process does not count; where that is not available, the 1-minute load average, which
    lags: a pipeline's previous step would still count for a minute.
    """
    cores = usable_cores()
    busy = _runnable_others()
    if busy is None:
        try:
            busy = int(os.getloadavg()[0])
        except (AttributeError, OSError):
            busy = 0
    return max(1, min(cores, cores - busy))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's
    share), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _runnable_others() -> int | None:
    """Threads of other processes runnable now (least of three looks), or None off Linux.
    A look that sees none ends it at once: on an idle machine the answer costs one read,
    not 4 ms. This process's own runnable threads do not count: right after a parallel
    operation torch's workers still spin for a few milliseconds, and the reader threads of
    a batch run share the work, not compete with it."""
    import time

    seen = []
    for k in range(3):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        seen.append(max(0, running - 1))  # this thread is one of them
        if seen[-1] > 0:
            seen[-1] = max(0, running - _own_runnable())
        if seen[-1] == 0:
            return 0
        if k < 2:
            time.sleep(0.002)
    return min(seen)


def _own_runnable() -> int:
    """This process's threads in the running state (at least 1: the caller), from
    /proc/self/task; 1 where that cannot be read."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)


def release_freed_memory() -> None:
    """Hand memory that was freed back to the system, where the allocators keep it: glibc's
    heap (``malloc_trim``; a 2,000-point solve left 75 MB of freed heap in the process) and
    pyarrow's pool. For long runs that go on after a big phase (``otdist map``: moving a
    million points after reading and solving). Does nothing where neither applies."""
    import ctypes
    import sys

    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): no trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)

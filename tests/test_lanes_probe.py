"""Lanes under interruption: Ctrl-C (a KeyboardInterrupt in the main thread) ends a list
solve at the running buckets' next convergence check, not when they finish.

Before, the main thread waited in ``in_lanes`` for every running bucket to end: a SIGINT to
``otdist batch --threads 2`` at ε = 3e-4 on 200-point pairs took 7.5 s to exit, where
``--threads 1`` exited in 0.05 s. Oracles: the number of progress calls each lane makes
after the interrupt (a lane that stops at its next check makes at most one), the lane
threads (none left running), torch's thread count (the caller's), and the one-thread solve
of the same list (still bit for bit the lanes' numbers, with the stop check in place).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import otcli
import otcli.api
from conftest import otdist
from otcli.batch.engine import Engine, Problem
from otcli.cloud import as_cloud_list
from otcli.config import make_config

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)


def slow_pairs(count: int, n: int = 200, seed: int = 3) -> tuple[list, list]:
    """Pairs whose buckets take many checks at ε = 1e-4 (uniform points in the unit square)."""
    rng = np.random.default_rng(seed)
    return [rng.random((n, 2)) for _ in range(count)], [rng.random((n, 2)) for _ in range(count)]


class Alarm:
    """A KeyboardInterrupt raised in the main thread ``after`` seconds (like Ctrl-C)."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.at: float | None = None

    def __enter__(self) -> Alarm:
        def handler(signum: int, frame: object) -> None:
            self.at = time.perf_counter()
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, self.after)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def lane_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("otcli-lane")]


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_ctrl_c_stops_the_running_lanes_at_their_next_check(two_threads: None) -> None:
    xs, ys = slow_pairs(160)
    after: list[str] = []
    alarm = Alarm(0.5)

    def progress(it: int, eps: float, err: float) -> None:
        if alarm.at is not None:
            after.append(threading.current_thread().name)

    with alarm, pytest.raises(KeyboardInterrupt):
        otcli.solve(xs, ys, eps=1e-4, device="cpu", threads=2, max_iter=100_000,
                    progress=progress)  # fmt: skip
    assert alarm.at is not None
    # Each of the two lanes stops at its next check: at most one call each after Ctrl-C
    # (before, the running buckets ran on to their end: hundreds of checks).
    assert len(after) <= 2, f"{len(after)} progress calls after the interrupt"
    assert lane_threads() == []
    assert torch.get_num_threads() == 2


def test_ctrl_c_in_a_batch_engine_run_ends_within_a_check(two_threads: None) -> None:
    xs, ys = slow_pairs(160, seed=4)
    cx, cy = as_cloud_list(xs, None, "x")[0], as_cloud_list(ys, None, "y")[0]
    config = make_config(device="cpu", threads=2, max_iter=100_000)
    engine = Engine.create(config)
    problems = [Problem(x, y, 1e-4) for x, y in zip(cx, cy, strict=True)]
    done: list[int] = []

    def consume() -> None:
        for idx, _ in engine.solve_in_buckets(problems):
            done.extend(idx)

    with Alarm(0.5) as alarm, pytest.raises(KeyboardInterrupt):
        consume()
    assert alarm.at is not None
    # A bucket of 200-point pairs at ε = 1e-4 runs for seconds to minutes; a check is
    # milliseconds apart. The lanes end at their next one (2 s: a loaded machine).
    assert time.perf_counter() - alarm.at < 2.0
    assert lane_threads() == []
    assert torch.get_num_threads() == 2
    assert done == []  # nothing finished in half a second


def test_the_stop_check_leaves_the_numbers_as_one_thread_gives_them() -> None:
    rng = np.random.default_rng(5)
    xs = [rng.random((int(rng.integers(10, 90)), 3)) for _ in range(24)]
    ys = [rng.random((int(rng.integers(10, 90)), 3)) for _ in range(24)]
    cx, cy = as_cloud_list(xs, None, "x")[0], as_cloud_list(ys, None, "y")[0]
    problems = [Problem(x, y, 0.02) for x, y in zip(cx, cy, strict=True)]
    out = {}
    for threads in (1, 2):
        engine = Engine.create(make_config(device="cpu", threads=threads))
        got: dict[int, object] = {}
        for idx, outs in engine.solve_in_buckets(problems):
            got.update(zip(idx, outs, strict=True))
        out[threads] = [got[k] for k in range(len(problems))]
    for one, two in zip(out[1], out[2], strict=True):
        assert (one.cost, one.iterations, one.marginal_error) == (
            two.cost, two.iterations, two.marginal_error
        )  # fmt: skip
        assert one.converged


def test_lanes_side_by_side_stay_within_the_memory_budget() -> None:
    """``--memory`` bounds the n×m matrices: buckets are sized to fill it one solve at a
    time, so lanes side by side must share it (two full buckets at once were twice it).
    Oracle: the memory model itself (2 matrices of the dtype per padded entry)."""
    from otcli.buckets import plan_buckets
    from otcli.lanes import lane_count

    shapes = [(100, 100)] * 80
    # 1 MiB holds 13 such pairs (2 float32 matrices each): buckets that fill it, one lane;
    # buckets of 4 pairs (max_batch), two lanes of them fit.
    for memory, max_batch, lanes in ((1 << 20, 64, 1), (1 << 20, 4, 2)):
        config = make_config(device="cpu", threads=2, memory=memory)
        buckets = plan_buckets(shapes, max_entries=config.bucket_entries(), max_batch=max_batch)
        assert len(buckets) >= 4  # two or more per lane
        largest = max(len(b) for b in buckets) * 100 * 100 * 2 * 4
        assert lane_count(config, shapes, buckets) == lanes
        assert lanes * largest <= memory


def test_sigterm_from_a_lane_ends_otdist_batch_at_once_and_keeps_the_journal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel may hand a process's signal to any of its threads: here a lane sends
    SIGTERM to the process at its 5th convergence check. ``otdist batch --threads 2`` exits
    143 with its ``interrupted`` line, the lanes stopping at their next check once the main
    thread has seen it (before: the running buckets ran on to their end, 1,680 checks), and the
    journal is there for ``--resume``."""
    xs, ys = slow_pairs(8, seed=6)
    for k in range(8):
        np.save(tmp_path / f"x{k}.npy", xs[k])
        np.save(tmp_path / f"y{k}.npy", ys[k])
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("id,a,b\n" + "".join(f"{i},x{i % 8}.npy,y{i // 8 % 8}.npy\n"
                                              for i in range(160)))  # fmt: skip
    checks, sent = [0], [False]
    real = otcli.api.sinkhorn_loop

    def loop(geom, log_a, log_b, eps, opts, progress, warm):  # type: ignore[no-untyped-def]
        def counted(it: int, e: float, err: float) -> None:
            checks[0] += 1
            if checks[0] == 5 and not sent[0]:
                sent[0] = True
                os.kill(os.getpid(), signal.SIGTERM)
            if progress is not None:
                progress(it, e, err)

        return real(geom, log_a, log_b, eps, opts, counted, warm)

    monkeypatch.setattr(otcli.api, "sinkhorn_loop", loop)
    out = tmp_path / "out.parquet"
    code, _, err = otdist(capfd, "batch", manifest, "-o", out, "--eps", "1e-4", "--threads", "2",
                          "--max-iter", "100000", "--no-progress")  # fmt: skip
    assert sent[0]
    assert code == 143, err
    assert "interrupted" in err and "--resume" in err
    # The main thread handles the signal at its next wake (0.1 s; later on a loaded
    # machine), the lanes checking on meanwhile: a bound with room for that, far below the
    # 1,680 checks of the buckets run to their end.
    assert checks[0] <= 5 + 200, f"{checks[0] - 5} checks after SIGTERM"
    journal = Path(f"{out}.journal.jsonl")
    assert journal.exists() and not out.exists()
    for line in journal.read_text().splitlines():
        json.loads(line)  # whole lines only

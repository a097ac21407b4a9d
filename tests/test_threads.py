"""The CPU thread policy: explicit counts, OTCLI_THREADS, and auto (cores less the load)."""

from __future__ import annotations

import os

import pytest
import torch

import otcli.device as device
from conftest import otdist
from otcli.errors import OptionError


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("cores", "load", "expected"), [(2, 0.3, 2), (2, 1.2, 1), (2, 7.0, 1),
                                                          (16, 3.9, 13), (4, 0.0, 4)])  # fmt: skip
def test_auto_leaves_the_cores_other_work_keeps_busy(monkeypatch, cores, load, expected):
    """Off /proc (or where it cannot be read), the 1-minute load average decides."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.setattr(device, "_runnable_others", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert device.auto_threads() == expected


@pytest.mark.parametrize(("samples", "expected"), [(["1/80"], 2),  # idle: one look is enough
                                                    (["2/80", "3/80", "2/80"], 1),
                                                    (["1/80", "3/80", "1/80"], 2)])  # fmt: skip
def test_auto_counts_what_runs_now_not_the_last_minute(monkeypatch, samples, expected):
    """A busy process that runs now counts; one that ran a minute ago (the load average
    still shows it) or passes between two looks does not."""
    import builtins
    import io

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(device, "_own_runnable", lambda: 1)
    looks = iter(samples)
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            return io.StringIO(f"5.00 5.00 5.00 {next(looks)} 12345\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert device.auto_threads() == expected


def test_auto_does_not_count_this_processs_own_threads(monkeypatch):
    """Torch's workers spin for a while after a parallel operation, and a batch's reader
    threads run beside the solver: neither is other work. Two threads of this process
    running and one other process: one core is busy, not two."""
    import builtins
    import io

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(device, "_own_runnable", lambda: 2)
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            return io.StringIO("1.00 1.00 1.00 3/80 12345\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert device.auto_threads() == 3


def test_own_runnable_threads_are_counted_from_proc():
    """At least the caller; no more than the process's threads."""
    count = device._own_runnable()
    assert 1 <= count <= len(os.listdir("/proc/self/task"))


def test_resolve_threads(monkeypatch):
    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    assert device.resolve_threads(None) is None  # auto, decided per solve
    assert device.resolve_threads(3) == 3
    assert device.resolve_threads("auto") is None  # not a count fixed once for a whole run
    monkeypatch.setenv("OTCLI_THREADS", "2")
    assert device.resolve_threads(None) == 2
    monkeypatch.setenv("OTCLI_THREADS", "auto")
    assert device.resolve_threads(None) is None
    monkeypatch.setenv("OTCLI_THREADS", "lots")
    with pytest.raises(OptionError, match="OTCLI_THREADS: must be a positive whole number or auto"):
        device.resolve_threads(None)


def _threads_seen(monkeypatch) -> list[int]:
    """Record torch's thread count inside every solve."""
    from otcli import api

    seen: list[int] = []
    real = api._solve_clouds

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "_solve_clouds", spy)
    return seen


def test_the_command_solves_with_the_threads_it_was_given(capfd, monkeypatch):
    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    seen = _threads_seen(monkeypatch)
    torch.set_num_threads(2)
    code, _, err = otdist(
        capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--threads", "1", "-q"
    )
    assert code == 0, err
    assert seen == [1] and torch.get_num_threads() == 2  # the caller's setting comes back
    code, _, err = otdist(
        capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--threads", "0"
    )
    assert (code, err) == (
        2,
        "Error: --threads: must be a positive whole number or auto, got '0'\n",
    )


def test_the_command_names_otcli_threads_when_it_is_the_bad_setting(capfd, monkeypatch):
    """A bad count from the environment is named as the environment variable, not --threads."""
    monkeypatch.setenv("OTCLI_THREADS", "0")
    code, out, err = otdist(capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "-q")
    assert code == 2 and out == ""
    assert err == "Error: OTCLI_THREADS: must be a positive whole number or auto, got '0'\n"


def test_the_library_picks_threads_per_solve_and_restores_the_callers(monkeypatch):
    import numpy as np

    import otcli

    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    monkeypatch.setattr(device, "auto_threads", lambda: 2)
    seen = _threads_seen(monkeypatch)
    torch.set_num_threads(3)
    x = np.random.default_rng(0).random((20, 2))
    otcli.solve(x, x + 1, device="cpu")  # the free cores (auto_threads, here 2)
    otcli.solve(x, x + 1, device="cpu", threads=1)  # as asked
    monkeypatch.setattr(device, "auto_threads", lambda: 1)  # another process got busy
    otcli.solve(x, x + 1, device="cpu")
    assert seen == [2, 1, 1]
    assert torch.get_num_threads() == 3

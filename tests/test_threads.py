"""The CPU thread policy: explicit counts, OTCLI_THREADS, and auto (cores less the load)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert device.auto_threads() == expected


def test_resolve_threads(monkeypatch):
    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    assert device.resolve_threads(None) is None  # the library leaves torch alone
    assert device.resolve_threads(3) == 3
    monkeypatch.setenv("OTCLI_THREADS", "2")
    assert device.resolve_threads(None) == 2
    monkeypatch.setenv("OTCLI_THREADS", "lots")
    with pytest.raises(OptionError, match="OTCLI_THREADS: must be a positive whole number or auto"):
        device.resolve_threads(None)


def test_the_command_sets_the_threads_it_was_given(capfd, monkeypatch):
    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    torch.set_num_threads(2)
    code, _, err = otdist(
        capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--threads", "1", "-q"
    )
    assert code == 0, err
    assert torch.get_num_threads() == 1
    code, _, err = otdist(
        capfd, "sample_data/moons_a.csv", "sample_data/moons_b.csv", "--threads", "0"
    )
    assert (code, err) == (
        2,
        "Error: --threads: must be a positive whole number or auto, got '0'\n",
    )


def test_the_library_leaves_threads_alone_unless_asked(monkeypatch):
    import numpy as np

    import otcli

    monkeypatch.delenv("OTCLI_THREADS", raising=False)
    torch.set_num_threads(2)
    x = np.random.default_rng(0).random((20, 2))
    otcli.solve(x, x + 1, device="cpu")
    assert torch.get_num_threads() == 2
    otcli.solve(x, x + 1, device="cpu", threads=1)
    assert torch.get_num_threads() == 1


def test_openmp_waits_sleep_unless_the_user_chose(tmp_path):
    """OMP_WAIT_POLICY=PASSIVE is set before torch loads, never over the user's choice."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = "import os, otcli; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = src
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"

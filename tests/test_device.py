"""``otcli.device``: device and dtype names, the memory budget, sizes in messages.

Oracles: torch's own view of the machine (``torch.cuda.is_available``), /proc/meminfo and
``os.sysconf`` read here, exact error text, and byte counts worked out by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from otcli.device import format_bytes, memory_budget, pick_device, pick_dtype
from otcli.errors import DeviceError, OptionError

MEMINFO = Path("/proc/meminfo")


def _mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


# --- pick_device ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu\n"])
def test_pick_device_cpu(spec):
    assert pick_device(spec) == torch.device("cpu")


def test_pick_device_auto_is_the_best_this_machine_has():
    if torch.cuda.is_available():
        expected = "cuda"
    elif _mps():
        expected = "mps"
    else:
        expected = "cpu"
    assert pick_device().type == pick_device("auto").type == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tpu", "--device: unknown device 'tpu'; use auto, cpu, cuda, cuda:K or mps"),
        ("", "--device: unknown device ''; use auto, cpu, cuda, cuda:K or mps"),
        ("gpu0", "--device: unknown device 'gpu0'; use auto, cpu, cuda, cuda:K or mps"),
        ("cuda:x", "--device: bad CUDA device 'cuda:x'; use cuda or cuda:K"),
    ],
)
def test_pick_device_bad_specs(spec, message):
    with pytest.raises(OptionError) as info:
        pick_device(spec)
    assert str(info.value) == message
    assert info.value.where == "--device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_pick_device_cuda_absent(spec):
    with pytest.raises(DeviceError) as info:
        pick_device(spec)
    assert str(info.value) == (
        f"--device: {spec} requested but CUDA is not available here; use --device cpu"
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pick_device_cuda_present():
    count = torch.cuda.device_count()
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError) as info:
        pick_device(f"cuda:{count}")
    assert str(info.value) == f"--device: cuda:{count}: only {count} CUDA device(s) here"


@pytest.mark.skipif(_mps(), reason="this machine has Apple MPS")
def test_pick_device_mps_absent():
    with pytest.raises(DeviceError) as info:
        pick_device("mps")
    assert str(info.value) == "--device: mps requested but Apple MPS is not available here"


# --- pick_dtype -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"), [("float32", torch.float32), ("float64", torch.float64)]
)
def test_pick_dtype_names(name, dtype):
    assert pick_dtype(name, torch.device("cpu")) is dtype


@pytest.mark.parametrize("name", ["float16", "Float32", "double", ""])
def test_pick_dtype_unknown(name):
    with pytest.raises(OptionError) as info:
        pick_dtype(name, torch.device("cpu"))
    assert str(info.value) == f"--dtype: unknown dtype {name!r}; use float32 or float64"


def test_pick_dtype_mps_has_no_float64():
    """Checked from the device's type alone: no MPS hardware is needed to refuse it."""
    mps = torch.device("mps")
    assert pick_dtype("float32", mps) is torch.float32
    with pytest.raises(DeviceError) as info:
        pick_dtype("float64", mps)
    assert str(info.value) == (
        "--dtype: Apple MPS has no float64; use --dtype float32 or --device cpu"
    )


# --- memory_budget ----------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (its figures are in kB)."""
    out = {}
    for line in MEMINFO.read_text().splitlines():
        key, value = line.split(":")
        out[key] = int(value.split()[0]) * 1024
    return out


@pytest.mark.skipif(not MEMINFO.exists(), reason="needs /proc/meminfo")
def test_memory_budget_cpu_is_half_the_available_memory():
    before = _meminfo()
    budget = memory_budget(torch.device("cpu"))
    after = _meminfo()
    assert isinstance(budget, int)
    assert 0 < budget <= before["MemTotal"] // 2
    # Available memory moves while the tests run: bracket it by the two readings, with slack.
    low = min(before["MemAvailable"], after["MemAvailable"]) // 2
    high = max(before["MemAvailable"], after["MemAvailable"]) // 2
    assert 0.9 * low <= budget <= 1.1 * high


def test_memory_budget_without_meminfo_uses_sysconf(monkeypatch):
    """Where /proc/meminfo cannot be read, half the available pages, at least 1 GiB."""
    import otcli.device

    opened = []

    def no_proc(path, *args, **kwargs):
        opened.append(path)
        raise OSError("no /proc here")

    monkeypatch.setattr(otcli.device, "open", no_proc, raising=False)

    def expected() -> int:
        return max(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2, 1 << 30)

    before = expected()
    budget = memory_budget(torch.device("cpu"))
    after = expected()
    assert opened == ["/proc/meminfo"]  # the fallback did run
    assert budget >= 1 << 30
    assert 0.9 * min(before, after) <= budget <= 1.1 * max(before, after)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_budget_cuda_is_half_the_free_memory():
    free, total = torch.cuda.mem_get_info()
    budget = memory_budget(torch.device("cuda"))
    assert 0 < budget <= total // 2
    assert budget == pytest.approx(free // 2, rel=0.05)


# --- format_bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (40 * 30 * 8, "9.4 KiB"),  # the dense 40×30 float64 coupling in the CLI's message
        (1000 * 300 * 8, "2.3 MiB"),
        (1 << 20, "1.0 MiB"),
        (5 * (1 << 30), "5.0 GiB"),
        (1023.4, "1023 B"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text

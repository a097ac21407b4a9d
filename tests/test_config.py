"""The one configuration object: built and checked once, and honoured by every command.

The memory budget and the geometry used to reach ``otcli.solve`` but not ``otdist batch`` or
``pairwise``: these tests pin that each way of solving takes the same decisions.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import otcli
from otcli.batch import Engine, Problem
from otcli.buckets import CPU_BUCKET_BYTES
from otcli.cli import run
from otcli.cloud import make_cloud
from otcli.config import DEFAULT_TOL, SolveConfig, dense_bytes, eps_values, make_config
from otcli.errors import OptionError


def test_defaults_resolve_once():
    c = make_config(device="cpu")
    assert isinstance(c, SolveConfig)
    assert (c.device, c.dtype, c.tol, c.check_every, c.geometry) == (
        "cpu",
        "float32",
        1e-5,
        1,
        "auto",
    )
    assert make_config(dtype="float64", device="cpu").tol == DEFAULT_TOL["float64"] == 1e-7
    assert make_config(tol=3e-4).tol == 3e-4
    assert c.cost.name == "sqeuclidean"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.eps = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "--eps: ε must be a positive finite number, got 0.0"),
        ({"memory": 0}, "--memory: must be a positive number of bytes, got 0"),
        ({"max_batch": 0}, "--max-batch: must be ≥ 1, got 0"),
        (
            {"geometry": "sparse"},
            "--geometry: unknown geometry 'sparse'; use auto, dense, online or multiscale",
        ),
        ({"max_iter": True}, "--max-iter: must be a positive integer, got True"),
    ],
)
def test_one_message_per_bad_value(kwargs, message):
    with pytest.raises(OptionError) as info:
        make_config(**kwargs)
    assert str(info.value) == message


def test_eps_values_one_per_problem():
    c = make_config(eps=0.3)
    assert eps_values(c, None, 3) == [None, None, None]  # the config's, resolved per pair
    assert eps_values(c, 0.2, 2) == [0.2, 0.2]
    assert eps_values(c, [0.1, 0.2], 2) == [0.1, 0.2]
    with pytest.raises(OptionError, match="2 ε values for 3 pairs"):
        eps_values(c, [0.1, 0.2], 3)


def test_one_memory_model_for_buckets_and_geometry():
    """A bucket planned within the budget is solved densely: both use dense_bytes."""
    c = make_config(memory=10_000_000, device="cpu")
    entries = c.bucket_entries()
    assert entries == min(CPU_BUCKET_BYTES // 4, 10_000_000 // (2 * 4))
    assert dense_bytes(1, entries, 1, c.itemsize) <= c.memory_budget()
    assert dense_bytes(1, entries + 1, 1, c.itemsize) > c.memory_budget()


def _problems(count: int = 3, n: int = 40) -> list[Problem]:
    rng = np.random.default_rng(3)
    return [
        Problem(make_cloud(rng.random((n, 2))), make_cloud(rng.random((n + 5, 2))), 0.05)
        for _ in range(count)
    ]


def test_batch_engine_honours_memory_budget():
    """The bug: batch's engine ignored --memory when picking the geometry."""
    problems = _problems()
    small = Engine.create(make_config(memory=1024, device="cpu")).solve(problems)
    big = Engine.create(make_config(device="cpu")).solve(problems)
    assert {r.geometry for r in small} == {"online"}
    assert {r.geometry for r in big} == {"dense"}
    for s, b in zip(small, big, strict=True):
        assert s.converged and b.converged
        assert s.cost == pytest.approx(b.cost, rel=1e-4)
    # The library agrees with the engine for the same budget.
    r = otcli.solve(problems[0].x, problems[0].y, eps=0.05, memory=1024, device="cpu")
    assert r.geometry == "online"


def test_engine_names_what_ran():
    p = _problems(1)[0]
    dense = otcli.solve(p.x, p.y, eps=0.05, device="cpu")
    online = otcli.solve(p.x, p.y, eps=0.05, device="cpu", geometry="online")
    assert (dense.geometry, dense.engine) == ("dense", "kernel")
    assert (online.geometry, online.engine) == ("online", "online")


def _write(path, pts):
    np.save(path, pts)
    return path


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(5)
    rows = ["a,b"]
    for k in range(3):
        a = _write(tmp_path / f"a{k}.npy", rng.random((30, 2)))
        b = _write(tmp_path / f"b{k}.npy", rng.random((25, 2)))
        rows.append(f"{a.name},{b.name}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_geometry_and_memory_options(capfd, manifest, tmp_path):
    base = ["batch", str(manifest), "--eps", "0.05", "--device", "cpu"]
    assert run([*base, "-o", str(tmp_path / "d.jsonl")]) == 0
    assert run([*base, "-o", str(tmp_path / "o.jsonl"), "--geometry", "online"]) == 0
    assert run([*base, "-o", str(tmp_path / "m.jsonl"), "--memory", "1K"]) == 0
    dense, online, small = (_rows(tmp_path / f"{k}.jsonl") for k in "dom")
    for d, o, s in zip(dense, online, small, strict=True):
        assert d["status"] == o["status"] == s["status"] == "ok"
        assert o["cost"] == pytest.approx(d["cost"], rel=1e-4)
        assert s["cost"] == pytest.approx(o["cost"], rel=1e-4)
    # Dense asked for explicitly, over an explicit budget: every pair says why, exit 1.
    code = run([*base, "-o", str(tmp_path / "x.jsonl"), "--geometry", "dense", "--memory", "1K"])
    assert code == 1
    errors = {r["error"] for r in _rows(tmp_path / "x.jsonl")}
    assert len(errors) == 1 and "over the --memory budget" in errors.pop()
    capfd.readouterr()


def test_pairwise_takes_geometry(capfd, manifest, tmp_path):
    files = sorted(str(p) for p in tmp_path.glob("*.npy"))[:3]
    args = ["pairwise", *files, "--eps", "0.05", "--device", "cpu"]
    assert run([*args, "-o", str(tmp_path / "d.npy")]) == 0
    assert run([*args, "-o", str(tmp_path / "o.npy"), "--geometry", "online"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), np.load(tmp_path / "d.npy"), rtol=1e-4)
    capfd.readouterr()

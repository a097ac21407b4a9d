"""Buckets solved side by side (otcli.lanes): the same numbers as one after another.

Oracles: the sequential solve of the same buckets (bit-for-bit: each bucket is its own
batched solve on one thread either way) and POT's ``sinkhorn_log`` run to convergence.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import ot
import pytest
import torch

import otcli
from otcli.api import _buckets
from otcli.cloud import as_cloud_list
from otcli.config import make_config
from otcli.device import usable_cores
from otcli.lanes import Serialized, in_lanes, lane_count


def ragged_pairs(count: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(count):
        n, m = (int(s) for s in rng.integers(20, 160, 2))
        xs.append(rng.random((n, 3)))
        ys.append(rng.random((m, 3)))
    return xs, ys


def test_lanes_give_the_sequential_numbers_in_the_callers_order() -> None:
    xs, ys = ragged_pairs(40)
    buckets = _buckets(
        as_cloud_list(xs, None, "x")[0], as_cloud_list(ys, None, "y")[0], make_config(device="cpu")
    )
    shapes = [(len(x), len(y)) for x, y in zip(xs, ys, strict=True)]
    assert lane_count(make_config(device="cpu", threads=2), shapes, buckets) == 2
    before = torch.get_num_threads()
    side = otcli.solve(xs, ys, eps=0.01, tol=1e-5, device="cpu", threads=2)
    assert torch.get_num_threads() == before  # the caller's setting, restored
    one = otcli.solve(xs, ys, eps=0.01, tol=1e-5, device="cpu", threads=1)
    for r, s, x, y in zip(side, one, xs, ys, strict=True):
        assert (r.n, r.m) == (len(x), len(y))
        assert r.cost == s.cost and r.iterations == s.iterations
        assert r.converged and r.marginal_error <= r.tol
    for k in (0, 17, 39):  # and those numbers are the converged entropic plans' costs
        a, b = np.full(len(xs[k]), 1 / len(xs[k])), np.full(len(ys[k]), 1 / len(ys[k]))
        M = ot.dist(xs[k], ys[k])
        P = ot.sinkhorn(a, b, M, 0.01, method="sinkhorn_log", stopThr=1e-12, numItermax=100000)
        assert side[k].cost == pytest.approx(float((P * M).sum()), rel=1e-4)


def test_lane_count_follows_the_threads_and_the_bucket_sizes() -> None:
    two = make_config(device="cpu", threads=2)
    small = [(100, 100)] * 6
    four = [[0, 1], [2], [3], [4, 5]]
    assert lane_count(two, small, four) == 2
    assert lane_count(two, small, [[0, 1, 2], [3, 4, 5]]) == 1  # a lane would run one alone
    assert lane_count(two, small, [[0, 1, 2, 3, 4, 5]]) == 1
    assert lane_count(make_config(device="cpu", threads=1), small, four) == 1
    cores = usable_cores()  # more threads than cores: one lane per core
    shapes = [(100, 100)] * (2 * cores)
    per_pair = [[k] for k in range(2 * cores)]
    assert lane_count(make_config(device="cpu", threads=64), shapes, per_pair) == cores
    big = [(100, 100)] * 3 + [(3000, 3000)]  # 9M entries: more than a CPU bucket's 8 MiB
    assert lane_count(two, big, [[0], [1], [2], [3]]) == 1


def test_in_lanes_yields_in_order_and_raises_where_the_failing_job_is() -> None:
    def job(k: int):
        def run() -> int:
            time.sleep(0.02 * (5 - k))  # later jobs finish first
            if k == 3:
                raise ValueError("bucket 3")
            return k

        return run

    got = []
    results = in_lanes([job(k) for k in range(6)], 2)
    got += [next(results) for _ in range(3)]
    with pytest.raises(ValueError, match="bucket 3"):
        next(results)
    assert got == [0, 1, 2]
    assert list(in_lanes([job(k) for k in (0, 1, 2)], 2)) == [0, 1, 2]


def test_progress_from_lanes_is_called_one_at_a_time() -> None:
    inside, overlaps, calls = [0], [0], []
    guard = threading.Lock()

    class Progress:
        def __call__(self, it: int, eps: float, err: float) -> None:
            with guard:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
            time.sleep(0.0005)
            calls.append(it)
            with guard:
                inside[0] -= 1

        def stage(self, text: str) -> None:
            calls.append(text)

    xs, ys = ragged_pairs(30, seed=1)
    otcli.solve(xs, ys, eps=0.01, device="cpu", threads=2, progress=Serialized(Progress()))
    otcli.solve(xs, ys, eps=0.01, device="cpu", threads=2, progress=Progress())
    assert overlaps[0] == 0
    assert any(isinstance(c, int) for c in calls) and "solving" in calls

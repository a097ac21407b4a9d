"""``otcli.buckets``: size-grouped buckets cover every problem once, within every cap.

Oracles: each bucket's padded and real entries recomputed here from the shapes, the index
multiset, and hand-worked groupings (identical shapes share buckets; far sizes do not).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otcli.buckets import DEFAULT_MAX_ENTRIES, MAX_PADDING, bucket_entries, plan_buckets


def padded_and_real(shapes: list[tuple[int, int]], bucket: list[int]) -> tuple[int, int]:
    """(B · n_max · m_max, Σ n·m) of one bucket."""
    ns = [shapes[k][0] for k in bucket]
    ms = [shapes[k][1] for k in bucket]
    return len(bucket) * max(ns) * max(ms), sum(n * m for n, m in zip(ns, ms, strict=True))


def assert_valid_plan(
    shapes: list[tuple[int, int]], buckets: list[list[int]], max_entries: int, max_batch: int
) -> None:
    flat = [k for b in buckets for k in b]
    assert sorted(flat) == list(range(len(shapes)))  # every index exactly once
    for b in buckets:
        assert 1 <= len(b) <= max_batch
        padded, real = padded_and_real(shapes, b)
        if len(b) > 1:  # only a lone problem may exceed the cap
            assert padded <= max_entries, (b, padded, max_entries)
        assert padded <= MAX_PADDING * real, (b, padded, real)


shape_lists = st.lists(
    st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=0, max_size=120
)


@settings(max_examples=200, deadline=None)
@given(
    shapes=shape_lists,
    max_entries=st.integers(1, 1 << 20),
    max_batch=st.integers(1, 70),
)
def test_property_cover_once_within_caps(shapes, max_entries, max_batch):
    buckets = plan_buckets(shapes, max_entries=max_entries, max_batch=max_batch)
    assert_valid_plan(shapes, buckets, max_entries, max_batch)


def test_random_sizes_pad_little_and_fill_buckets():
    """500 pairs of 50–500 points: within 1.5× padding, and far fewer buckets than pairs."""
    rng = np.random.default_rng(4)
    shapes = [(int(n), int(m)) for n, m in rng.integers(50, 500, size=(500, 2))]
    buckets = plan_buckets(shapes, max_entries=DEFAULT_MAX_ENTRIES, max_batch=64)
    assert_valid_plan(shapes, buckets, DEFAULT_MAX_ENTRIES, 64)
    padded = sum(padded_and_real(shapes, b)[0] for b in buckets)
    real = sum(n * m for n, m in shapes)
    assert padded <= MAX_PADDING * real
    assert len(buckets) <= len(shapes) // 4


def test_identical_shapes_split_only_by_max_batch():
    shapes = [(20, 30)] * 10
    assert plan_buckets(shapes, max_entries=10**9, max_batch=64) == [list(range(10))]
    buckets = plan_buckets(shapes, max_entries=10**9, max_batch=4)
    assert [len(b) for b in buckets] == [4, 4, 2]
    assert sorted(k for b in buckets for k in b) == list(range(10))


def test_identical_shapes_split_by_max_entries():
    shapes = [(20, 30)] * 10  # 600 entries each: 3 fit in 2000
    buckets = plan_buckets(shapes, max_entries=2000, max_batch=64)
    assert [len(b) for b in buckets] == [3, 3, 3, 1]


def test_far_sizes_do_not_share_a_bucket():
    """(10, 10) padded to (100, 100) would be 2 · 10⁴ entries for 10,100 real: 1.98× > 1.5×."""
    shapes = [(100, 100), (10, 10), (100, 100), (10, 10)]
    buckets = plan_buckets(shapes, max_entries=10**9, max_batch=64)
    assert sorted(sorted(b) for b in buckets) == [[0, 2], [1, 3]]


def test_oversized_problem_gets_a_bucket_to_itself():
    shapes = [(5, 5), (100, 100), (5, 5)]
    buckets = plan_buckets(shapes, max_entries=1000, max_batch=64)
    assert [1] in buckets
    assert sorted(sorted(b) for b in buckets) == [[0, 2], [1]]


def test_no_problems_no_buckets():
    assert plan_buckets([], max_entries=100, max_batch=4) == []


# --- bucket_entries ---------------------------------------------------------------------------


@pytest.mark.parametrize("bytes_per_value", [8, 16])
def test_bucket_entries_monotone_in_the_budget(bytes_per_value):
    budgets = sorted({0, 1, 12, 13, 25, 26, 1000, 10**6, 10**9, 10**12, *range(0, 500, 7)})
    entries = [bucket_entries(b, bytes_per_value) for b in budgets]
    assert entries == sorted(entries)
    assert min(entries) == 1 and max(entries) == DEFAULT_MAX_ENTRIES


@settings(max_examples=200, deadline=None)
@given(budget=st.integers(0, 1 << 40), extra=st.integers(0, 1 << 30), bpv=st.sampled_from([8, 16]))
def test_property_bucket_entries_fit_and_grow(budget, extra, bpv):
    e = bucket_entries(budget, bpv)
    assert 1 <= e <= DEFAULT_MAX_ENTRIES
    assert bucket_entries(budget + extra, bpv) >= e
    assert bucket_entries(budget, 16) <= bucket_entries(budget, 8)  # float64 fits fewer
    # the bytes per entry of the one memory model (config.dense_bytes) stay within budget
    per_entry = bpv
    if budget >= per_entry:
        assert e * per_entry <= budget
        assert e == DEFAULT_MAX_ENTRIES or (e + 1) * per_entry > budget  # and as many as fit


def test_bucket_entries_values():
    # C and Cᵀ (or K̃): 2 · 4 = 8 bytes an entry in float32, 16 in float64
    assert bucket_entries(8 * 1000, 8) == 1000
    assert bucket_entries(16 * 1000, 16) == 1000
    assert bucket_entries(7, 8) == 1  # never 0: one entry is always allowed
    assert bucket_entries(1 << 40, 8) == DEFAULT_MAX_ENTRIES == 1 << 22

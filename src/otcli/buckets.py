"""Buckets: group OT problems of similar size so each batched solve pads little.

A batched solve pads every problem to the bucket's largest (n, m); grouping problems of
similar sizes keeps that waste small, and capping a bucket's entries keeps its buffers within
memory. Used by :func:`otcli.solve` on lists, ``otdist batch`` and ``otdist pairwise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# A work unit (one solve) holds at most this many padded cost entries (16 MiB in float32),
# however much memory there is: the loop's per-iteration Python overhead is amortised long
# before, and a bigger unit only makes finished pairs wait longer for the slowest one. On the
# 2-core CPU here, units of 2^22 and 2^24 entries ran within noise of each other for pairs of
# 100–500 points.
DEFAULT_MAX_ENTRIES = 1 << 22
# On a CPU a unit's matrices should stay in the last-level cache between products: the
# Sinkhorn loop reads the whole kernel twice per iteration, with vector work in between.
# 8 MiB per matrix (2^21 float32 entries; C and the kernel together half a 32 MiB L3):
# 1,000 ragged pairs of 100–500 points ran at 284–321 pairs/s, against 267–312 at 2^22
# entries and 254–272 at 2^20 (three alternating runs, 2-core EPYC here; in-loop products
# ran at ~50 GB/s in 16 MiB units, a bare product loop at ~120 GB/s from cache).
CPU_BUCKET_BYTES = 8 << 20
# Pairs whose first cloud sizes differ by less than this factor share a size class; within a
# class pairs are sorted by the second size, so a bucket pads each side by little.
SIZE_CLASS_RATIO = 1.25
# A bucket closes when padding would exceed this multiple of its real entries.
MAX_PADDING = 1.5


def plan_buckets(
    shapes: Sequence[tuple[int, int]],
    *,
    max_entries: int,
    max_batch: int,
    class_ratio: float = SIZE_CLASS_RATIO,
    max_padding: float = MAX_PADDING,
) -> list[list[int]]:
    """Group problem indices into buckets of similar (n, m), each one batched solve.

    Problems are sorted by a geometric class of n, then by m, then n; consecutive ones share a
    bucket while its padded size B·n_max·m_max stays within ``max_entries`` and within
    ``max_padding`` times its real entries Σ n·m, and B ≤ ``max_batch``. A problem larger than
    ``max_entries`` on its own gets a bucket to itself. Every index appears exactly once.
    """
    step = math.log(class_ratio)

    def key(k: int) -> tuple[int, int, int]:
        n, m = shapes[k]
        return int(math.log(max(n, 1)) / step), m, n

    buckets: list[list[int]] = []
    current: list[int] = []
    n_max = m_max = real = 0
    for k in sorted(range(len(shapes)), key=key):
        n, m = shapes[k]
        nn, mm = max(n_max, n), max(m_max, m)
        padded = (len(current) + 1) * nn * mm
        fits = (
            len(current) < max_batch
            and padded <= max_entries
            and padded <= max_padding * (real + n * m)
        )
        if current and not fits:
            buckets.append(current)
            current, nn, mm, real = [], n, m, 0
        current.append(k)
        n_max, m_max, real = nn, mm, real + n * m
    if current:
        buckets.append(current)
    return buckets


def bucket_entries(budget: int, bytes_per_entry: int, cap: int = DEFAULT_MAX_ENTRIES) -> int:
    """Padded entries one bucket may hold within ``budget`` bytes of memory.

    ``bytes_per_entry`` comes from the one memory model (:func:`otcli.config.dense_bytes`),
    so that a bucket planned within the budget is also solved densely; the cap
    (:data:`DEFAULT_MAX_ENTRIES`, or the CPU's cache-sized one) applies however large the
    budget.
    """
    return max(1, min(cap, budget // bytes_per_entry))

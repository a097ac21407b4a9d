"""Write a result's coupling and cost matrices: all requested files appear, or none.

Matrices are streamed block by block from the potentials (see ``SinkhornResult.plan_blocks``),
so writing never needs more than one block in memory beyond what the format itself needs.
Blocks are sized by entries, not rows (:func:`block_rows`): a block of a 100,000-column
matrix holds as few rows as it takes to stay within the memory budget.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from otcli.errors import OptionError, OtcliError
from otcli.io import Block, atomic_write, write_matrix
from otcli.result import SinkhornResult

if TYPE_CHECKING:
    from otcli.exact import ExactResult

# A coupling entry below this fraction of the largest one is left out of long-format files.
DEFAULT_RELATIVE_THRESHOLD = 1e-9
# Entries per block at most (4 MiB per float64 array), however much memory there is: larger
# blocks buy no speed, the per-block Python work is amortised long before.
BLOCK_ENTRIES = 1 << 19
# Bytes one block entry costs at the peak of an export, measured (RSS of a 3,000 × 3,000 top-k
# export under budgets of 8-64 MiB): the float64 cost and plan blocks, torch's temporaries while
# P is rebuilt, np.argpartition's int64 indices, the masks and the masked copy for
# --coupling-topk, and the allocator's slack.
BYTES_PER_ENTRY = 128


def block_rows(m: int, memory: int | None = None) -> int:
    """Rows per block of an ``m``-column export: :data:`BLOCK_ENTRIES` entries, fewer if the
    ``memory`` budget (bytes; ``None``: no budget beyond that cap) holds fewer."""
    entries = BLOCK_ENTRIES if memory is None else min(BLOCK_ENTRIES, memory // BYTES_PER_ENTRY)
    return max(1, entries // max(1, m))


def check_threshold(threshold: float | None) -> None:
    """``--coupling-threshold`` must be a number: NaN or ±inf would keep nothing (or all)."""
    if threshold is not None and not math.isfinite(threshold):
        raise OptionError("--coupling-threshold", f"must be a finite number, got {threshold}")


BlockSource = Callable[[int], Iterator[Block]]


def write_matrices(
    result: SinkhornResult | ExactResult,
    *,
    coupling: str | os.PathLike[str] | None = None,
    cost_matrix: str | os.PathLike[str] | None = None,
    coupling_threshold: float | None = None,
    coupling_topk: int | None = None,
    ids: tuple[np.ndarray, np.ndarray] | None = None,
    memory: int | None = None,
    note: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the coupling and/or cost matrix by extension; return the paths written.

    Long formats keep coupling entries above ``coupling_threshold`` (default: 1e-9 of the
    largest entry), and of those only the ``coupling_topk`` largest of each row if given;
    they keep every cost entry. Where the clouds carry point ids (``ids``, default the
    result's clouds' :attr:`~otcli.cloud.Cloud.ids`), long formats add ``i_id``/``j_id``
    columns with them. Blocks are sized within ``memory`` bytes (:func:`block_rows`). Files
    are renamed into place together at the end: if any write
    fails, none of them exists afterwards.

    A ``.parquet`` file records in its metadata what the long format cannot say itself
    (:func:`matrix_metadata`: n, m, the kind, ε, the cost, the threshold, top-k and the kept
    mass); where a long coupling keeps less than :data:`KEPT_MASS_NOTE` of the plan's mass,
    ``note`` hears how much (a top-5 coupling of a 20,000-point pair keeps about 2%).
    """
    check_threshold(coupling_threshold)
    shape = (result.n, result.m)
    if ids is None:
        ids = (result.x.ids, result.y.ids)
    point_ids = tuple(v if len(v) else None for v in ids)
    rows = block_rows(result.m, memory)
    jobs = []
    if coupling is not None:
        if coupling_threshold is None:
            peak = max(float(blk.max()) for _, _, blk in result.plan_blocks(rows))
            coupling_threshold = DEFAULT_RELATIVE_THRESHOLD * peak
        blocks = result.plan_blocks
        if coupling_topk is not None:
            blocks = _top_k(result.plan_blocks, coupling_topk)
        meta = matrix_metadata(result, "coupling", coupling_threshold, coupling_topk)
        jobs.append((Path(coupling), blocks, coupling_threshold, meta))
    if cost_matrix is not None:
        meta = matrix_metadata(result, "cost", None, None)
        jobs.append((Path(cost_matrix), result.cost_blocks, -1.0, meta))
    with contextlib.ExitStack() as stack:
        for path, blocks, threshold, meta in jobs:
            tmp = stack.enter_context(atomic_write(path))
            try:
                kept = write_matrix(
                    tmp, blocks(rows), shape, threshold=threshold,
                    ids=None if tmp.suffix == ".npy" else point_ids,  # type: ignore[arg-type]
                    metadata=meta,
                )  # fmt: skip
            except OtcliError as exc:  # name the user's path, not the temporary one
                raise type(exc)(str(path), exc.what) from exc
            mass = getattr(result, "mass", 1.0) or 1.0
            if (
                meta["otcli.kind"] == "coupling"
                and note is not None
                and kept < KEPT_MASS_NOTE * mass
            ):
                cuts = [f"entries above {threshold:.3g}"]
                if coupling_topk is not None:
                    cuts.insert(0, f"--coupling-topk {coupling_topk}")
                left = ", ".join(cuts)
                note(
                    f"{path}: the long format keeps {kept / mass:.1%} of the plan's mass "
                    f"({left}); the rest is left out"
                )
    return [path for path, _, _, _ in jobs]


#: A long coupling that keeps less than this share of the plan's mass is pointed out.
KEPT_MASS_NOTE = 0.999


def matrix_metadata(
    result: SinkhornResult | ExactResult, kind: str, threshold: float | None, topk: int | None
) -> dict[str, str]:
    """What a stored matrix cannot say itself, as text for a Parquet file's metadata."""
    meta = {
        "otcli.kind": kind, "otcli.n": str(result.n), "otcli.m": str(result.m),
        "otcli.cost": result.cost_fn.describe(),
        # an exact plan (--exact) has no ε and carries mass 1
        "otcli.eps": repr(float(getattr(result, "eps", 0.0))),
        "otcli.plan_mass": repr(float(getattr(result, "mass", 1.0))),
    }  # fmt: skip
    if threshold is not None and threshold >= 0:
        meta["otcli.threshold"] = repr(float(threshold))
    if topk is not None:
        meta["otcli.topk"] = str(topk)
    return meta


def _top_k(plan_blocks: BlockSource, k: int) -> BlockSource:
    """Blocks where all but each row's k largest entries are −1, below any threshold ≥ 0."""

    def blocks(block_rows: int) -> Iterator[Block]:
        for i0, j0, blk in plan_blocks(block_rows):
            if k < blk.shape[1]:
                top = np.argpartition(blk, blk.shape[1] - k, axis=1)[:, -k:]  # (rows, k)
                keep = np.zeros(blk.shape, dtype=bool)
                np.put_along_axis(keep, top, True, axis=1)
                blk = np.where(keep, blk, -1.0)
            yield i0, j0, blk

    return blocks


def check_writable(
    n: int,
    m: int,
    *,
    coupling: str | os.PathLike[str] | None,
    cost_matrix: str | os.PathLike[str] | None,
    topk: int | None,
    memory: int | None,
    ids: bool = False,
    threshold: float | None = None,
) -> None:
    """Refuse, before any solving, outputs that cannot be written for an n×m problem.

    A dense ``.npy`` matrix of n×m float64 must fit the memory budget (``memory`` bytes,
    default half the free RAM): past that, the long formats are the way to go. Point ids
    (``ids``: ``--id`` was given) need a long-format coupling.
    """
    from otcli.device import format_bytes, memory_budget

    check_threshold(threshold)
    if topk is not None and topk < 1:
        raise OptionError("--coupling-topk", f"must be ≥ 1, got {topk}")
    if topk is not None and coupling is not None and Path(coupling).suffix.lower() == ".npy":
        raise OptionError("--coupling-topk", "applies to .parquet, .csv and .tsv, not .npy")
    dense = [
        (option, path)
        for option, path in (("--coupling", coupling), ("--cost-matrix", cost_matrix))
        if path is not None and Path(path).suffix.lower() == ".npy"
    ]
    if ids and coupling is not None and Path(coupling).suffix.lower() == ".npy":
        raise OptionError(
            "--id",
            f"{coupling}: a dense .npy coupling has no room for point ids; write .parquet, "
            ".csv or .tsv (long format i, j, value, i_id, j_id)",
        )
    if not dense:
        return
    if memory is None:
        import torch

        memory = memory_budget(torch.device("cpu"))
    need = n * m * 8
    for option, path in dense:
        if need > memory:
            raise OptionError(
                option,
                f"{path}: a dense {n}×{m} float64 matrix needs {format_bytes(need)}, over the "
                f"memory budget of {format_bytes(memory)}; write .parquet or .csv (long "
                "format i, j, value of the entries above --coupling-threshold) instead",
            )

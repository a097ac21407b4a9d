"""Write a result's coupling and cost matrices: all requested files appear, or none.

Matrices are streamed block by block from the potentials (see ``SinkhornResult.plan_blocks``),
so writing never needs more than one block in memory beyond what the format itself needs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from otcli.errors import OtcliError
from otcli.io import atomic_write, write_matrix
from otcli.result import SinkhornResult

# A coupling entry below this fraction of the largest one is left out of long-format files.
DEFAULT_RELATIVE_THRESHOLD = 1e-9
BLOCK_ROWS = 4096


def write_matrices(
    result: SinkhornResult,
    *,
    coupling: str | os.PathLike[str] | None = None,
    cost_matrix: str | os.PathLike[str] | None = None,
    coupling_threshold: float | None = None,
) -> list[Path]:
    """Write the coupling and/or cost matrix by extension; return the paths written.

    Long formats keep coupling entries above ``coupling_threshold`` (default: 1e-9 of the
    largest entry) and every cost entry. Files are renamed into place together at the end:
    if any write fails, none of them exists afterwards.
    """
    shape = (result.n, result.m)
    jobs = []
    if coupling is not None:
        if coupling_threshold is None:
            peak = max(float(blk.max()) for _, _, blk in result.plan_blocks(BLOCK_ROWS))
            coupling_threshold = DEFAULT_RELATIVE_THRESHOLD * peak
        jobs.append((Path(coupling), result.plan_blocks, coupling_threshold))
    if cost_matrix is not None:
        jobs.append((Path(cost_matrix), result.cost_blocks, -1.0))
    with contextlib.ExitStack() as stack:
        for path, blocks, threshold in jobs:
            tmp = stack.enter_context(atomic_write(path))
            try:
                write_matrix(tmp, blocks(BLOCK_ROWS), shape, threshold=threshold)
            except OtcliError as exc:  # name the user's path, not the temporary one
                raise type(exc)(str(path), exc.what) from exc
    return [path for path, _, _ in jobs]

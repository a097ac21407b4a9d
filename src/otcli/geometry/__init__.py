"""Geometries: how the Sinkhorn loop gets its log-sum-exps over the cost matrix.

The loop needs two reductions per iteration,

    lse_over_cols(h)_i = log Σ_j exp(h_j − C_ij / ε)      (B, m) → (B, n)
    lse_over_rows(h)_j = log Σ_i exp(h_i − C_ij / ε)      (B, n) → (B, m)

and nothing else about C (the :class:`Geometry` protocol). Implementations, one per module:

- :mod:`.dense`: :class:`DenseGeometry` keeps C and Cᵀ in memory and reduces them block by
  block, in the log domain;
- :mod:`.kernel`: :class:`KernelGeometry` keeps C and a stabilised kernel, and replaces most
  exps by matrix-vector products (CPU);
- :mod:`.online`: :class:`OnlineGeometry` keeps only the points and rebuilds each block of C
  on the fly, so memory is O(n + m) however large the clouds;
- :mod:`.blocksparse`: the online geometry's reducers for one large pair, which skip the
  blocks of C whose terms provably cannot count.

They share :mod:`.base` (the protocol, block sizes) and :mod:`.lse` (the one stable
log-sum-exp). Padded entries are finite (padding repeats a real point) and carry log-mass
−∞ through ``h``, so they vanish inside the sums.
"""

from otcli.geometry.base import (
    _EXP_FLOOR,
    DEFAULT_BLOCK_ELEMS,
    ONLINE_BLOCK_ELEMS,
    BlockFn,
    Geometry,
)
from otcli.geometry.dense import DenseGeometry
from otcli.geometry.kernel import KernelGeometry
from otcli.geometry.online import OnlineGeometry

__all__ = [
    "DEFAULT_BLOCK_ELEMS",
    "ONLINE_BLOCK_ELEMS",
    "_EXP_FLOOR",
    "BlockFn",
    "DenseGeometry",
    "Geometry",
    "KernelGeometry",
    "OnlineGeometry",
]

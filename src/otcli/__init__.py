"""otcli: optimal-transport distances between point clouds stored in files.

Public API: :func:`read_cloud`, :func:`solve`, :func:`divergence`, :func:`solve_matrix`,
:class:`Cloud`, :class:`SinkhornResult`, :class:`DivergenceResult`, :class:`OtcliError`.
Heavy modules (torch, pyarrow) load on first use, so ``import otcli`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otcli.errors import OtcliError

__version__ = "0.1.0"

__all__ = [
    "Cloud",
    "DivergenceResult",
    "OtcliError",
    "SinkhornResult",
    "__version__",
    "divergence",
    "make_cloud",
    "read_cloud",
    "solve",
    "solve_matrix",
]

_LAZY = {
    "Cloud": "otcli.cloud",
    "make_cloud": "otcli.cloud",
    "read_cloud": "otcli.io",
    "solve": "otcli.api",
    "divergence": "otcli.api",
    "solve_matrix": "otcli.matrix",
    "SinkhornResult": "otcli.result",
    "DivergenceResult": "otcli.result",
}

if TYPE_CHECKING:
    from otcli.api import divergence, solve
    from otcli.cloud import Cloud, make_cloud
    from otcli.io import read_cloud
    from otcli.matrix import solve_matrix
    from otcli.result import DivergenceResult, SinkhornResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'otcli' has no attribute {name!r}")

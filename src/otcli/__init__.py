"""otcli: optimal-transport (Sinkhorn / Wasserstein) distances between point clouds in files.

The library behind the ``otdist`` command. Each name below loads its module on first use, so
``import otcli`` stays cheap: no torch, numpy or pyarrow until a function needs them.

Clouds
    read_cloud(path, *, columns=None, weights=None) -> Cloud
        a file: .csv .tsv .txt (optionally .gz), .parquet, .npy, .npz
    make_cloud(points, weights=None) -> Cloud
        an (n, d) array and optional relative masses
    Cloud
        points (n, d) and weights (n,) summing to 1, checked once

Solving
    solve(x, y, a=None, b=None, *, eps=0.1, cost="sqeuclidean", ...) -> SinkhornResult
        entropic OT between two clouds or arrays (lists of them: a list of results)
    divergence(x, y, a=None, b=None, **same) -> DivergenceResult
        the debiased Sinkhorn divergence OT(a,b) - OT(a,a)/2 - OT(b,b)/2
    make_config(*, eps=None, cost="sqeuclidean", max_iter=10000, ...) -> SolveConfig
        the solver options checked once; ``solve(..., config=...)`` takes it
    solve_matrix(C, a=None, b=None, *, eps=0.1, ...) -> SinkhornResult
        OT for a precomputed n×m cost matrix
    solve_exact(x, y, config) -> ExactResult
        the unregularised optimum (needs the extra ``otcli[exact]``)
    SinkhornResult, DivergenceResult, ExactResult
        figures (cost, objective, iterations, converged...), potentials; plan() on demand

Barycenters
    barycenter(clouds, weights=None, *, points=K, divergence=False, seed=0, ...) -> BarycenterResult
        K support points averaging the clouds: min Σ_k w_k OT_ε (or S_ε) to each

PyTorch
    sinkhorn_loss(x, y, a=None, b=None, *, divergence=True, **solve's keywords) -> Tensor
        the divergence (or OT_ε) as a tensor autograd differentiates: x, y, a, b, a
        callable cost's parameters; (B,) for batches and ragged lists
    SinkhornLoss(**same)
        the same as a torch.nn.Module

Files in, report out: what ``otdist A B`` runs
    run_pair(a, b, config, *, read=ReadOptions(), outputs=PairOutputs(), ...) -> PairReport

Errors
    OtcliError (a ValueError): bad input or options; the message names the file or the
    keyword (``eps``, ``max_iter``...) and the fix. Subclasses: InputError, OptionError,
    DeviceError. SolverError (a RuntimeError): the numbers failed.

Example::

    >>> import numpy as np, otcli
    >>> x, y = np.random.rand(100, 2), np.random.rand(80, 2) + 0.5
    >>> result = otcli.solve(x, y, eps=0.05)
    >>> result.cost, result.converged, result.plan().shape
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otcli.errors import DeviceError, InputError, OptionError, OtcliError, SolverError

__version__ = "0.1.0"


#: Where each public name lives; loaded by ``__getattr__`` on first use.
_LAZY = {
    "Cloud": "otcli.cloud",
    "make_cloud": "otcli.cloud",
    "read_cloud": "otcli.io",
    "solve": "otcli.api",
    "divergence": "otcli.api",
    "make_config": "otcli.api",  # errors name its keywords (otcli.config's name CLI flags)
    "solve_exact": "otcli.exact",
    "SolveConfig": "otcli.config",
    "ReadOptions": "otcli.config",
    "run_pair": "otcli.pair",
    "PairOutputs": "otcli.pair",
    "PairReport": "otcli.pair",
    "solve_matrix": "otcli.matrix",
    "SinkhornResult": "otcli.result",
    "DivergenceResult": "otcli.result",
    "ExactResult": "otcli.exact",
    "sinkhorn_loss": "otcli.loss",
    "SinkhornLoss": "otcli.loss",
    "barycenter": "otcli.barycenters",
    "BarycenterResult": "otcli.barycenters",
}

__all__ = [
    "BarycenterResult",
    "Cloud",
    "DeviceError",
    "DivergenceResult",
    "ExactResult",
    "InputError",
    "OptionError",
    "OtcliError",
    "PairOutputs",
    "PairReport",
    "ReadOptions",
    "SinkhornLoss",
    "SinkhornResult",
    "SolveConfig",
    "SolverError",
    "__version__",
    "barycenter",
    "divergence",
    "make_cloud",
    "make_config",
    "read_cloud",
    "run_pair",
    "sinkhorn_loss",
    "solve",
    "solve_exact",
    "solve_matrix",
]

if TYPE_CHECKING:
    from otcli.api import divergence, make_config, solve
    from otcli.barycenters import BarycenterResult, barycenter
    from otcli.cloud import Cloud, make_cloud
    from otcli.config import ReadOptions, SolveConfig
    from otcli.exact import ExactResult, solve_exact
    from otcli.io import read_cloud
    from otcli.loss import SinkhornLoss, sinkhorn_loss
    from otcli.matrix import solve_matrix
    from otcli.pair import PairOutputs, PairReport, run_pair
    from otcli.result import DivergenceResult, SinkhornResult


def __getattr__(name: str) -> Any:
    """Load a public name's module on its first use (``import otcli`` loads none of them)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'otcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API too, though not loaded yet: ``dir(otcli)`` and ``help(otcli)`` list it."""
    return sorted(set(globals()) | set(__all__))

"""Coarse-to-fine solving of one large pair: clusters stand in for the points while ε is large.

At a given ε the entropic plan blurs each cloud at the scale ε (in cost units): moving a
point by δ in cost changes its potentials' terms by about δ/ε. While ε is large against the
spread of a cluster of nearby points, the cluster's centroid, carrying its mass, gives the
same potentials to within that ratio, so the annealing stages at large ε (where nearly every
one of the n·m entries counts and pruning skips none) can run on a few thousand clusters
per cloud instead of the points (Schmitzer 2019's sparse multiscale scheme; GeomLoss's
``multiscale`` backend does it on GPUs with KeOps). Then the fine clouds take over:

1. each cloud is cut into about :data:`COARSE_POINTS` compact clusters (the k-d split the
   block-sparse reductions use), each a point at its clusters' weighted centroid with the
   clusters' total mass; the clusters' *blur* is the mass-weighted mean cost between a
   point and its centroid;
2. the coarse pair is solved by the dense engine, annealing from the cost's scale down to
   ε_c = :data:`BLUR_FACTOR` × blur (or the target ε, if larger);
3. the coarse potential f is carried to the fine points of the other cloud by its
   c-transform, g_j = −τ ε_c log Σ_I a_I exp((f_I − C(x_I, y_j))/ε_c), the half-step a
   fine g would take from the coarse f (one pass over K × m entries);
4. the fine solve starts from that g at ε_c and anneals on to the target as usual (the
   block-sparse reductions find which leaf pairs matter from its sums), to the same
   tolerance and with the same checks: the result is measured on the fine plan only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from otcli.annealing import ANNEALING_START, StepConstants
from otcli.costs import CostFn
from otcli.errors import OptionError
from otcli.geometry import Geometry
from otcli.geometry.blocksparse import kd_leaves
from otcli.geometry.online import OnlineGeometry
from otcli.solver import ProgressFn, SolverOptions, WarmStart, report_stage, sinkhorn_loop

if TYPE_CHECKING:
    from otcli.config import SolveConfig

#: Clusters per cloud at the coarse level: a dense coarse problem of 4,096² entries solves
#: in well under a second per ten iterations on a CPU, yet clusters of 25 points (100,000
#: points) are fine enough to carry annealing down to a few ε of the unit cube's 1e−3.
COARSE_POINTS = 4096

#: Fewest points per cluster on average.
POINTS_PER_CLUSTER = 8

#: Coarse stages run while ε ≥ this factor × the clusters' blur (their mean cost to their
#: centroid): the coarse potentials are then within about 1/BLUR_FACTOR of the fine ones in
#: units of ε, and the first fine stage settles in a few iterations. Measured on 20,000-point
#: unit-cube pairs at ε = 1e−3 (loaded machine, same sitting): 2 spent 74 s at the fine level
#: (one stage above the target, 122 iterations), 4 spent 108 s (two stages, 125).
BLUR_FACTOR = 2.0

#: ``auto`` solves a pair coarse-to-fine from this many points in each cloud (below it the
#: clusters would hold a handful of points and the fine stages cost little anyway).
MULTISCALE_MIN_POINTS = 16384

#: The coarse solve's marginal error: a warm start needs no more.
COARSE_TOL = 1e-3


@dataclass(frozen=True)
class Clusters:
    """One cloud cut into compact clusters: ``points`` (1, K, d) weighted centroids,
    ``log_w`` (1, K) log of their total masses, ``blur`` the mass-weighted mean cost between a
    point and its cluster's centroid."""

    points: torch.Tensor
    log_w: torch.Tensor
    blur: float

    @property
    def size(self) -> int:
        return self.points.shape[1]


def cluster(points: torch.Tensor, log_w: torch.Tensor, cost_fn: CostFn, k: int) -> Clusters:
    """About ``k`` clusters of the (n, d) ``points`` with log-masses ``log_w`` (n,), by a
    k-d split at medians (compact boxes, equal counts: dense regions get small clusters)."""
    n, d = points.shape
    leaves = kd_leaves(points, max(1, math.ceil(n / k)))
    label = torch.empty(n, dtype=torch.int64)
    label[leaves.perm] = leaves.leaf_of  # cluster of each point, original order
    label = label.to(points.device)
    count = len(leaves.starts) - 1
    w = log_w.exp()  # (n,)
    mass = points.new_zeros(count).index_add_(0, label, w)  # (K,)
    sums = points.new_zeros(count, d).index_add_(0, label, points * w[:, None])  # (K, d)
    plain = points.new_zeros(count, d).index_add_(0, label, points)
    sizes = points.new_zeros(count).index_add_(0, label, torch.ones_like(w))
    # A cluster of massless points keeps their plain mean (it carries no mass either way).
    centre = torch.where(
        (mass > 0)[:, None], sums / mass.clamp_min(1e-300)[:, None], plain / sizes[:, None]
    )  # (K, d)
    own = centre[label]  # (n, d): each point's centroid
    spread = cost_fn(points[:, None, :], own[:, None, :])[:, 0, 0]  # (n,) C(x_i, c(i))
    blur = float((w * spread.to(w.dtype)).sum())
    return Clusters(centre[None], mass.log()[None], blur)


def wanted(config: SolveConfig, batch: int, n: int, m: int) -> bool:
    """Whether to solve coarse-to-fine: asked for, or ``auto`` for one pair too large for
    the dense geometry with a cost that has centroids (a coordinate cost)."""
    cost_fn = config.cost
    if config.geometry == "multiscale":
        if not cost_fn.has_box_lower:
            raise OptionError(
                "--geometry",
                f"multiscale needs a coordinate cost (sqeuclidean, euclidean, cityblock, "
                f"pnorm), not {cost_fn.name}; use online",
            )
        return batch == 1
    return (
        config.geometry == "auto"
        and batch == 1
        and cost_fn.has_box_lower
        and min(n, m) >= MULTISCALE_MIN_POINTS
    )


def warm_start(
    x: torch.Tensor,
    y: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    eps: torch.Tensor,
    config: SolveConfig,
    opts: SolverOptions,
    make_geometry: Callable[..., Geometry],
    progress: ProgressFn | None = None,
) -> WarmStart | None:
    """Potentials for the fine pair (1, n, d), (1, m, d) annealed on their clusters down to
    where the clusters stop standing in for the points; None where that is the annealing's
    start already (nothing to gain). ``make_geometry`` builds the coarse pair's geometry
    (:func:`otcli.api.make_geometry`, with a dense config): the engine a pair of that size
    gets anywhere else.
    """
    cost_fn, dtype = config.cost, config.torch_dtype
    # Clusters of at least POINTS_PER_CLUSTER points: a coarse level as large as the fine
    # one (a forced multiscale solve of small clouds) would only add a solve.
    k = min(COARSE_POINTS, max(1, min(x.shape[1], y.shape[1]) // POINTS_PER_CLUSTER))
    cx, cy = cluster(x[0], log_a[0], cost_fn, k), cluster(y[0], log_b[0], cost_fn, k)
    target = float(eps[0])
    eps_c = max(target, BLUR_FACTOR * max(cx.blur, cy.blur))
    if eps_c >= ANNEALING_START * target or opts.scaling is None:
        return None
    report_stage(progress, f"solving: coarse, {cx.size}×{cy.size} clusters")
    mask_x, mask_y = cx.log_w > -math.inf, cy.log_w > -math.inf
    coarse_eps = torch.full_like(eps, eps_c)
    dense = replace(config, geometry="dense", memory=None)
    geom = make_geometry(cx.points, cy.points, mask_x, mask_y, dense, coarse_eps)
    # The coarse level anneals from where the fine solve would have started.
    start = torch.minimum(geom.max_cost().to(eps.dtype), ANNEALING_START * eps)
    coarse = sinkhorn_loop(
        geom, cx.log_w, cy.log_w, coarse_eps, replace(opts, tol=max(opts.tol, COARSE_TOL)),
        progress, WarmStart(torch.zeros_like(cy.log_w), start),
    )  # fmt: skip
    del geom
    report_stage(progress, f"solving: fine, from ε {eps_c:.3g}")
    # g_j = −τ_b ε_c log Σ_I a_I exp((f_I − C(x_I, y_j))/ε_c): the coarse f's c-transform.
    reach = OnlineGeometry(cx.points, y, cost_fn, mask_x, log_b > -math.inf, dtype, prune=False)
    c = StepConstants.of(coarse_eps, config.rho_a, config.rho_b)
    h = torch.addcmul(cx.log_w, coarse.f.to(cx.log_w.dtype), c.inv_eps)  # log a + f/ε
    g = torch.mul(reach.lse_over_rows(h, coarse_eps), c.neg_scale_b)  # (1, m)
    # The coarse level's rate stands in for the fine one's at the same ε: the fine stages
    # start over-relaxed instead of spending their first window at ω = 1.
    return WarmStart(g=g.to(log_b.dtype), eps=coarse_eps, theta=coarse.theta)


__all__ = ["BLUR_FACTOR", "COARSE_POINTS", "Clusters", "cluster", "wanted", "warm_start"]

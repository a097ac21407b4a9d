"""What a pair must satisfy before it is solved: one dimension, points its cost accepts, and
costs the working dtype holds. Batch runs make these checks up front, so that one bad pair
becomes its own error row instead of failing its bucket.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from otcli.cloud import Cloud
from otcli.costs import CostFn, check_points_for_cost, working_cost
from otcli.errors import InputError


def check_pair(x: Cloud, y: Cloud, cost_fn: CostFn, dtype: str = "float64") -> None:
    """Refuse a pair the solver cannot take: different dimensions, points the cost rejects,
    or costs too large for the working ``dtype`` (see :func:`check_cost_range`)."""
    if x.dim != y.dim:
        raise InputError(y.source, f"points have {y.dim} coordinates but {x.source} has {x.dim}")
    check_points_for_cost(cost_fn, x.points, x.source)
    check_points_for_cost(cost_fn, y.points, y.source)
    if cost_fn.coordinate_formula:
        check_cost_range(x, y, cost_fn, dtype)


#: The largest cost a solve accepts, as a fraction of the working dtype's largest number:
#: sums of up to 2^40 costs (a mean cost over n × m entries) must stay finite.
COST_HEADROOM = 2.0**-40


def far_below(lo: np.ndarray, hi: np.ndarray, power: float | None, limit: float) -> bool:
    """Whether every cost between points of the box [lo, hi] (d corners), and every
    intermediate its formula computes (|x_k − y_k|, its square, its p-th power, their sum
    over the d coordinates), is clearly below ``limit``: all are at most d·max(R, R², R^p)
    for the box's widest side R. ``power``: the cost's p (None: no such bound)."""
    if power is None:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.max(hi - lo) if lo.size else np.float64(0.0)
        bound = lo.size * np.max([span, span * span, np.power(span, power)])
    return bool(bound <= limit / 16)


def check_cost_range(x: Cloud, y: Cloud, cost_fn: CostFn, dtype: str = "float64") -> None:
    """Refuse a pair whose costs would overflow the working ``dtype`` (float32 or float64).

    The costs are evaluated as a solve evaluates them, on a few probe points: for a
    translation-invariant cost (here each grows with every |x_k − y_k|) the corners of the
    pair's bounding box, centred as a solve centres them, whose cost bounds every other;
    for the others (cosine) the point of each cloud with the largest coordinate. A probe
    point's cost to itself must stay 0: overflow in the cost's intermediates (norms) shows
    there. Without this, coordinates of 1e20 made C infinite in float32 and the solve ended
    in an OverflowError or in a meaningless number.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if cost_fn.translation_invariant:
            centre = x.points.mean(axis=0)
            lo = np.minimum(x.points.min(axis=0), y.points.min(axis=0)) - centre
            hi = np.maximum(x.points.max(axis=0), y.points.max(axis=0)) - centre
            points = [lo, hi, np.where(np.abs(lo) > np.abs(hi), lo, hi)]
        else:
            centre = 0 * x.points[0]
            points = [c.points[np.abs(c.points).max(axis=1).argmax()] for c in (x, y)]
    limit = torch.finfo(getattr(torch, dtype)).max * COST_HEADROOM
    if cost_fn.translation_invariant and far_below(lo, hi, cost_fn.power, limit):
        return  # the probe below is a few dozen small torch operations: most of a check
    probe = torch.as_tensor(np.stack(points), dtype=torch.float64)[None]  # (1, k, d)

    def largest(name: str) -> float:
        """The probe's largest cost in ``name``, or inf where it overflows or breaks down."""
        c = working_cost(cost_fn, probe, probe, getattr(torch, name))[0].to(torch.float64)
        top = float(c.max())
        if not (torch.isfinite(c).all() and c.diagonal().abs().max() <= 1e-3 * max(top, 1.0)):
            return math.inf
        return top

    top = largest(dtype)
    if top <= limit:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        reach = [np.abs(c.points - centre).max() for c in (x, y)]
    where, other = (x, y) if reach[0] >= reach[1] else (y, x)
    costs = f"reach {top:.3g}" if math.isfinite(top) else "overflow"
    what = (
        f"coordinates up to {max(reach):.3g} from the pair's centre: costs against "
        f"{other.source} {costs}, beyond what {dtype} holds safely ({limit:.1e}); "
    )
    if dtype == "float32" and largest("float64") <= torch.finfo(torch.float64).max * COST_HEADROOM:
        what += "use --dtype float64, or rescale the coordinates (change their units)"
    else:
        what += "rescale the coordinates (change their units)"
    raise InputError(where.source, what)

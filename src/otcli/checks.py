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


def far_below(
    lo: np.ndarray, hi: np.ndarray, power: float | None, limit: float, floor: float = 0.0
) -> bool:
    """Whether every cost between points of the box [lo, hi] (d corners), and every
    intermediate its formula computes (|x_k − y_k|, its square, its p-th power, their sum
    over the d coordinates), is clearly below ``limit``, and the largest of each clearly
    above ``floor``: the largest are d·max(R, R², R^p) and min(R, R², R^p) at most, at
    least, for the box's widest side R. ``power``: the cost's p (None: no such bound)."""
    if power is None:
        return False
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        span = np.max(hi - lo) if lo.size else np.float64(0.0)
        sizes = np.array([span, span * span, np.power(span, power)])
        bound, least = lo.size * np.max(sizes), np.min(sizes)
    return bool(bound <= limit / 16 and (span == 0 or least >= 16 * floor))


def _lost_digits(
    cost_fn: CostFn, probe: torch.Tensor, top: float, power: float, floor: float
) -> float | None:
    """The probe's largest cost where ``top`` (its value in the working dtype) has lost
    digits to underflow, or lies below ``floor`` (where the pair's smaller costs do), else
    None.

    The reference is the same cost in float64 on coordinates scaled by 2^k to a unit span
    (exact), compared with ``top`` scaled by 2^(k·p), so that no underflow of the
    coordinates' own scale spoils it.
    """
    span = float((probe.amax(dim=1) - probe.amin(dim=1)).max())
    if not (span > 0 and math.isfinite(span)):
        return None
    k = -math.floor(math.log2(span))
    scaled = probe * 2.0 ** (k // 2) * 2.0 ** (k - k // 2)  # 2^k may overflow a float alone
    reference = float(working_cost(cost_fn, scaled, scaled, torch.float64).max())
    scaled_top = math.exp(math.log(top) + k * power * math.log(2.0)) if top > 0 else 0.0
    try:
        largest = reference * 2.0 ** (-k * power)
    except OverflowError:
        largest = math.inf
    if abs(scaled_top - reference) <= 1e-5 * reference and largest >= floor:
        return None
    return largest


def check_cost_range(x: Cloud, y: Cloud, cost_fn: CostFn, dtype: str = "float64") -> None:
    """Refuse a pair whose costs would overflow the working ``dtype`` (float32 or float64),
    or be so small that the dtype rounds their digits away.

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
    info = torch.finfo(getattr(torch, dtype))
    limit = info.max * COST_HEADROOM
    # Costs below 2^10 × the smallest normal number: the smaller costs of the pair are then
    # subnormal and keep fewer digits than the dtype holds (iris × 7e-21 in float32: 4e-5).
    floor = info.tiny * 1024
    power = cost_fn.power if cost_fn.translation_invariant else None
    if power is not None and far_below(lo, hi, power, limit, floor):
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
        lost = None if power is None else _lost_digits(cost_fn, probe, top, power, floor)
        if lost is None:
            return
        # Costs so small that the dtype rounds them away (coordinates of 1e-25 made every
        # float32 cost 0 and the solve reported a cost of 0).
        span = float(np.max(hi - lo))
        fix = "rescale the coordinates (change their units)"
        if dtype == "float32" and lost >= 1024 * torch.finfo(torch.float64).tiny:
            fix = "use --dtype float64, or " + fix
        raise InputError(
            y.source,
            f"the points of the pair span only {span:.3g}: costs against {x.source} of about "
            f"{lost:.3g} lose their digits in {dtype} (below {floor:.1e}); {fix}"
            if lost > 0
            else f"the points of the pair span only {span:.3g}: costs against {x.source} "
            f"vanish in every precision; {fix}",
        )
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


def check_matrix_range(matrix: np.ndarray, dtype: str, source: str) -> None:
    """Refuse a cost matrix that the working ``dtype`` cannot hold: entries beyond its safe
    largest cost (:data:`COST_HEADROOM`), or a largest entry so small that the dtype rounds
    the costs' digits away (below 2^10 × its smallest normal number), the rule that
    :func:`check_cost_range` applies to coordinates. Without it a matrix of costs near
    1e-300 became all zeros in float32 and the solve reported a cost of 0.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        top = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    info, wide = torch.finfo(getattr(torch, dtype)), torch.finfo(torch.float64)
    limit, floor = info.max * COST_HEADROOM, info.tiny * 1024
    if top > limit:
        wider = dtype == "float32" and top <= wide.max * COST_HEADROOM
        fix = "use --dtype float64, or " if wider else ""
        raise InputError(
            source,
            f"costs up to {top:.3g}, beyond what {dtype} holds safely ({limit:.1e}); "
            f"{fix}rescale the costs (divide the matrix by a constant)",
        )
    if 0 < top < floor:
        wider = dtype == "float32" and top >= wide.tiny * 1024
        fix = "use --dtype float64, or " if wider else ""
        raise InputError(
            source,
            f"costs of at most {top:.3g} lose their digits in {dtype} (below {floor:.1e}); "
            f"{fix}rescale the costs (multiply the matrix by a constant)",
        )

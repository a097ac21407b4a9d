"""Every ground cost on batched tensors equals its formula written out in numpy: low and high
dimension (coordinate loop and matrix-product paths), points far from the origin, float32;
``get_cost`` refuses bad names and parameters with a message naming the option."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import otcli
import otcli.costs as costs
from conftest import numpy_cost
from otcli.costs import COST_NAMES, CostFn, check_points_for_cost, get_cost, working_cost
from otcli.errors import InputError, OptionError

pytestmark = pytest.mark.usefixtures("single_thread")


CASES = [
    ("sqeuclidean", None),
    ("euclidean", None),
    ("cityblock", None),
    ("cosine", None),
    ("pnorm", 1.5),
    ("pnorm", 3.0),
    ("pnorm", 0.5),
    ("pnorm", 1.0),
    ("pnorm", 2.0),
]


def batch(rng: np.random.Generator, d: int, offset: float = 0.0, spread: float = 1.0):
    x = offset + spread * rng.normal(size=(3, 7, d))
    y = offset + spread * rng.normal(size=(3, 9, d)) + 0.3
    return x, y


@pytest.mark.parametrize("d", [1, 3, 16, 17, 20])
@pytest.mark.parametrize(("name", "p"), CASES)
def test_cost_matches_numpy_float64(rng, name, p, d):
    x, y = batch(rng, d)
    fn = get_cost(name, p)
    got = fn(torch.from_numpy(x), torch.from_numpy(y))
    assert got.shape == (3, 7, 9)
    assert got.dtype == torch.float64
    want = numpy_cost(x, y, name, 2.0 if p is None else p)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12 * want.max())


@pytest.mark.parametrize("d", [3, 20])
@pytest.mark.parametrize(("name", "p"), CASES)
def test_cost_matches_numpy_float32(rng, name, p, d):
    x, y = batch(rng, d)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    got = get_cost(name, p)(torch.from_numpy(x32), torch.from_numpy(y32))
    assert got.dtype == torch.float32
    # Oracle on the same (float32-rounded) points, in float64.
    want = numpy_cost(x32.astype(np.float64), y32.astype(np.float64), name, 2.0 if p is None else p)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6 * want.max())


@pytest.mark.parametrize("d", [2, 20])
@pytest.mark.parametrize("name", ["sqeuclidean", "euclidean"])
def test_far_from_origin_keeps_digits(rng, name, d):
    """Points near 1e4 with spread 1: |x|² ≈ 1e8·d, so an uncentred |x|² + |y|² − 2x·y would
    lose ~8 digits. The cost must match float64 numpy (direct differences) to 1e-10."""
    x, y = batch(rng, d, offset=1e4)
    got = get_cost(name)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    want = numpy_cost(x, y, name)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("d", [2, 20])
def test_far_from_origin_solver_cost_matrix_float32(rng, d):
    """Through the solver, float32: each pair is centred in float64 before the cost is
    rounded, so C for points near 1e4 keeps float32's relative precision (an uncentred
    float32 computation would be off by ~1e-3 absolute)."""
    x = 1e4 + rng.normal(size=(7, d))
    y = 1e4 + rng.normal(size=(9, d)) + 0.3
    r = otcli.solve(x, y, eps=1.0, max_iter=5)
    want = numpy_cost(x[None], y[None], "sqeuclidean")[0]
    np.testing.assert_allclose(
        r.cost_matrix(), want, rtol=4 * 2.0**-24, atol=4 * 2.0**-24 * want.max()
    )
    far = working_cost(
        CostFn("sqeuclidean"), torch.tensor(x[None]), torch.tensor(y[None]), torch.float32
    )
    assert np.abs(far.numpy()[0] - want).max() > 1e3 * 2.0**-24 * want.max()  # why centring matters


def test_cosine_is_scale_invariant_and_bounded(rng):
    x, y = batch(rng, 4)
    fn = get_cost("cosine")
    c1 = fn(torch.from_numpy(x), torch.from_numpy(y))
    c2 = fn(torch.from_numpy(5.0 * x), torch.from_numpy(0.01 * y))
    np.testing.assert_allclose(c1.numpy(), c2.numpy(), atol=1e-14)
    same = fn(torch.from_numpy(x), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.diagonal(same, axis1=1, axis2=2), 0.0, atol=1e-14)
    opposite = fn(torch.from_numpy(x), torch.from_numpy(-x)).numpy()
    np.testing.assert_allclose(np.diagonal(opposite, axis1=1, axis2=2), 2.0, atol=1e-14)
    assert (c1.numpy() >= 0).all()
    assert (c1.numpy() <= 2).all()


def test_rows_of_a_block_equal_the_whole(rng):
    """The same function serves dense and block-wise geometries: slicing rows commutes."""
    x, y = batch(rng, 20)
    for name in COST_NAMES:
        fn = get_cost(name)
        whole = fn(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        part = fn(torch.from_numpy(x[:, 2:5]), torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(part, whole[:, 2:5], rtol=1e-12, atol=1e-12)


def test_translation_invariance_flags():
    assert all(get_cost(n).translation_invariant for n in COST_NAMES if n != "cosine")
    assert not get_cost("cosine").translation_invariant


def test_get_cost_defaults_and_describe():
    assert get_cost("pnorm") == CostFn("pnorm", 2.0)
    assert get_cost("pnorm", 3).p == 3.0
    assert get_cost("pnorm", 1.5).describe() == "pnorm(p=1.5)"
    assert get_cost("euclidean").describe() == "euclidean"
    assert COST_NAMES == ("sqeuclidean", "euclidean", "cityblock", "cosine", "pnorm")


@pytest.mark.parametrize(
    ("name", "p", "message"),
    [
        (
            "manhattan",
            None,
            "--cost: unknown cost 'manhattan'; choose one of "
            "sqeuclidean, euclidean, cityblock, cosine, pnorm",
        ),
        (
            "SqEuclidean",
            None,
            "--cost: unknown cost 'SqEuclidean'; choose one of "
            "sqeuclidean, euclidean, cityblock, cosine, pnorm",
        ),
        ("sqeuclidean", 2.0, "--p: --p applies to --cost pnorm only (got --cost sqeuclidean)"),
        ("cosine", 1.0, "--p: --p applies to --cost pnorm only (got --cost cosine)"),
        ("pnorm", 0.0, "--p: p must be a positive finite number, got 0.0"),
        ("pnorm", -1.0, "--p: p must be a positive finite number, got -1.0"),
        ("pnorm", math.inf, "--p: p must be a positive finite number, got inf"),
        ("pnorm", math.nan, "--p: p must be a positive finite number, got nan"),
    ],
)
def test_get_cost_errors(name, p, message):
    with pytest.raises(OptionError) as info:
        get_cost(name, p)
    assert str(info.value) == message
    assert info.value.where == message.split(":")[0]


def test_cosine_refuses_zero_vectors():
    check_points_for_cost(get_cost("cosine"), np.ones((3, 2)), "a.csv")
    check_points_for_cost(get_cost("sqeuclidean"), np.zeros((3, 2)), "a.csv")
    pts = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(InputError) as info:
        check_points_for_cost(get_cost("cosine"), pts, "a.csv")
    assert str(info.value) == (
        "a.csv: point 1 (0-based) is the zero vector, which has no cosine distance"
    )


# --- the registry: one class per cost ---------------------------------------------------------


@pytest.mark.parametrize("name", COST_NAMES)
def test_every_registered_cost_equals_its_numpy_formula(rng, name):
    """Each class in the registry, built by name, against the brute-force numpy definition."""
    x, y = batch(rng, 4)
    for p in [None, 0.7, 2.0, 3.0] if get_cost(name).takes_p else [None]:
        fn = get_cost(name, p)
        assert isinstance(fn, CostFn)
        assert fn.name == name
        got = fn(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        want = numpy_cost(x, y, name, 2.0 if p is None else p)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * want.max())


def test_registry_order_and_what_each_class_says():
    assert COST_NAMES == ("sqeuclidean", "euclidean", "cityblock", "cosine", "pnorm")
    assert [n for n in COST_NAMES if get_cost(n).takes_p] == ["pnorm"]
    assert [n for n in COST_NAMES if get_cost(n).has_box_lower] == [
        "sqeuclidean", "euclidean", "cityblock", "pnorm"
    ]  # fmt: skip
    fused = {get_cost(n).describe(): get_cost(n).fused_sqeuclidean for n in COST_NAMES}
    assert fused == {
        "sqeuclidean": True, "euclidean": False, "cityblock": False, "cosine": False,
        "pnorm(p=2)": True,
    }  # fmt: skip
    assert not get_cost("pnorm", 1.5).fused_sqeuclidean
    box = torch.zeros(1, 3, dtype=torch.float64)
    assert get_cost("cosine").box_lower(box, box, box + 1, box + 2) is None


def test_costfn_by_name_builds_the_registered_class():
    assert isinstance(CostFn("euclidean"), costs.Euclidean)
    assert CostFn("pnorm", 3.0) == costs.PNorm(3.0) == get_cost("pnorm", 3)
    assert CostFn("cosine") == get_cost("cosine") != get_cost("euclidean")
    with pytest.raises(OptionError, match="unknown cost 'manhattan'"):
        CostFn("manhattan")


def test_a_new_cost_is_one_class(monkeypatch, rng):
    """Registering one class is all it takes for get_cost (and CostFn) to find it."""
    monkeypatch.setattr(costs, "_REGISTRY", dict(costs._REGISTRY))

    @costs._register
    @dataclass(frozen=True)
    class Chebyshev(CostFn):
        name: ClassVar[str] = "chebyshev"

        def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (x[:, :, None, :] - y[:, None, :, :]).abs().amax(-1)

    fn = get_cost("chebyshev")
    assert fn == CostFn("chebyshev") == Chebyshev()
    assert fn.translation_invariant and not fn.has_box_lower and not fn.fused_sqeuclidean
    x, y = batch(rng, 3)
    want = np.abs(x[:, :, None, :] - y[:, None, :, :]).max(-1)
    np.testing.assert_allclose(fn(torch.from_numpy(x), torch.from_numpy(y)).numpy(), want)


def test_cli_cost_choices_come_from_the_registry():
    from otcli.cli.options import CostName

    assert [c.value for c in CostName] == list(COST_NAMES)
    assert CostName.sqeuclidean == "sqeuclidean"

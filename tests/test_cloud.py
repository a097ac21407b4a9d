"""Clouds are validated once: shapes, non-finite values and masses are refused with a message
naming the source, the place and the fix; weights are normalised; batches of different sizes
are padded with repeated points that carry no mass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otcli.cloud import Cloud, as_cloud_list, make_cloud, pad_clouds
from otcli.errors import InputError, OtcliError

PTS = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])


def test_uniform_weights_and_float64_points():
    c = make_cloud([[1, 2], [3, 4]], source="a.csv")
    assert isinstance(c, Cloud)
    assert c.points.dtype == np.float64
    np.testing.assert_array_equal(c.points, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(c.weights, [0.5, 0.5])
    assert (c.n, c.dim, c.source) == (2, 2, "a.csv")


def test_weights_are_normalised():
    c = make_cloud(PTS, [1.0, 2.0, 5.0])
    np.testing.assert_allclose(c.weights, [0.125, 0.25, 0.625], rtol=1e-15)
    assert c.weights.sum() == pytest.approx(1.0, abs=1e-15)


def test_zero_weights_allowed_if_some_mass_remains():
    c = make_cloud(PTS, [0.0, 3.0, 0.0])
    np.testing.assert_array_equal(c.weights, [0.0, 1.0, 0.0])


def test_column_vector_weights_accepted():
    c = make_cloud(PTS, np.array([[1.0], [1.0], [2.0]]))
    np.testing.assert_allclose(c.weights, [0.25, 0.25, 0.5])


def test_one_dimensional_points_become_a_column():
    c = make_cloud([0.5, 1.5, 2.5])
    assert c.points.shape == (3, 1)
    assert c.dim == 1
    np.testing.assert_array_equal(c.points[:, 0], [0.5, 1.5, 2.5])


def test_clouds_are_read_only():
    c = make_cloud(PTS.copy(), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="read-only"):
        c.points[0, 0] = 9.0
    with pytest.raises(ValueError, match="read-only"):
        c.weights[0] = 9.0


def test_caller_arrays_stay_writable():
    x = PTS.copy()
    make_cloud(x)
    assert x.flags.writeable


def test_cloud_passes_through_and_takes_new_weights():
    c = make_cloud(PTS, source="pts.npy")
    assert make_cloud(c) is c
    c2 = make_cloud(c, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(c2.weights, [0.5, 0.0, 0.5])
    assert c2.source == "pts.npy"


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (
            np.zeros((2, 2, 2)),
            "x.csv: points must be a 2-D array (n points × d coordinates), got shape (2, 2, 2)",
        ),
        (np.zeros((0, 3)), "x.csv: no points (the cloud is empty)"),
        (np.zeros((3, 0)), "x.csv: points have no coordinates (0 columns)"),
        (
            [[0.0, 1.0], [math.nan, 2.0]],
            "x.csv: non-finite coordinate nan at point 1 (0-based), coordinate 0; "
            "clean the data or drop those rows",
        ),
        (
            [[0.0, 1.0], [3.0, 2.0], [1.0, -math.inf]],
            "x.csv: non-finite coordinate -inf at point 2 (0-based), coordinate 1; "
            "clean the data or drop those rows",
        ),
        (
            [["a", "b"]],
            "x.csv: points are not numeric (could not convert string to float: 'a')",
        ),
    ],
)
def test_bad_points(points, message):
    with pytest.raises(InputError) as info:
        make_cloud(points, source="x.csv")
    assert str(info.value) == message
    assert info.value.where == "x.csv"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -0.5, 1.0], "w.csv: negative weight -0.5 at point 1 (0-based); masses must be ≥ 0"),
        (
            [0.0, 0.0, 0.0],
            "w.csv: all weights are zero; at least one point needs positive mass",
        ),
        ([1.0, math.nan, 1.0], "w.csv: non-finite weight nan at point 1 (0-based)"),
        ([math.inf, 1.0, 1.0], "w.csv: non-finite weight inf at point 0 (0-based)"),
        ([1.0, 1.0], "w.csv: expected 3 weights (one per point), got shape (2,)"),
        (np.ones((3, 2)), "w.csv: expected 3 weights (one per point), got shape (3, 2)"),
    ],
)
def test_bad_weights(weights, message):
    with pytest.raises(InputError) as info:
        make_cloud(PTS, weights, source="w.csv")
    assert str(info.value) == message
    assert isinstance(info.value, OtcliError)


def test_as_cloud_list_single_and_batch():
    clouds, batched = as_cloud_list(PTS, None, "x")
    assert not batched
    assert len(clouds) == 1
    assert clouds[0].source == "x"
    clouds, batched = as_cloud_list([PTS, PTS[:2]], [[1, 1, 2], None], "y")
    assert batched
    assert [c.source for c in clouds] == ["y[0]", "y[1]"]
    np.testing.assert_allclose(clouds[0].weights, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(clouds[1].weights, [0.5, 0.5])


def test_as_cloud_list_errors():
    with pytest.raises(InputError) as info:
        as_cloud_list([PTS, PTS], [None], "x")
    assert str(info.value) == "x: 2 clouds but 1 weight vectors"
    with pytest.raises(InputError) as info:
        as_cloud_list([], None, "x")
    assert str(info.value) == "x: empty list of clouds"
    with pytest.raises(InputError) as info:
        as_cloud_list([PTS, np.array([[1.0, math.nan]])], None, "y")
    assert str(info.value).startswith("y[1]: non-finite coordinate nan at point 0 (0-based)")


def test_pad_clouds():
    c1 = make_cloud(PTS, [1.0, 1.0, 2.0])
    c2 = make_cloud([[7.0, 8.0]])
    c3 = make_cloud([[1.0, 1.0], [2.0, 2.0]], [0.0, 1.0])
    batch = pad_clouds([c1, c2, c3])
    assert batch.points.shape == (3, 3, 2)
    np.testing.assert_array_equal(batch.sizes, [3, 1, 2])
    np.testing.assert_array_equal(batch.points[0], PTS)
    # padding repeats the first point and has log-mass −∞
    np.testing.assert_array_equal(batch.points[1], [[7.0, 8.0]] * 3)
    np.testing.assert_array_equal(batch.points[2, 2], [1.0, 1.0])
    np.testing.assert_allclose(batch.log_weights[0], np.log([0.25, 0.25, 0.5]), rtol=1e-15)
    np.testing.assert_array_equal(batch.log_weights[1], [0.0, -np.inf, -np.inf])
    # a zero-weight real point is −∞ too: it carries no mass either
    np.testing.assert_array_equal(batch.log_weights[2], [-np.inf, 0.0, -np.inf])
    assert np.isfinite(batch.points).all()


def test_pad_clouds_refuses_mixed_dimensions():
    with pytest.raises(InputError) as info:
        pad_clouds([make_cloud(PTS, source="a.csv"), make_cloud(np.zeros((2, 3)))])
    assert str(info.value) == "a.csv: clouds in one batch have different dimensions {2, 3}"

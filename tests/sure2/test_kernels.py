"""The compiled kernels against plain numpy references."""

import numpy as np
import pytest

from app.sure2._kernels import whittaker, zonal_stats

from .references import whittaker_dense, zonal_loop, zonal_numpy


@pytest.mark.parametrize("n", [3, 4, 5, 6, 37, 73])
@pytest.mark.parametrize("lam", [0.0, 0.5, 10.0, 1e4])
def test_whittaker_matches_dense_solve(n, lam):
    rng = np.random.default_rng(n * 1000 + int(lam))
    y = rng.normal(0.5, 0.2, n)
    weights = rng.uniform(0.1, 1.0, n)
    if lam > 0 and n > 5:
        weights[rng.choice(n, n // 3, replace=False)] = 0.0  # missing dates
        y[weights == 0] = np.nan
    np.testing.assert_allclose(whittaker(y, weights, lam), whittaker_dense(y, weights, lam), rtol=1e-9, atol=1e-12)


def test_whittaker_keeps_straight_lines_and_fills_gaps():
    # second differences of a line are zero, so any lambda returns the line, gaps included
    t = np.arange(20, dtype=float)
    y = 0.2 + 0.03 * t
    w = np.ones(20)
    w[5:9] = 0
    y_in = y.copy()
    y_in[5:9] = np.nan
    np.testing.assert_allclose(whittaker(y_in, w, 100.0), y, atol=1e-10)


def test_whittaker_rejects_too_few_observations():
    with pytest.raises(ValueError):
        whittaker(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 0, 0, 1.0]), 10.0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (37, 23, 19)])
def test_zonal_matches_brute_force_loop(shape):
    rng = np.random.default_rng(sum(shape))
    stack = rng.integers(-2000, 10000, shape).astype(np.int16)
    stack[rng.random(shape) < 0.3] = -32768
    mask = (rng.random(shape[1:]) < 0.7).astype(np.uint8)
    counts, means = zonal_stats(stack, mask, -32768)
    ref_counts, ref_means = zonal_loop(stack, mask, -32768)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(means, ref_means, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(zonal_numpy(stack, mask, -32768)[1], ref_means, rtol=1e-12, equal_nan=True)


def test_zonal_all_cloudy_date_is_nan_with_zero_count():
    stack = np.full((2, 3, 3), 5000, dtype=np.int16)
    stack[1] = -32768
    counts, means = zonal_stats(stack, np.ones((3, 3), np.uint8), -32768)
    assert counts.tolist() == [9, 0]
    assert means[0] == pytest.approx(0.5) and np.isnan(means[1])


def test_zonal_rejects_mismatched_mask():
    with pytest.raises(ValueError):
        zonal_stats(np.zeros((2, 3, 3), np.int16), np.ones((3, 4), np.uint8), -32768)

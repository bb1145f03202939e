"""The compiled kernels against plain numpy references."""

import numpy as np
import pytest

from app.sure2._kernels import VCURVE_FLOOR, whittaker, whittaker_batch, whittaker_vcurve, zonal_stats
from app.sure2.science import LOG10_LAMBDA_GRID

from .references import vcurve_dense, whittaker_dense, zonal_loop, zonal_numpy


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


def _season_like(seed, n=37, noise=0.03, gap_share=0.3, step=0.0):
    """A crop-like curve (+ an optional hail step) with noise, fractional weights and missing dates."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    y = 0.2 + 0.6 * np.exp(-((t - n / 2) / (n / 5)) ** 2) - step * (t >= 0.6 * n) + rng.normal(0, noise, n)
    w = rng.uniform(0.5, 1.0, n)
    w[rng.random(n) < gap_share] = 0.0
    y[w == 0] = np.nan
    return y, w


@pytest.mark.parametrize("seed,noise,step,n", [(0, 0.03, 0.0, 37), (1, 0.01, 0.0, 37), (2, 0.08, 0.0, 37),
                                             (3, 0.02, 0.25, 37), (4, 0.03, 0.0, 73), (5, 0.05, 0.3, 73),
                                             (6, 0.002, 0.0, 37), (7, 0.03, 0.0, 12)])
def test_vcurve_matches_dense_reference(seed, noise, step, n):
    y, w = _season_like(seed, n, noise, step=step)
    z, log10_lam = whittaker_vcurve(y, w, LOG10_LAMBDA_GRID)
    z_ref, log10_ref = vcurve_dense(y, w, LOG10_LAMBDA_GRID, VCURVE_FLOOR)
    assert log10_lam == log10_ref  # the same grid midpoint, exactly
    np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(z, whittaker(y, w, 10.0 ** log10_lam))  # the chosen λ's own smoothing


def test_vcurve_chooses_a_midpoint_and_reacts_to_noise():
    mids = set(np.round((LOG10_LAMBDA_GRID[:-1] + LOG10_LAMBDA_GRID[1:]) / 2, 9))
    chosen = [whittaker_vcurve(*_season_like(s, noise=0.03, gap_share=0.0), LOG10_LAMBDA_GRID)[1] for s in range(5)]
    assert all(round(c, 9) in mids for c in chosen)
    # white noise around a straight line has nothing to keep: the V-curve smooths far harder than for a
    # curved season with the same noise
    rng = np.random.default_rng(9)
    line = 0.3 + 0.01 * np.arange(37) + rng.normal(0, 0.03, 37)
    assert whittaker_vcurve(line, np.ones(37), LOG10_LAMBDA_GRID)[1] > max(chosen)


def test_vcurve_rejects_bad_input():
    y, w = _season_like(0)
    with pytest.raises(ValueError):
        whittaker_vcurve(y, w, np.array([1.0]))
    with pytest.raises(ValueError):
        whittaker_vcurve(y, w, np.array([1.0, 0.5, 2.0]))
    with pytest.raises(ValueError):
        whittaker_vcurve(np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.0, 1.0]), LOG10_LAMBDA_GRID)


def test_batch_equals_per_series_calls():
    rng = np.random.default_rng(3)
    rows, n = 300, 37
    y = rng.normal(0.5, 0.2, (rows, n))
    w = (rng.random((rows, n)) > 0.3).astype(float)
    w[40:120] = w[40]  # a cloud pattern shared by neighbouring pixels: factors reused
    w[200:210] = rng.uniform(0.2, 1.0, (10, n))  # fractional weights
    w[250, 2:] = 0.0  # two views at most: no curve
    y[w == 0] = np.nan
    z = whittaker_batch(y, w, 7.5)
    assert np.isnan(z[250]).all()
    for r in set(range(rows)) - {250}:
        np.testing.assert_allclose(z[r], whittaker(y[r], w[r], 7.5), rtol=0, atol=1e-12)


def test_batch_rejects_mismatched_shapes_and_lambda():
    with pytest.raises(ValueError):
        whittaker_batch(np.zeros((2, 5)), np.ones((2, 4)), 1.0)
    with pytest.raises(ValueError):
        whittaker_batch(np.zeros((2, 5)), np.ones((2, 5)), 0.0)

"""Compiled Sure2 kernels vs their numpy/scipy equivalents, side by side in one run.

    .venv/bin/python bench/sure2_kernels.py

Prints microseconds per call and the speed-up (goal >= 5x). Shapes are those of real fields:
37 dates (one season), windows of a 2 ha field (16x16) and of a 50 ha one (80x80).
Then the pixel level and automatic λ: the batched per-pixel smoother (one call per field) against a
loop of per-series calls of the single-series kernel (goal >= 5x), for a 2 ha and a 50 ha field and a
73-date season; and the V-curve's cost per series against one fixed-λ smoothing.
"""

import os
import sys
import timeit

import numpy as np
from scipy.linalg import solveh_banded

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from app.sure2._kernels import whittaker, whittaker_batch, whittaker_vcurve, zonal_stats  # noqa: E402
from app.sure2.science import LOG10_LAMBDA_GRID  # noqa: E402
from tests.sure2.references import zonal_numpy  # noqa: E402  (the tests check it against brute force)


def whittaker_scipy(y, w, lam):
    """Same system, scipy's banded Cholesky (upper form: 3 bands)."""
    n = len(y)
    d = np.diff(np.eye(n), 2, axis=0)
    a = np.diag(w) + lam * d.T @ d
    ab = np.zeros((3, n))
    ab[0, 2:] = np.diagonal(a, 2)
    ab[1, 1:] = np.diagonal(a, 1)
    ab[2] = np.diagonal(a)
    return solveh_banded(ab, w * np.where(w > 0, y, 0.0))


def whittaker_scipy_prebuilt(n, lam):
    """Fairest scipy variant: the band matrix of lam*D'D built once, only W added per call."""
    d = np.diff(np.eye(n), 2, axis=0)
    p = lam * d.T @ d
    bands = np.zeros((3, n))
    bands[0, 2:] = np.diagonal(p, 2)
    bands[1, 1:] = np.diagonal(p, 1)
    bands[2] = np.diagonal(p)

    def solve(y, w):
        ab = bands.copy()
        ab[2] += w
        return solveh_banded(ab, w * np.where(w > 0, y, 0.0), check_finite=False)

    return solve


def per_call_us(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main():
    rng = np.random.default_rng(0)
    rows = []
    n = 37
    y = rng.normal(0.5, 0.1, n)
    w = rng.uniform(0.5, 1.0, n)
    w[rng.choice(n, 8, replace=False)] = 0
    y[w == 0] = np.nan
    prebuilt = whittaker_scipy_prebuilt(n, 10.0)
    assert np.allclose(whittaker(y, w, 10.0), whittaker_scipy(y, w, 10.0))
    assert np.allclose(whittaker(y, w, 10.0), prebuilt(y, w))
    ours = per_call_us(lambda: whittaker(y, w, 10.0), 20000)
    rows.append(("whittaker n=37 vs scipy solveh_banded (system built per call)", ours,
                 per_call_us(lambda: whittaker_scipy(y, w, 10.0), 2000)))
    rows.append(("whittaker n=37 vs scipy solveh_banded (bands prebuilt)", ours,
                 per_call_us(lambda: prebuilt(y, w), 5000)))
    for side in (16, 80):
        stack = rng.integers(1000, 9000, (n, side, side)).astype(np.int16)
        stack[rng.random(stack.shape) < 0.2] = -32768
        mask = (rng.random((side, side)) < 0.8).astype(np.uint8)
        c1, m1 = zonal_stats(stack, mask, -32768)
        c2, m2 = zonal_numpy(stack, mask, -32768)
        assert (c1 == c2).all() and np.allclose(m1, m2, equal_nan=True)
        number = 2000 if side == 16 else 100
        rows.append((f"zonal 37x{side}x{side} vs numpy masked sums",
                     per_call_us(lambda: zonal_stats(stack, mask, -32768), number),
                     per_call_us(lambda: zonal_numpy(stack, mask, -32768), number)))
    print(f"{'kernel':66s} {'compiled us':>12s} {'numpy/scipy us':>15s} {'speed-up':>9s}")
    for name, a, b in rows:
        print(f"{name:66s} {a:12.2f} {b:15.2f} {b / a:8.1f}x")
    pixel_level(rng)


def pixel_series(rng, n_pixels, n_dates):
    """Pixel rows of a field: a crop curve + noise, a quarter of the dates clouded."""
    t = np.arange(n_dates)
    y = 0.2 + 0.6 * np.exp(-((t - n_dates / 2) / (n_dates / 5)) ** 2) + rng.normal(0, 0.015, (n_pixels, n_dates))
    w = (rng.random((n_pixels, n_dates)) > 0.25).astype(np.float64)
    return np.where(w > 0, y, 0.0), w


def pixel_level(rng):
    print(f"\n{'pixel level (us per series)':66s} {'batched':>12s} {'loop':>15s} {'speed-up':>9s}")
    for n_pixels, n_dates in ((200, 37), (4500, 37), (200, 73)):
        label = f"{n_pixels} px ({n_pixels / 100:g} ha) x {n_dates} dates"
        y, w = pixel_series(rng, n_pixels, n_dates)
        batched = whittaker_batch(y, w, 10.0)
        assert all(np.allclose(batched[r], whittaker(y[r], w[r], 10.0), atol=1e-12) for r in range(0, n_pixels, 17))
        number = max(1, 20000 // n_pixels)
        ours = per_call_us(lambda: whittaker_batch(y, w, 10.0), number) / n_pixels
        loop = per_call_us(lambda: [whittaker(y[r], w[r], 10.0) for r in range(n_pixels)], number) / n_pixels
        print(f"{label:66s} {ours:12.3f} {loop:15.3f} {loop / ours:8.1f}x  (goal >= 5x)")
    print(f"\n{'automatic lambda (us per series)':66s} {'V-curve':>12s} {'fixed lambda':>15s} {'cost':>9s}")
    for n_dates in (37, 73):
        y, w = pixel_series(rng, 1, n_dates)
        y, w = y[0], w[0]
        vcurve = per_call_us(lambda: whittaker_vcurve(y, w, LOG10_LAMBDA_GRID), 2000)
        fixed = per_call_us(lambda: whittaker(y, w, 10.0), 20000)
        print(f"{f'{n_dates} dates, {len(LOG10_LAMBDA_GRID)}-point grid':66s} {vcurve:12.2f} {fixed:15.2f} "
              f"{vcurve / fixed:8.1f}x")


if __name__ == "__main__":
    main()

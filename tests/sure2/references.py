"""Plain numpy references for the compiled kernels (they live here, not in the shipped package)."""

import numpy as np


def whittaker_dense(y, weights, lam):
    """(W + lam D'D) z = W y with a dense second-difference matrix and numpy's general solver."""
    n = len(y)
    d = np.diff(np.eye(n), 2, axis=0)
    w = np.diag(weights)
    rhs = weights * np.where(weights > 0, y, 0.0)
    return np.linalg.solve(w + lam * d.T @ d, rhs)


def zonal_loop(stack, mask, nodata):
    """Per date valid count and mean NDVI, pixel by pixel."""
    n_dates, h, w = stack.shape
    counts, means = [], []
    for d in range(n_dates):
        total, n = 0, 0
        for i in range(h):
            for j in range(w):
                if mask[i, j] and stack[d, i, j] != nodata:
                    total += int(stack[d, i, j])
                    n += 1
        counts.append(n)
        means.append(total / n / 1e4 if n else float("nan"))
    return np.array(counts), np.array(means)


def zonal_numpy(stack, mask, nodata):
    """Vectorised numpy equivalent (the benchmark's comparison)."""
    valid = (stack != nodata) & mask.astype(bool)[None]
    counts = valid.sum(axis=(1, 2))
    sums = np.where(valid, stack, 0).sum(axis=(1, 2), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, np.where(counts > 0, sums / counts / 1e4, np.nan)


def vcurve_dense(y, weights, log10_grid, floor):
    """The V-curve choice of λ (same criterion as the compiled kernel, fit and penalty floored at
    `floor` before their log) with dense solves: (z at the chosen λ, chosen log10 λ)."""
    fits, pens = [], []
    observed = weights > 0
    for g in log10_grid:
        z = whittaker_dense(y, weights, 10.0 ** g)
        fits.append(np.log(max(np.sum(weights[observed] * (y[observed] - z[observed]) ** 2), floor)))
        pens.append(np.log(max(np.sum(np.diff(z, 2) ** 2), floor)))
    distance = np.hypot(np.diff(fits), np.diff(pens)) / np.diff(log10_grid)
    k = int(np.argmin(distance))
    chosen = (log10_grid[k] + log10_grid[k + 1]) / 2
    return whittaker_dense(y, weights, 10.0 ** chosen), chosen

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled hot loops of the assessment: per-date zonal reduction and the weighted Whittaker smoother
(one series, many series in one call, and λ chosen by the V-curve), sharing one banded LDL' solver.

Plain numpy/scipy references live in tests/sure2/references.py; the tests check these against them.
"""

from libc.math cimport INFINITY, NAN, log, pow, sqrt
from libc.stdlib cimport calloc, free

import numpy as np

cdef double _FLOOR = 1e-30
VCURVE_FLOOR = _FLOOR  # floor of fit and penalty before their log (a perfect fit, a straight line)


def zonal_stats(const short[:, :, ::1] stack, const unsigned char[:, ::1] mask, short nodata):
    """Per date: count of valid masked pixels and their mean (NaN where none is valid).

    stack: (n_dates, h, w) int16 window, pixel values NDVI x 10000; mask: (h, w), 1 = inside.
    One pass over the window; no temporaries the size of the stack.
    """
    cdef Py_ssize_t n_dates = stack.shape[0], h = stack.shape[1], w = stack.shape[2]
    if mask.shape[0] != h or mask.shape[1] != w:
        raise ValueError("mask shape does not match the window")
    counts_arr = np.zeros(n_dates, dtype=np.int32)
    means_arr = np.empty(n_dates, dtype=np.float64)
    cdef int[::1] counts = counts_arr
    cdef double[::1] means = means_arr
    cdef Py_ssize_t d, i, j
    cdef long long total
    cdef int n, valid, row_total
    cdef short v
    if w > 200000:
        raise ValueError("window rows longer than 200000 pixels")  # keeps an int row sum from overflowing
    with nogil:
        for d in range(n_dates):
            total = 0
            n = 0
            for i in range(h):
                row_total = 0  # 32-bit row sums let the compiler vectorise the inner loop
                for j in range(w):
                    # branch-free: clouds and edges are scattered, so branches would mispredict
                    v = stack[d, i, j]
                    valid = (mask[i, j] != 0) & (v != nodata)
                    row_total += v * valid
                    n += valid
                total += row_total
            counts[d] = n
            means[d] = (<double>total / n) * 1e-4 if n > 0 else NAN
    return counts_arr, means_arr


cdef void _penalty_bands(Py_ssize_t n, double* p0, double* p1) noexcept nogil:
    """Diagonal and first off-diagonal of D'D (the second is all ones): exact small integers."""
    cdef Py_ssize_t i
    for i in range(n):
        p0[i] = 0.0
    for i in range(n - 1):
        p1[i] = 0.0
    for i in range(n - 2):
        # row i of D is (1, -2, 1) at columns i, i+1, i+2: add its outer product.
        p0[i] += 1.0
        p0[i + 1] += 4.0
        p0[i + 2] += 1.0
        p1[i] += -2.0
        p1[i + 1] += -2.0


cdef void _factor(const double* w, double lam, Py_ssize_t n, const double* p0, const double* p1,
                  double* dd, double* l1, double* l2) noexcept nogil:
    """LDL' of the pentadiagonal A = W + lam * D'D: dd the diagonal of D, l1/l2 the sub-diagonals of L."""
    cdef Py_ssize_t i
    for i in range(n):
        dd[i] = w[i] + lam * p0[i]
        if i >= 1:
            dd[i] -= l1[i - 1] * l1[i - 1] * dd[i - 1]
        if i >= 2:
            dd[i] -= l2[i - 2] * l2[i - 2] * dd[i - 2]
        if i + 1 < n:
            l1[i] = lam * p1[i]
            if i >= 1:
                l1[i] -= l2[i - 1] * l1[i - 1] * dd[i - 1]
            l1[i] /= dd[i]
        if i + 2 < n:
            l2[i] = lam / dd[i]


cdef void _substitute(const double* y, const double* w, Py_ssize_t n, const double* dd, const double* l1,
                      const double* l2, double* z) noexcept nogil:
    """Forward (L), diagonal (D), backward (L') substitution of W y into z; weight-0 entries of y unread."""
    cdef Py_ssize_t i
    for i in range(n):
        z[i] = w[i] * y[i] if w[i] > 0 else 0.0
        if i >= 1:
            z[i] -= l1[i - 1] * z[i - 1]
        if i >= 2:
            z[i] -= l2[i - 2] * z[i - 2]
    for i in range(n):
        z[i] /= dd[i]
    for i in range(n - 1, -1, -1):
        if i + 1 < n:
            z[i] -= l1[i] * z[i + 1]
        if i + 2 < n:
            z[i] -= l2[i] * z[i + 2]


cdef int _positive(const double* w, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int k = 0
    for i in range(n):
        if w[i] > 0:
            k += 1
    return k


cdef class _Work:
    """Scratch for a series length n: penalty bands and LDL' factors, allocated once per call."""
    cdef double* buf
    cdef double* p0
    cdef double* p1
    cdef double* dd
    cdef double* l1
    cdef double* l2
    cdef double* z

    def __cinit__(self, Py_ssize_t n):
        self.buf = <double*>calloc(6 * n + 1, sizeof(double))
        if self.buf == NULL:
            raise MemoryError()
        self.p0, self.p1, self.dd = self.buf, self.buf + n, self.buf + 2 * n
        self.l1, self.l2, self.z = self.buf + 3 * n, self.buf + 4 * n, self.buf + 5 * n
        _penalty_bands(n, self.p0, self.p1)

    def __dealloc__(self):
        free(self.buf)


def whittaker(const double[::1] y, const double[::1] weights, double lam):
    """Weighted Whittaker smoother with second-order differences.

    Solves (W + lam * D'D) z = W y, D the (n-2) x n second-difference matrix, by an LDL' factorisation
    of the symmetric pentadiagonal system: O(n). Entries of y with weight 0 may be NaN (missing).
    Needs at least 3 positive weights (else the system is singular); raises ValueError otherwise.
    """
    cdef Py_ssize_t n = y.shape[0]
    if weights.shape[0] != n:
        raise ValueError("y and weights differ in length")
    if lam < 0:
        raise ValueError("lambda must be >= 0")
    cdef int n_pos = _positive(&weights[0], n) if n else 0
    if n_pos < 3 or (lam == 0 and n_pos < n):
        raise ValueError("too few observed dates to smooth")
    out_arr = np.empty(n, dtype=np.float64)
    cdef double[::1] z = out_arr
    cdef _Work work = _Work(n)
    with nogil:
        _factor(&weights[0], lam, n, work.p0, work.p1, work.dd, work.l1, work.l2)
        _substitute(&y[0], &weights[0], n, work.dd, work.l1, work.l2, &z[0])
    return out_arr


def whittaker_batch(const double[:, ::1] y, const double[:, ::1] weights, double lam):
    """whittaker() of every row in one call: z[r] = whittaker(y[r], weights[r], lam).

    A row with the same weights as the row factored last reuses its LDL' factors (only the
    substitution runs): neighbouring pixels share their cloud pattern, so most rows do. A row with
    fewer than 3 positive weights (a pixel almost never seen) is all NaN, not an error.
    """
    cdef Py_ssize_t m = y.shape[0], n = y.shape[1], r, i, last = -1
    if weights.shape[0] != m or weights.shape[1] != n:
        raise ValueError("y and weights differ in shape")
    if lam <= 0:
        raise ValueError("lambda must be > 0")
    out_arr = np.empty((m, n), dtype=np.float64)
    cdef double[:, ::1] z = out_arr
    cdef _Work work = _Work(n)
    cdef bint same
    with nogil:
        for r in range(m):
            if n < 3 or _positive(&weights[r, 0], n) < 3:
                for i in range(n):
                    z[r, i] = NAN
                continue
            same = last >= 0
            if same:
                for i in range(n):
                    if weights[r, i] != weights[last, i]:
                        same = False
                        break
            if not same:
                _factor(&weights[r, 0], lam, n, work.p0, work.p1, work.dd, work.l1, work.l2)
                last = r
            _substitute(&y[r, 0], &weights[r, 0], n, work.dd, work.l1, work.l2, &z[r, 0])
    return out_arr


cdef double _log_floored(double x) noexcept nogil:
    return log(x if x > _FLOOR else _FLOOR)


def whittaker_vcurve(const double[::1] y, const double[::1] weights, const double[::1] log10_grid):
    """Whittaker smoothing with λ chosen by the V-curve (Frasso & Eilers 2015; as WFP VAM's ws2doptv).

    For every λ = 10**g of the grid (increasing, >= 2 points): z(λ), log fit = log Σ w (y − z)²
    (weighted residual sum of squares over observed dates) and log penalty = log Σ (Δ²z)², each floored
    at log(VCURVE_FLOOR) so a perfect fit or a straight line stays finite. The V-curve distance between
    consecutive grid points k, k+1 is sqrt(Δlog fit² + Δlog penalty²) / (g[k+1] − g[k]); the chosen
    log10 λ is the midpoint (g[k] + g[k+1]) / 2 of the pair with the smallest distance (the first, on a
    tie). Returns (z at the chosen λ, chosen log10 λ). Needs at least 3 positive weights.
    """
    cdef Py_ssize_t n = y.shape[0], n_grid = log10_grid.shape[0], k, i
    if weights.shape[0] != n:
        raise ValueError("y and weights differ in length")
    if n_grid < 2:
        raise ValueError("the V-curve needs at least 2 grid points")
    for k in range(n_grid - 1):
        if not log10_grid[k + 1] > log10_grid[k]:
            raise ValueError("the V-curve grid must increase")
    if n == 0 or _positive(&weights[0], n) < 3:
        raise ValueError("too few observed dates to smooth")
    out_arr = np.empty(n, dtype=np.float64)
    cdef double[::1] z = out_arr
    cdef _Work work = _Work(n)
    cdef double fit, pen, r, dist, best = INFINITY, chosen = 0.0, prev_fit = 0.0, prev_pen = 0.0
    with nogil:
        for k in range(n_grid):
            _factor(&weights[0], pow(10.0, log10_grid[k]), n, work.p0, work.p1, work.dd, work.l1, work.l2)
            _substitute(&y[0], &weights[0], n, work.dd, work.l1, work.l2, work.z)
            fit = 0.0
            for i in range(n):
                if weights[i] > 0:
                    r = y[i] - work.z[i]
                    fit += weights[i] * r * r
            pen = 0.0
            for i in range(n - 2):
                r = work.z[i] - 2 * work.z[i + 1] + work.z[i + 2]
                pen += r * r
            fit, pen = _log_floored(fit), _log_floored(pen)
            if k > 0:
                dist = sqrt((fit - prev_fit) ** 2 + (pen - prev_pen) ** 2) / (log10_grid[k] - log10_grid[k - 1])
                if dist < best:
                    best = dist
                    chosen = (log10_grid[k - 1] + log10_grid[k]) / 2
            prev_fit, prev_pen = fit, pen
        _factor(&weights[0], pow(10.0, chosen), n, work.p0, work.p1, work.dd, work.l1, work.l2)
        _substitute(&y[0], &weights[0], n, work.dd, work.l1, work.l2, &z[0])
    return out_arr, chosen

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
                  double* dd, double* di, double* l1, double* l2) noexcept nogil:
    """LDL' of the pentadiagonal A = W + lam * D'D: dd the diagonal of D (di its reciprocal: one division
    per date, multiplications elsewhere), l1/l2 the sub-diagonals of L."""
    cdef Py_ssize_t i
    for i in range(n):
        dd[i] = w[i] + lam * p0[i]
        if i >= 1:
            dd[i] -= l1[i - 1] * l1[i - 1] * dd[i - 1]
        if i >= 2:
            dd[i] -= l2[i - 2] * l2[i - 2] * dd[i - 2]
        di[i] = 1.0 / dd[i]
        if i + 1 < n:
            l1[i] = lam * p1[i]
            if i >= 1:
                l1[i] -= l2[i - 1] * l1[i - 1] * dd[i - 1]
            l1[i] *= di[i]
        if i + 2 < n:
            l2[i] = lam * di[i]


cdef void _substitute(const double* y, const double* w, Py_ssize_t n, const double* di, const double* l1,
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
        z[i] *= di[i]
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
    cdef double* di
    cdef double* l1
    cdef double* l2

    def __cinit__(self, Py_ssize_t n):
        self.buf = <double*>calloc(6 * n + 1, sizeof(double))
        if self.buf == NULL:
            raise MemoryError()
        self.p0, self.p1, self.dd = self.buf, self.buf + n, self.buf + 2 * n
        self.di, self.l1, self.l2 = self.buf + 3 * n, self.buf + 4 * n, self.buf + 5 * n
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
        _factor(&weights[0], lam, n, work.p0, work.p1, work.dd, work.di, work.l1, work.l2)
        _substitute(&y[0], &weights[0], n, work.di, work.l1, work.l2, &z[0])
    return out_arr


cdef enum:
    LANES = 8  # series solved side by side in whittaker_batch


cdef void _factor_lanes(const double* w, const double* lam, Py_ssize_t n, const double* p0, const double* p1,
                        double* dd, double* di, double* l1, double* l2) noexcept nogil:
    """_factor of LANES systems at once, lane j with lam[j]; arrays are [date][lane]. Each lane does
    exactly _factor's arithmetic in _factor's order (same results); their recurrences overlap."""
    cdef Py_ssize_t i, j, b, b1, b2
    for i in range(n):
        b, b1, b2 = i * LANES, (i - 1) * LANES, (i - 2) * LANES
        for j in range(LANES):
            dd[b + j] = w[b + j] + lam[j] * p0[i]
        if i >= 1:
            for j in range(LANES):
                dd[b + j] -= l1[b1 + j] * l1[b1 + j] * dd[b1 + j]
        if i >= 2:
            for j in range(LANES):
                dd[b + j] -= l2[b2 + j] * l2[b2 + j] * dd[b2 + j]
        for j in range(LANES):
            di[b + j] = 1.0 / dd[b + j]
        if i + 1 < n:
            for j in range(LANES):
                l1[b + j] = lam[j] * p1[i]
            if i >= 1:
                for j in range(LANES):
                    l1[b + j] -= l2[b1 + j] * l1[b1 + j] * dd[b1 + j]
            for j in range(LANES):
                l1[b + j] *= di[b + j]
        if i + 2 < n:
            for j in range(LANES):
                l2[b + j] = lam[j] * di[b + j]


cdef void _substitute_lanes(const double* y, const double* w, Py_ssize_t n, const double* di, const double* l1,
                            const double* l2, double* z) noexcept nogil:
    """_substitute of LANES series at once ([date][lane] arrays, _substitute's arithmetic and order)."""
    cdef Py_ssize_t i, j, b
    for i in range(n):
        b = i * LANES
        for j in range(LANES):
            z[b + j] = w[b + j] * y[b + j] if w[b + j] > 0 else 0.0
        if i >= 1:
            for j in range(LANES):
                z[b + j] -= l1[b - LANES + j] * z[b - LANES + j]
        if i >= 2:
            for j in range(LANES):
                z[b + j] -= l2[b - 2 * LANES + j] * z[b - 2 * LANES + j]
    for i in range(n * LANES):
        z[i] *= di[i]
    for i in range(n - 1, -1, -1):
        b = i * LANES
        if i + 1 < n:
            for j in range(LANES):
                z[b + j] -= l1[b + j] * z[b + LANES + j]
        if i + 2 < n:
            for j in range(LANES):
                z[b + j] -= l2[b + j] * z[b + 2 * LANES + j]


cdef class _Lanes:
    """Scratch for LANES series of n dates solved side by side: [date][lane] arrays (y, w, the factors,
    z), each lane's λ, and the penalty bands; allocated once per call."""
    cdef Py_ssize_t n
    cdef double* buf
    cdef double* p0
    cdef double* p1
    cdef double* y
    cdef double* w
    cdef double* dd
    cdef double* di
    cdef double* l1
    cdef double* l2
    cdef double* z
    cdef double lam[LANES]

    def __cinit__(self, Py_ssize_t n):
        cdef Py_ssize_t size = n * LANES
        self.n = n
        self.buf = <double*>calloc(2 * n + 7 * size + 1, sizeof(double))
        if self.buf == NULL:
            raise MemoryError()
        self.p0, self.p1 = self.buf, self.buf + n
        self.y, self.w, self.dd = self.buf + 2 * n, self.buf + 2 * n + size, self.buf + 2 * n + 2 * size
        self.di, self.l1, self.l2 = self.buf + 2 * n + 3 * size, self.buf + 2 * n + 4 * size, self.buf + 2 * n + 5 * size
        self.z = self.buf + 2 * n + 6 * size
        _penalty_bands(n, self.p0, self.p1)

    cdef void solve(self) noexcept nogil:
        _factor_lanes(self.w, self.lam, self.n, self.p0, self.p1, self.dd, self.di, self.l1, self.l2)
        _substitute_lanes(self.y, self.w, self.n, self.di, self.l1, self.l2, self.z)

    def __dealloc__(self):
        free(self.buf)


def whittaker_batch(const double[:, ::1] y, const double[:, ::1] weights, double lam):
    """whittaker() of every row in one call: z[r] = whittaker(y[r], weights[r], lam), the same numbers.

    Rows are solved LANES at a time side by side (each with its own factors): one series' solve is a
    chain of dependent steps, so interleaving independent series keeps the floating-point units busy.
    A row with fewer than 3 positive weights (a pixel almost never seen) is all NaN, not an error.
    """
    cdef Py_ssize_t m = y.shape[0], n = y.shape[1], r0, i, j, k
    if weights.shape[0] != m or weights.shape[1] != n:
        raise ValueError("y and weights differ in shape")
    if lam <= 0:
        raise ValueError("lambda must be > 0")
    out_arr = np.empty((m, n), dtype=np.float64)
    cdef double[:, ::1] z = out_arr
    if m == 0 or n == 0:
        return out_arr
    cdef _Lanes lanes = _Lanes(n)
    cdef int ok[LANES]
    for j in range(LANES):
        lanes.lam[j] = lam
    r0 = 0
    with nogil:
        while r0 < m:
            k = min(<Py_ssize_t>LANES, m - r0)
            for j in range(LANES):  # a lane past the last row solves a dummy series (all seen, zeros)
                ok[j] = j < k and n >= 3 and _positive(&weights[r0 + j, 0], n) >= 3
                for i in range(n):
                    lanes.y[i * LANES + j] = y[r0 + j, i] if ok[j] else 0.0
                    lanes.w[i * LANES + j] = weights[r0 + j, i] if ok[j] else 1.0
            lanes.solve()
            for j in range(k):
                for i in range(n):
                    z[r0 + j, i] = lanes.z[i * LANES + j] if ok[j] else NAN
            r0 += LANES
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
    The grid's solves run LANES λ at a time side by side (the penalty bands are built once).
    """
    cdef Py_ssize_t n = y.shape[0], n_grid = log10_grid.shape[0], k, k0, i, j, b
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
    cdef _Lanes lanes = _Lanes(n)
    fits_arr, pens_arr = np.empty(n_grid), np.empty(n_grid)
    cdef double[::1] fits = fits_arr
    cdef double[::1] pens = pens_arr
    cdef double fit, pen, r, dist, best = INFINITY, chosen = 0.0
    with nogil:
        for i in range(n):
            for j in range(LANES):
                lanes.y[i * LANES + j] = y[i] if weights[i] > 0 else 0.0
                lanes.w[i * LANES + j] = weights[i]
        k0 = 0
        while k0 < n_grid:
            for j in range(LANES):  # lanes past the grid's end repeat its last λ
                lanes.lam[j] = pow(10.0, log10_grid[min(k0 + j, n_grid - 1)])
            lanes.solve()
            for j in range(min(<Py_ssize_t>LANES, n_grid - k0)):
                fit = 0.0
                for i in range(n):
                    if weights[i] > 0:
                        r = y[i] - lanes.z[i * LANES + j]
                        fit += weights[i] * r * r
                pen = 0.0
                for i in range(n - 2):
                    b = i * LANES + j
                    r = lanes.z[b] - 2 * lanes.z[b + LANES] + lanes.z[b + 2 * LANES]
                    pen += r * r
                fits[k0 + j], pens[k0 + j] = _log_floored(fit), _log_floored(pen)
            k0 += LANES
        for k in range(1, n_grid):
            dist = sqrt((fits[k] - fits[k - 1]) ** 2 + (pens[k] - pens[k - 1]) ** 2) / (log10_grid[k] - log10_grid[k - 1])
            if dist < best:
                best = dist
                chosen = (log10_grid[k - 1] + log10_grid[k]) / 2
        _factor(&weights[0], pow(10.0, chosen), n, work.p0, work.p1, work.dd, work.di, work.l1, work.l2)
        _substitute(&y[0], &weights[0], n, work.di, work.l1, work.l2, &z[0])
    return out_arr, chosen

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled hot loops of the assessment: per-date zonal reduction and the weighted Whittaker smoother.

Plain numpy/scipy references live in tests/sure2/references.py; the tests check these against them.
"""

from libc.math cimport NAN
from libc.stdlib cimport calloc, free

import numpy as np


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


def whittaker(const double[::1] y, const double[::1] weights, double lam):
    """Weighted Whittaker smoother with second-order differences.

    Solves (W + lam * D'D) z = W y, D the (n-2) x n second-difference matrix, by an LDL' factorisation
    of the symmetric pentadiagonal system: O(n). Entries of y with weight 0 may be NaN (missing).
    Needs at least 3 positive weights (else the system is singular); raises ValueError otherwise.
    """
    cdef Py_ssize_t n = y.shape[0], i
    if weights.shape[0] != n:
        raise ValueError("y and weights differ in length")
    if lam < 0:
        raise ValueError("lambda must be >= 0")
    cdef int n_pos = 0
    for i in range(n):
        if weights[i] > 0:
            n_pos += 1
    if n_pos < 3 or (lam == 0 and n_pos < n):
        raise ValueError("too few observed dates to smooth")
    out_arr = np.empty(n, dtype=np.float64)
    cdef double[::1] z = out_arr
    # Bands of A = W + lam * D'D (a0 diagonal, a1/a2 first/second off-diagonal) and its LDL' factors
    # (dd diagonal of D, l1/l2 sub-diagonals of the unit lower-triangular L): one scratch buffer.
    cdef double* work = <double*>calloc(6 * n, sizeof(double))
    if work == NULL:
        raise MemoryError()
    cdef double* a0 = work
    cdef double* a1 = work + n
    cdef double* a2 = work + 2 * n
    cdef double* dd = work + 3 * n
    cdef double* l1 = work + 4 * n
    cdef double* l2 = work + 5 * n
    with nogil:
        for i in range(n - 2):
            # row i of D is (1, -2, 1) at columns i, i+1, i+2: add its outer product.
            a0[i] += lam
            a0[i + 1] += 4 * lam
            a0[i + 2] += lam
            a1[i] += -2 * lam
            a1[i + 1] += -2 * lam
            a2[i] += lam
        for i in range(n):
            a0[i] += weights[i]
        for i in range(n):
            dd[i] = a0[i]
            if i >= 1:
                dd[i] -= l1[i - 1] * l1[i - 1] * dd[i - 1]
            if i >= 2:
                dd[i] -= l2[i - 2] * l2[i - 2] * dd[i - 2]
            if i + 1 < n:
                l1[i] = a1[i]
                if i >= 1:
                    l1[i] -= l2[i - 1] * l1[i - 1] * dd[i - 1]
                l1[i] /= dd[i]
            if i + 2 < n:
                l2[i] = a2[i] / dd[i]
        # Forward (L), diagonal (D), backward (L') substitution into z.
        for i in range(n):
            z[i] = weights[i] * y[i] if weights[i] > 0 else 0.0
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
        free(work)
    return out_arr

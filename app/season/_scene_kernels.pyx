# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -fno-trapping-math -ffp-contract=off
"""Compiled per-window loops of the scene read (app.season.scene_ndvi): the offset evidence and the
NDVI, one pass each without the GIL, SCL looked up at its own resolution (`step` 10 m pixels per SCL
pixel: 2 for a real product's 20 m grid, 1 when GDAL resampled it) instead of a 10 m copy.

The arithmetic is numpy's float32 one, step for step (the same IEEE operations in the same order), so
the results are bit-identical to tests/season/scene_references.py, which the tests compare them with.
-fno-trapping-math lets the compiler compute the masked-out lanes too (no FP exception is ever looked
at), so the NDVI loop vectorises; it changes no result (rounding stays IEEE round-to-nearest), and
-ffp-contract=off keeps the compiler from fusing a multiply and an add (one rounding less).
"""

import numpy as np


cdef extern from *:
    """
    /* One row of each pass, in C so that the selects stay selects (Cython writes ternaries as if/else,
       which mispredict on scattered clouds) and the NDVI loop vectorises. keep[j]: 1 where the SCL
       class is not masked (built per row by the caller; all 1 without an SCL). */
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    /* AVX2 where the node has it (chosen at load time), plain x86-64 elsewhere: the same results */
    __attribute__((target_clones("avx2", "default")))
    #endif
    static void ndvi_row(const unsigned short *r, const unsigned short *n, const unsigned char *keep,
                         short *out, Py_ssize_t w, float twice_offset, short nodata) {
        /* 1.5 * 2**23: adding and subtracting it rounds a float32 of magnitude < 2**22 to the nearest
           integer, ties to even, as rintf and np.rint do, without a libm call */
        const float rounding = 12582912.0f;
        for (Py_ssize_t j = 0; j < w; j++) {
            float red = (float)r[j], nir = (float)n[j];
            float total = (nir + red) - twice_offset;
            int ok = (r[j] != 0) & (n[j] != 0) & (total > 0.0f) & (keep[j] != 0);
            float v = (nir - red) / (ok ? total : 1.0f);
            v = v < 1.0f ? v : 1.0f;
            v = v > -1.0f ? v : -1.0f;
            v = ((v * 10000.0f) + rounding) - rounding;
            out[j] = ok ? (short)v : nodata;
        }
    }

    static void evidence_row(const unsigned short *r, const unsigned char *flags, Py_ssize_t w, int below_dn,
                             long long *counts) {
        /* flags[j]: bit 0 a clear class, bit 1 vegetation */
        int c = 0, b = 0, g = 0;
        for (Py_ssize_t j = 0; j < w; j++) {
            int ok = (r[j] != 0) & flags[j];
            c += ok;
            b += ok & (r[j] < below_dn);
            g += ok & (flags[j] >> 1);
        }
        counts[0] += c; counts[1] += b; counts[2] += g;
    }
    """
    void ndvi_row(const unsigned short* r, const unsigned short* n, const unsigned char* keep, short* out,
                  Py_ssize_t w, float twice_offset, short nodata) noexcept nogil
    void evidence_row(const unsigned short* r, const unsigned char* flags, Py_ssize_t w, int below_dn,
                      long long* counts) noexcept nogil


cdef void _lookup_row(const unsigned char[:, ::1] scl, Py_ssize_t i, int shift, const unsigned char* lut,
                      unsigned char* row, Py_ssize_t w) noexcept nogil:
    """row[j] = lut[class of 10 m pixel (i, j)]: the SCL row read at its own resolution, looked up once
    per SCL row (the 10 m rows it covers reuse it)."""
    cdef Py_ssize_t j
    cdef const unsigned char* c
    if shift >= 0 and (i & ((1 << shift) - 1)) == 0:
        c = &scl[i >> shift, 0]
        for j in range(w):
            row[j] = lut[c[j >> shift]]


def evidence_counts(const unsigned short[:, ::1] red, const unsigned char[:, ::1] scl, int step,
                    const unsigned char[::1] clear_lut, int vegetation_class, int below_dn):
    """(clear, below, vegetation) pixel counts of one window: clear = red DN > 0 and (with an SCL) a
    clear class; below = clear and red DN < below_dn; vegetation = clear and SCL = vegetation_class.
    scl may be None (every non-nodata pixel clear, none vegetation)."""
    cdef Py_ssize_t h = red.shape[0], w = red.shape[1], i
    cdef int shift = _shift(scl, h, w, step)
    cdef long long counts[3]
    counts[0] = counts[1] = counts[2] = 0
    flags_arr = (np.asarray(clear_lut) != 0).astype(np.uint8)
    flags_arr[vegetation_class] |= 2
    cdef const unsigned char[::1] flags = flags_arr
    row_arr = np.ones(max(w, 1), dtype=np.uint8)  # no SCL: every pixel clear, none vegetation
    cdef unsigned char[::1] row = row_arr
    with nogil:
        for i in range(h):
            _lookup_row(scl, i, shift, &flags[0], &row[0], w)
            evidence_row(&red[i, 0], &row[0], w, below_dn, counts)
    return counts[0], counts[1], counts[2]


def ndvi_int16(const unsigned short[:, ::1] red, const unsigned short[:, ::1] nir,
               const unsigned char[:, ::1] scl, int step, int offset_dn,
               const unsigned char[::1] masked_lut, short nodata):
    """int16 NDVI x 10000 of one window from uint16 DN: (NIR - red) / (NIR + red - 2 offset), clipped
    to [-1, 1]; nodata where red or NIR is 0, the sum is <= 0, or (scl not None) the class is masked."""
    cdef Py_ssize_t h = red.shape[0], w = red.shape[1], i
    if nir.shape[0] != h or nir.shape[1] != w:
        raise ValueError("red and NIR windows differ in shape")
    cdef int shift = _shift(scl, h, w, step)
    out_arr = np.empty((h, w), dtype=np.int16)
    cdef short[:, ::1] out = out_arr
    keep_arr = (1 - np.asarray(masked_lut)).astype(np.uint8)
    cdef const unsigned char[::1] keep_lut = keep_arr
    row_arr = np.ones(max(w, 1), dtype=np.uint8)  # no SCL: every pixel kept
    cdef unsigned char[::1] row = row_arr
    with nogil:
        for i in range(h):
            _lookup_row(scl, i, shift, &keep_lut[0], &row[0], w)
            ndvi_row(&red[i, 0], &nir[i, 0], &row[0], &out[i, 0], w, 2.0 * offset_dn, nodata)
    return out_arr


cdef int _shift(const unsigned char[:, ::1] scl, Py_ssize_t h, Py_ssize_t w, int step) except -2:
    """-1 without an SCL, else log2(step) (1 or 2 only), once the SCL is known to cover the window."""
    if scl is None:
        return -1
    if step not in (1, 2) or scl.shape[0] * step < h or scl.shape[1] * step < w:
        raise ValueError(f"SCL window {scl.shape[0]}x{scl.shape[1]} (step {step}) does not cover {h}x{w}")
    return step - 1

"""Plain numpy references of the compiled scene kernels (app.season._scene_kernels), as the read was
written before they existed: the tests check the kernels against them bit for bit."""

import numpy as np


def scl_at_10m(scl, step: int, shape) -> np.ndarray | None:
    if scl is None:
        return None
    return np.repeat(np.repeat(scl, step, axis=0), step, axis=1)[:shape[0], :shape[1]]


def evidence_counts(red, scl, step, clear_lut, vegetation_class, below_dn):
    clear = red > 0
    vegetation = 0
    scl = scl_at_10m(scl, step, red.shape)
    if scl is not None:
        clear &= clear_lut[scl].astype(bool)
        vegetation = int(np.count_nonzero(clear & (scl == vegetation_class)))
    return int(np.count_nonzero(clear)), int(np.count_nonzero(clear & (red < below_dn))), vegetation


def ndvi_int16(red, nir, scl, step, offset_dn, masked_lut, nodata):
    n = nir.astype(np.float32)
    r = red.astype(np.float32)
    total = n + r
    total -= 2 * offset_dn
    n -= r
    ok = (red != 0) & (nir != 0) & (total > 0)
    scl = scl_at_10m(scl, step, red.shape)
    if scl is not None:
        ok &= masked_lut[scl] == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        n /= total
    np.clip(n, -1.0, 1.0, out=n)
    n *= 10000
    out = np.rint(n, out=n)
    out[~ok] = 0
    out = out.astype(np.int16)
    out[~ok] = nodata
    return out

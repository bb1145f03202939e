"""The published int8 form of the Satellite Embedding (AlphaEarth) rasters, and its inverse.

    v = sign(q) · (|q| / 127.5)²        q in -127..127; q = -128 in all 64 bands = nodata

Quantisation is square-root companding: steps are fine near 0 ((1/127.5)² ≈ 6.2e-5) and coarse near
±1 (≈ 0.0156). int8 sources are never re-quantised (shards keep their bytes as they are), so the only
rounding is the one the publisher made. Float32 exports are quantised here with the inverse rule:
quantise(dequantise(q)) == q for every valid q (-127..127), and |dequantise(quantise(v)) - v| < 0.0079 for |v| ≤ 1
(about half the largest step; the maximum, 0.00783, sits at |v| = 1, which becomes q = ±127 =
±0.99217).

Nodata dequantises to 0 (a zero vector, not -1.008): it carries label 255 and counts in no loss or
metric, and a neutral input keeps it from disturbing its valid neighbours' receptive fields.

numpy only at import (the shard writer and the GPU benchmark use it without rasterio); torch is
imported by the function that needs it.
"""

import numpy as np

from app.emb import BANDS

NODATA = -128
SCALE = 127.5
MAX_ROUND_TRIP_ERROR = 0.0079  # stated above; checked by the tests on a dense grid of v

# LUT[q + 128] = v: built in float64, stored float32 (what the model sees on the CPU).
_Q = np.arange(-128, 128, dtype=np.float64)
LUT = (np.sign(_Q) * (np.abs(_Q) / SCALE) ** 2).astype(np.float32)
LUT[0] = 0.0  # q = -128: nodata


def dequantise_np(q: np.ndarray) -> np.ndarray:
    """int8 → float32 by the published rule (nodata → 0)."""
    return LUT[q.astype(np.int16) + 128]


def quantise(v: np.ndarray) -> np.ndarray:
    """Float components in [-1, 1] → int8 by the inverse rule; NaN → nodata (-128).

    In float32 and in place (a float export's read window is large: no float64 copies of it).
    """
    v = np.asarray(v, dtype=np.float32)
    missing = np.isnan(v)
    q = np.abs(v)
    np.sqrt(q, out=q)
    q *= SCALE
    np.rint(q, out=q)
    np.minimum(q, 127, out=q)
    np.copysign(q, v, out=q)
    q[missing] = 0
    out = q.astype(np.int8)
    out[missing] = NODATA
    return out


def nodata_pixels(q: np.ndarray) -> np.ndarray:
    """[..., 64, H, W] int8 → [..., H, W] bool: the pixels that are nodata in every band."""
    if q.shape[-3] != BANDS:
        raise ValueError(f"expected {BANDS} bands, got shape {q.shape}")
    return (q == NODATA).all(axis=-3)


def dequantise(x_int8, dtype=None, channels_last: bool = False):
    """torch int8 chips → floats by the published rule, on whatever device they already are.

    Computed as q·|q| / 127.5² (then nodata → 0) rather than through the LUT: indexing a 256-entry
    table needs an integer copy of the batch (4-8 bytes per element: 1-2 GiB for a 64 × 256² × 64
    batch) and is slower even on a CPU (2.1 s vs 0.7 s per 16 chips of 256² here), while these
    elementwise ops fuse under torch.compile. Always computed in float32 and cast once to `dtype`:
    squaring in bf16 would compound two roundings (errors up to ~0.6 %); so the result equals the
    LUT within one float32 ulp, or is its bf16 rounding (tested).
    """
    import torch

    x = x_int8.to(torch.float32)
    x.mul_(x.abs()).masked_fill_(x_int8 == NODATA, 0.0).mul_(1.0 / SCALE ** 2)
    if dtype is not None and dtype != torch.float32:
        x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

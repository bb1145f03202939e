"""The published Satellite Embedding quantisation: v = sign(q)·(|q|/127.5)², -128 in all bands = nodata."""

import numpy as np
import torch

from app.emb import BANDS
from app.emb.quant import LUT, MAX_ROUND_TRIP_ERROR, NODATA, dequantise, dequantise_np, nodata_pixels, quantise

# Known vectors, computed by hand from the published rule.
KNOWN = {0: 0.0, 1: 1 / 127.5 ** 2, -1: -1 / 127.5 ** 2, 64: (64 / 127.5) ** 2, -64: -(64 / 127.5) ** 2,
         127: (127 / 127.5) ** 2, -127: -(127 / 127.5) ** 2}


def test_known_values_and_nodata():
    q = np.array(list(KNOWN), np.int8)
    assert np.allclose(dequantise_np(q), list(KNOWN.values()), rtol=1e-7, atol=0)
    assert abs(dequantise_np(np.array([-64], np.int8))[0] + 0.2519654) < 1e-6  # not -64/127 = -0.504 (old rule)
    assert dequantise_np(np.array([NODATA], np.int8))[0] == 0.0  # nodata is a zero vector, never -1.008


def test_int8_round_trip_is_exact_and_float_round_trip_error_is_as_stated():
    q = np.arange(-127, 128, dtype=np.int8)
    assert np.array_equal(quantise(dequantise_np(q)), q)
    v = np.linspace(-1, 1, 400_001)
    err = np.abs(dequantise_np(quantise(v)).astype(np.float64) - v)
    assert err.max() < MAX_ROUND_TRIP_ERROR
    assert err.max() > 0.0078  # the stated bound is tight: the maximum is at |v| = 1 (q = ±127)
    small = np.abs(v) < 0.01
    assert err[small].max() < 0.001  # square-root companding: steps shrink towards zero
    assert quantise(np.array([np.nan]))[0] == NODATA


def test_nodata_needs_all_bands():
    q = np.zeros((BANDS, 2, 3), np.int8)
    q[:, 0, 0] = NODATA
    q[5, 1, 1] = NODATA  # one band alone is not the nodata marker
    assert nodata_pixels(q).tolist() == [[True, False, False], [False, False, False]]


def test_torch_dequantise_matches_the_table():
    q = torch.arange(-128, 128, dtype=torch.int8).reshape(1, 1, 16, 16).expand(2, BANDS, 16, 16).contiguous()
    got = dequantise(q)
    want = torch.from_numpy(LUT).reshape(16, 16)
    assert got.dtype == torch.float32
    assert torch.allclose(got[1, 7], want, rtol=1.2e-7, atol=0)  # within one float32 ulp
    assert got[0, 0, 0, 0] == 0.0  # -128 → 0
    bf16 = dequantise(q, torch.bfloat16, channels_last=True)
    assert bf16.dtype == torch.bfloat16 and bf16.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(bf16.float(), got, rtol=2 ** -8, atol=0)  # one bf16 rounding, not two

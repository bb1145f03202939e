"""The compiled scene kernels equal their numpy references bit for bit, on awkward windows."""

import numpy as np
import pytest

from app.season._scene_kernels import evidence_counts, ndvi_int16
from app.season.offset import _CLEAR_LUT, OFFSET_DN, VEGETATION
from app.season.scene_ndvi import DEFAULT_MASKED, class_lut
from app.season.stack_plan import NODATA

import scene_references as references


def _window(rng, h, w):
    """DN across the whole range, with the product's nodata 0, values around the offset (sums ≤ 0 after
    it), saturated and equal bands (NDVI 0, ±1)."""
    red = rng.integers(0, 12000, (h, w), dtype=np.uint16)
    nir = rng.integers(0, 12000, (h, w), dtype=np.uint16)
    red.flat[rng.integers(0, h * w, h * w // 10)] = 0
    nir.flat[rng.integers(0, h * w, h * w // 10)] = 0
    red.flat[rng.integers(0, h * w, h * w // 20)] = rng.integers(990, 1010, h * w // 20, dtype=np.uint16)
    nir.flat[: w] = 65535
    nir.flat[w: 2 * w] = red.flat[w: 2 * w]
    return red, nir


@pytest.mark.parametrize("shape", [(256, 256), (255, 97), (1, 1), (3, 512)])
@pytest.mark.parametrize("step", [None, 1, 2])
@pytest.mark.parametrize("offset", [0, OFFSET_DN])
def test_kernels_equal_the_numpy_references(shape, step, offset):
    rng = np.random.default_rng(hash((shape, step, offset)) % 2**32)
    red, nir = _window(rng, *shape)
    scl = None
    if step is not None:
        scl = rng.integers(0, 12, (-(-shape[0] // step), -(-shape[1] // step)), dtype=np.uint8)
    masked = class_lut(DEFAULT_MASKED)
    got = ndvi_int16(red, nir, scl, step or 1, offset, masked, NODATA)
    want = references.ndvi_int16(red, nir, scl, step or 1, offset, masked, NODATA)
    assert got.dtype == np.int16 and np.array_equal(got, want)
    assert (got != NODATA).any() or shape == (1, 1)
    args = (_CLEAR_LUT, VEGETATION, OFFSET_DN)
    assert evidence_counts(red, scl, step or 1, *args) == references.evidence_counts(red, scl, step or 1, *args)


def test_an_scl_that_does_not_cover_the_window_is_refused():
    red = np.ones((4, 4), dtype=np.uint16)
    with pytest.raises(ValueError, match="does not cover"):
        ndvi_int16(red, red, np.zeros((1, 2), dtype=np.uint8), 2, 0, class_lut(DEFAULT_MASKED), NODATA)
    with pytest.raises(ValueError, match="differ in shape"):
        ndvi_int16(red, red[:2], None, 1, 0, class_lut(DEFAULT_MASKED), NODATA)


def test_blocks_are_read_as_capped_rectangles_covering_each_block_once():
    from app.season.scene_ndvi import _rectangles

    rng = np.random.default_rng(11)
    for _ in range(500):
        n, share = rng.integers(0, 10), rng.random()
        max_rows, max_cols = rng.integers(1, 5, size=2)
        blocks = {(r, c) for r in range(n) for c in range(n) if rng.random() < share}
        rects = _rectangles(blocks, max_rows, max_cols)
        covered = [(r, c) for (r0, r1), (c0, c1) in rects for r in range(r0, r1) for c in range(c0, c1)]
        assert sorted(covered) == sorted(blocks)
        assert all(r1 - r0 <= max_rows and c1 - c0 <= max_cols for (r0, r1), (c0, c1) in rects)
    assert _rectangles({(r, c) for r in range(8) for c in range(8)}, 8, 8) == [((0, 8), (0, 8))]
    assert len(_rectangles({(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)}, 8, 8)) == 3

"""The spatial train/validation split: blocks of ground on one geographic grid shared by every UTM zone.

Why geographic: the published tiles live in their own UTM zones, and tiles of neighbouring zones
overlap (MGRS tiles do by design). Blocks drawn in each zone's metres would send the same ground to
train in one zone and to validation in the other. Blocks drawn in latitude/longitude are the same
ground for every tile.

The grid: rows of `block_m` metres of latitude (111,320 m per degree); in each row, columns of
`block_m` metres of longitude at the row's central latitude, so blocks are roughly square on the
ground at any latitude. A block is validation when a seeded hash of its (column, row) falls below
`val_frac`. A chip belongs to a block only if its whole footprint (corners, edge midpoints and centre,
each widened by `MARGIN_DEG` ≈ 1 m in latitude and longitude) falls inside it; other chips straddle a
block edge and are dropped, so no ground is seen by both splits, across zones too.
"""

import hashlib

import numpy as np

M_PER_DEG = 111_320.0
MARGIN_DEG = 1e-5
# Footprint sample points as fractions of the chip side (x, y): corners, edge midpoints, centre.
_FRACTIONS = np.array([(x, y) for x in (0.0, 0.5, 1.0) for y in (0.0, 0.5, 1.0)])


def block_split(bx: int, by: int, seed: int, val_frac: float) -> str:
    h = hashlib.sha256(f"{seed}:{bx}:{by}".encode()).digest()
    return "val" if int.from_bytes(h[:8], "little") / 2**64 < val_frac else "train"


def _blocks(lon: np.ndarray, lat: np.ndarray, block_m: float) -> tuple[np.ndarray, np.ndarray]:
    dlat = block_m / M_PER_DEG
    by = np.floor(lat / dlat)
    dlon = block_m / (M_PER_DEG * np.cos(np.radians((by + 0.5) * dlat)))
    return np.floor(lon / dlon), by


def chip_blocks(crs_wkt: str, origins: np.ndarray, side_m: float, block_m: float) -> list[tuple[int, int] | None]:
    """The geographic block of each chip, or None for a chip that straddles block edges.

    origins: [n, 2] map coordinates (x, y) of the chips' north-west corners in the tile's CRS.
    """
    from pyproj import CRS, Transformer

    to_lonlat = Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True)
    xs = origins[:, None, 0] + _FRACTIONS[None, :, 0] * side_m
    ys = origins[:, None, 1] - _FRACTIONS[None, :, 1] * side_m
    lon, lat = to_lonlat.transform(xs, ys)
    found = np.concatenate([np.stack(_blocks(np.asarray(lon) + dlon, np.asarray(lat) + dlat, block_m), axis=-1)
                            for dlon in (-MARGIN_DEG, MARGIN_DEG) for dlat in (-MARGIN_DEG, MARGIN_DEG)],
                           axis=1)  # [n, points × 4 shifts, 2]
    same = (found == found[:, :1]).all(axis=(1, 2))
    return [(int(f[0, 0]), int(f[0, 1])) if ok else None for f, ok in zip(found, same)]

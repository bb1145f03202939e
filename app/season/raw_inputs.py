"""Raw-input generator with ground truth: Sentinel-2 L2A scenes as users download them, and an
insurer's field file, for `app.season build` (like torchgeo's fake-data generators).

    python -m app.season raw --out DIR [--fields 30 --tile 384 --dates 37 --seed 0] [--variant insurer]

Writes under DIR:
  scenes/<item id>/{B04,B08,SCL}.tif + <item id>.json   one STAC item per granule and date (COGs)
  scenes/collection.json                               the same items as one ItemCollection
  fields.gpkg, fields.shp.zip, fields.geojson, fields.fgb, fields.parquet   the same rows, EPSG:25833
  fields_nocrs.shp.zip                                 the same Shapefile without its .prj
  mapping.toml                                         how the file's columns become the contract
  baseline_table.csv                                   a user baseline table (simulated history)
  history_table.csv                                    (variant insurer) per-year unit curves: percentile terms
  truth.parquet, truth_pixels.parquet, truth_scenes.parquet   what the import must recover

The scene: south-east Norway at the 12°E meridian, where UTM zones 32 and 33 meet. Granule A
(zone 32, served earthsearch-style: assets red/nir/scl, `earthsearch:boa_offset_applied`,
`raster:bands` scale/offset) overlaps granules B1 and B2 (zone 33, Planetary-Computer-style:
B04/B08/SCL, `s2:processing_baseline` only), which overlap each other (same datatake: merged by
solar day). The zones see different orbits, so their stacks have different dates. DN are uint16,
nodata 0, reflectance x 10000, plus 1000 where the product carries the BOA offset (processing
baseline >= 04.00); a few items lie about it (see SCENE_QUIRKS). SCL is 20 m with clouds (8/9),
their shadows (3), cirrus (10), a lake (6), a few saturated pixels (1) and swath-edge nodata (0).
A field's pixels (centre inside the polygon) carry its true NDVI curve plus pixel noise; everything
else is meadow and forest.

Variant "insurer": the same scene, the field file as a Norwegian insurer exports it (insurer_rows:
SKIFTE_ID "3401-07/2", VEKST BYGG/HVETE/HAVRE/POTET/HØSTHVETE, DD.MM.YYYY text dates, AREAL_DAA,
FORS_SUM, KOMMUNENR, percentile terms on every 4th row), slivers 3–8 m wide, and healthy fields sown
SHIFT_DAYS early or late (truth `shift_days`; their true loss is the aligned curve's: none is due).
"""

import csv
import datetime as dt
import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize

from app.season import phenology as ph
from app.season.synth import INSURED_PER_HA, cloud_cover, field_polygon
from app.sure2._kernels import whittaker
from app.sure2.history import yearly_shortfalls
from app.sure2.payout import loss_index, shortfall
from app.sure2.terms import percentile_terms

YEAR = 2025
FIELDS_CRS = "EPSG:25833"  # ETRS89 / UTM 33N: what Norwegian registers use
PIXEL = 10.0
MERIDIAN = 12.0  # the boundary between UTM zones 32 and 33
CENTRE_LAT = 60.2  # Kongsvinger
CLOUD_CELL_M = 480.0  # lattice spacing of the cloud noise
OFFSET_DN = 1000  # BOA_ADD_OFFSET since processing baseline 04.00, in DN
# Pixel reflectance model: NDVI n from a soil/canopy mixture, NIR from the canopy share, red from n.
NIR_SOIL, NIR_CANOPY = 0.20, 0.45
PIXEL_NOISE, PIXEL_HETEROGENEITY = 0.015, 0.02
CROP_CODES = {"BYG": "barley", "HVE": "spring_wheat", "HAV": "oats", "POT": "potato", "HVH": "winter_wheat"}
LAND_USE_CODE = "GRA"  # grassland: a land-use code among the crop codes, not insurable here
KOMMUNER = {"3401": "NO-Hedmarken", "3416": "NO-Romerike"}  # Kongsvinger (north), Eidskog (south)
DAMAGE_SHARE = {"healthy": 0.6, "hail": 0.2, "drought": 0.2}
TRIGGER, EXIT = 0.12, 0.5
# Per-item quirks by (granule, dates after the first baseline-05.11 date): what the catalogue says vs
# what the DN really are.
#   flag_lies_applied: earthsearch says the offset was removed, the DN still carry it
#   flag_lies_not_applied: earthsearch says it was not removed (and raster:bands offset -0.1), it was
#   no_baseline: a Planetary-Computer item without s2:processing_baseline
#   ndvi_asset: the item serves a ready NDVI (int16 x 10000) instead of red/nir
SCENE_QUIRKS = {("A", 1): "flag_lies_applied", ("A", 3): "flag_lies_not_applied", ("B1", 2): "no_baseline",
                ("B2", 2): "no_baseline", ("A", 5): "ndvi_asset"}
OLD_BASELINE_SHARE = 0.25  # the first quarter of the dates: products of baseline 03.01 (no offset)
TRUTH_LAMBDA = 10.0  # Whittaker λ of the truth's noise-free curves and of the baseline table's history
# The insurer-file variant (`raw --variant insurer`): a register as a Norwegian insurer exports it.
VARIANTS = ("register", "insurer")
INSURER_CROP_CODES = {"BYGG": "barley", "HVETE": "spring_wheat", "HAVRE": "oats", "POTET": "potato",
                      "HØSTHVETE": "winter_wheat"}
INSURER_LAND_USE = "GRAS"
SHIFTED_SHARE, SHIFT_DAYS = 0.4, (-14, 21)  # healthy fields sown that many days early/late (insurer variant)
PERCENTILE_EVERY = 4  # every 4th row of the insurer variant has percentile terms (20th / 1st)
PERCENTILE_TERMS = (20.0, 1.0)
HISTORY_YEARS = range(2015, 2025)
# thin fields (width, length in m): slivers no pixel of which is pure, next to a contrasting neighbour
SLIVERS = ((3.0, 200.0), (6.0, 150.0), (8.0, 120.0))


def smooth_rows(curves, lam=TRUTH_LAMBDA):
    """Each row smoothed with the assessment's Whittaker kernel, all dates weighted 1."""
    ones = np.ones(curves.shape[1])
    return np.array([whittaker(np.ascontiguousarray(c, dtype=np.float64), ones, lam) for c in curves])


@dataclass(frozen=True)
class Granule:
    name: str  # A, B1, B2
    tile: str  # MGRS-like tile id
    crs: str
    transform: Affine
    size: int
    style: str  # earthsearch | planetary
    orbit: int

    @property
    def box(self):
        x0, y1 = self.transform.c, self.transform.f
        return shapely.box(x0, y1 - self.size * PIXEL, x0 + self.size * PIXEL, y1)


def granules(tile_px: int, second_b: bool = True) -> list:
    """Granule A in zone 32 reaching 35 % of its width east of 12°E; B1 (and B2, 70 % further north)
    in zone 33 reaching 35 % west of it, all snapped to 60 m like real MGRS tile origins."""
    size_m = tile_px * PIXEL
    snap = lambda v: round(v / 60.0) * 60.0
    out = []
    for zone, share_east, names in ((32, 0.35, [("A", "32VPM")]), (33, 0.65, [("B1", "33VUG"), ("B2", "33VUH")])):
        crs = f"EPSG:326{zone}"
        x12, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(MERIDIAN, CENTRE_LAT)
        west = snap(x12 - (1 - share_east) * size_m)
        north = snap(y + size_m / 2)
        for k, (name, tile) in enumerate(names if second_b else names[:1]):
            top = north + k * snap(0.7 * size_m)
            out.append(Granule(name, tile, crs, Affine(PIXEL, 0, west, 0, -PIXEL, top), tile_px,
                               "earthsearch" if zone == 32 else "planetary", 65 if zone == 32 else 108))
    return out


def orbit_dates(orbit: int, n_dates: int, year: int = YEAR) -> list:
    """Acquisitions every 5 days from April; the two orbits are two days apart."""
    first = dt.date(year, 4, 1) + dt.timedelta(days=0 if orbit == 65 else 2)
    return [first + dt.timedelta(days=5 * k) for k in range(n_dates)]


def _to(crs_from, crs_to):
    t = Transformer.from_crs(crs_from, crs_to, always_xy=True)
    return lambda g: shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


# --- fields ----------------------------------------------------------------------------------------------

def _meridian_x(crs: str) -> float:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(MERIDIAN, CENTRE_LAT)[0]


def place_fields(rng, n: int, grans: list, avoid=()) -> list:
    """n regular fields (EPSG:25833 polygons): each wholly inside some granule (60 m margin), none
    crossing 12°E, 30 m apart from each other and from the `avoid` geometries."""
    to_fields = {g.name: _to(g.crs, FIELDS_CRS) for g in grans}
    inside = [to_fields[g.name](g.box.buffer(-60.0)) for g in grans]
    union = shapely.union_all(inside)
    x12 = _meridian_x(FIELDS_CRS)
    minx, miny, maxx, maxy = union.bounds
    placed = []
    tries = 0
    while len(placed) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(f"cannot place {n} fields on these granules: use fewer fields or larger tiles")
        area = float(np.clip(rng.lognormal(np.log(2.5), 0.5), 0.8, 8.0)) * 1e4
        poly = shapely.affinity.translate(field_polygon(rng, area), rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        b = poly.bounds
        if b[0] < x12 + 15 < b[2] or b[0] < x12 - 15 < b[2]:
            continue  # crosses the zone boundary: only the designated straddler does
        if not any(shapely.contains(box, poly) for box in inside):
            continue
        if any(shapely.dwithin(poly, other, 30.0) for other in [*avoid, *placed]):
            continue
        placed.append(poly)
    return placed


def awkward_rows(grans: list, variant: str = "register") -> list:
    """The dirty rows of a real register: (source id, geometry in EPSG:25833, what the import must do);
    the insurer variant adds SLIVERS (thin strips: no pure pixel, never to be paid)."""
    b1 = _to(grans[1].crs if len(grans) > 1 else grans[0].crs, FIELDS_CRS)(grans[1].box if len(grans) > 1 else grans[0].box)
    x12 = _meridian_x(FIELDS_CRS)
    _, miny, maxx, maxy = b1.bounds
    cy = (miny + maxy) / 2
    free = _free_spot_finder()
    straddler = free(shapely.box(x12 - 90, cy - 60, x12 + 110, cy + 60))
    east = x12 + 0.2 * (maxx - x12)  # zone 33 only, inside B1
    bowtie = free(shapely.Polygon([(east, cy + 300), (east + 150, cy + 420), (east + 150, cy + 300), (east, cy + 420)]))
    multi = free(shapely.MultiPolygon([shapely.box(east, cy - 400, east + 100, cy - 300),
                                       shapely.box(east + 150, cy - 400, east + 260, cy - 320)]))
    holed = free(shapely.Polygon(shapely.box(east + 350, cy - 100, east + 550, cy + 100).exterior.coords,
                                 [shapely.box(east + 420, cy - 30, east + 480, cy + 30).exterior.coords]))
    sliver = free(shapely.box(east + 350, cy + 250, east + 353, cy + 310))
    outside = shapely.box(maxx + 20_000, cy, maxx + 20_200, cy + 150)
    dup = [free(shapely.box(east + 600, cy + 300, east + 700, cy + 400)),
           free(shapely.box(east + 600, cy - 400, east + 700, cy - 300))]
    collide = [free(shapely.box(east - 300, cy + 500, east - 200, cy + 600)),
               free(shapely.box(east - 300, cy - 600, east - 200, cy - 500))]
    landuse = free(shapely.box(east + 800, cy - 50, east + 950, cy + 50))
    slivers = [(f"KV-SLIVER-{int(w)}M", free(shapely.box(east + 1250 + 40 * k, cy - 350, east + 1250 + 40 * k + w,
                                                          cy - 350 + length)),
                f"sliver {w:g} m x {length:g} m: not paid")
               for k, (w, length) in enumerate(SLIVERS)] if variant == "insurer" else []
    return slivers + [
        ("KV-STRADDLE", straddler, "straddles 12°E: assessed once, in its centroid's zone"),
        ("KV-BOWTIE", bowtie, "self-intersecting: repaired"),
        ("KV-MULTI", multi, "MultiPolygon: kept"),
        ("KV-HOLE", holed, "hole: kept"),
        ("KV-SLIVER", sliver, "sub-pixel sliver: flagged"),
        ("KV-OUTSIDE", outside, "outside every scene: stack null"),
        ("KV-DUP1", dup[0], "duplicate id: refused"),
        ("KV-DUP1", dup[1], "duplicate id: refused"),
        ("KV DUP2", collide[0], "collides with KV_DUP2 after id mapping: refused"),
        ("KV_DUP2", collide[1], "collides with 'KV DUP2' after id mapping: refused"),
        ("NO/2025/0042", free(shapely.box(east + 1000, cy - 150, east + 1120, cy - 50)), "id with '/': mapped"),
        ("Ås-7", free(shapely.box(east + 1000, cy + 50, east + 1120, cy + 150)), "id with 'Å': mapped"),
        ("KV-GRASS", landuse, "land-use code: crop null"),
    ]


def _free_spot_finder():
    """Checks that a designed row keeps 20 m from the others (truth stays per field)."""
    taken = []

    def check(geom):
        if any(shapely.dwithin(geom, other, 20.0) for other in taken):
            raise ValueError("an awkward row overlaps another: use a larger tile")
        taken.append(geom)
        return geom
    return check


# --- per-field truth -------------------------------------------------------------------------------------

def field_truth(rng, n: int, region_of: list, shift_rng=None):
    """Crop, timing, damage and contract of n fields; returns a dict of arrays and a curve function.
    `shift_rng`: SHIFTED_SHARE of the healthy spring-sown fields are sown SHIFT_DAYS early or late
    (drawn from it, so the other draws stay as they are); truth["shift"] says by how much."""
    crops = rng.choice(list(ph.CROP_SHARE), size=n, p=list(ph.CROP_SHARE.values()))
    sow, harvest, peak = np.zeros(n), np.zeros(n), np.zeros(n)
    for crop in ph.CROPS:
        for region in ph.REGIONS:
            sel = np.flatnonzero((crops == crop) & (np.array(region_of) == region))
            if len(sel):
                sow[sel], harvest[sel], peak[sel] = ph.draw_field_params(rng, crop, region, len(sel))
    damage = rng.choice(list(DAMAGE_SHARE), size=n, p=list(DAMAGE_SHARE.values()))
    t_damage = np.where(damage == "hail", rng.uniform(170, 200, n),
                        np.where(sow > 0, sow, 95) + rng.uniform(20, 30, n))
    severity = np.where(damage == "hail", rng.uniform(0.4, 0.65, n), 0.0)
    level = np.where(damage == "drought", rng.integers(1, 4, n), 0)
    shift = np.zeros(n)
    if shift_rng is not None:
        shifted = (damage == "healthy") & (sow > 0) & (shift_rng.random(n) < SHIFTED_SHARE)
        shift = np.where(shifted, np.round(shift_rng.uniform(*SHIFT_DAYS, n)), 0.0)
        sow = sow + shift

    def curves(doy, aligned=False):
        """Each field's NDVI at `doy`; aligned: as if sown without its shift (the truth's loss)."""
        doy = np.asarray(doy, dtype=np.float64)
        out = np.zeros((n, len(doy)))
        sown = sow - shift if aligned else sow
        for i in range(n):
            c = crops[i]
            healthy = ph.healthy_curve(c, doy, sown[i:i + 1], harvest[i:i + 1], peak[i:i + 1], region_of[i])[0]
            if damage[i] == "hail":
                factor = ph.hail_factor(doy, t_damage[i], severity[i])
            elif damage[i] == "drought":
                factor = ph.drought_factor(doy, t_damage[i], int(level[i]))
            else:
                out[i] = healthy
                continue
            out[i] = ph.damaged_curve(healthy, ph.CROPS[c]["soil"], factor, doy, harvest[i])
        return out

    return {"crop": crops, "sow": sow, "harvest": harvest, "damage": damage, "severity": severity,
            "drought_level": level, "shift": shift}, curves


def assessed_zone(geom, grans: list) -> str | None:
    """The zone a field must be assessed in, decided independently of the importer: the only zone
    whose granules hold the whole field; of several, the zone of its centroid's longitude; None if
    no granule touches it."""
    geom = shapely.make_valid(geom)
    share = {}
    for g in grans:
        local = _to(FIELDS_CRS, g.crs)(geom)
        share[g.crs] = max(share.get(g.crs, 0.0), shapely.area(shapely.intersection(local, g.box)) / shapely.area(local))
    full = [crs for crs, s in share.items() if s > 1 - 1e-9]
    if len(full) > 1:
        lon = _to(FIELDS_CRS, "EPSG:4326")(shapely.centroid(geom)).x
        return "EPSG:32632" if lon < MERIDIAN else "EPSG:32633"
    if full:
        return full[0]
    best = max(share, key=share.__getitem__)
    return best if share[best] > 0 else None


def _doy(dates) -> np.ndarray:
    return np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)


def _date_of_doy(doy: float, year: int = YEAR) -> dt.date:
    return dt.date(year, 1, 1) + dt.timedelta(days=int(round(doy)) - 1)


# --- rendering -------------------------------------------------------------------------------------------

def reflectances(ndvi):
    """(red, nir) reflectance with exactly this NDVI: NIR from the canopy share of a soil/canopy mix."""
    n = np.clip(ndvi, -0.5, 0.95)
    canopy = np.clip((0.32 * n - 0.08) / (0.34 - 0.16 * n), -0.3, 1.2)
    nir = np.where(n < 0, 0.03, NIR_SOIL + (NIR_CANOPY - NIR_SOIL) * canopy)  # water is dark in NIR
    red = nir * (1 - n) / (1 + n)
    return red, nir


class ZoneClouds:
    """Cloud noise on a zone's own 20 m grid, so granules of one datatake see the same clouds."""

    def __init__(self, seed, zone_box, n_dates):
        self.x0, self.y1 = zone_box.bounds[0] - CLOUD_CELL_M, zone_box.bounds[3] + CLOUD_CELL_M
        nx = int((zone_box.bounds[2] - self.x0) / CLOUD_CELL_M) + 3
        ny = int((self.y1 - zone_box.bounds[1]) / CLOUD_CELL_M) + 3
        rng = np.random.default_rng([seed, 7, int(self.x0)])
        self.lattice = rng.random((n_dates, ny, nx)).astype(np.float32)
        self.cover = cloud_cover(rng, n_dates)
        self.thresholds = np.array([np.quantile(self.lattice[k], 1 - c) for k, c in enumerate(self.cover)])

    def noise(self, k, xs, ys):
        """Bilinear lattice noise at 20 m pixel centres xs (columns) × ys (rows)."""
        fx, fy = (xs - self.x0) / CLOUD_CELL_M, (self.y1 - ys) / CLOUD_CELL_M
        ix, iy = np.floor(fx).astype(int), np.floor(fy).astype(int)
        wx, wy = (fx - ix).astype(np.float32), (fy - iy).astype(np.float32)
        lat = self.lattice[k]
        top = lat[iy][:, ix] * (1 - wx) + lat[iy][:, ix + 1] * wx
        bottom = lat[iy + 1][:, ix] * (1 - wx) + lat[iy + 1][:, ix + 1] * wx
        return top * (1 - wy)[:, None] + bottom * wy[:, None]


def scl_20m(clouds, k, g: Granule, ndvi10, nodata10, lake20, rng):
    """SCL at 20 m: vegetation/bare from the 10 m NDVI, lake, clouds, their shadows, cirrus, saturated."""
    half = g.size // 2
    xs = g.transform.c + (np.arange(half) + 0.5) * 2 * PIXEL
    ys = g.transform.f - (np.arange(half) + 0.5) * 2 * PIXEL
    noise = clouds.noise(k, xs, ys)
    thr = clouds.thresholds[k]
    cloud = noise > thr
    shadow = np.zeros_like(cloud)
    shadow[8:, :-12] = cloud[:-8, 12:]  # the sun is in the south-east: shadows fall north-west of clouds
    cirrus = (noise > thr - 0.04) & ~cloud
    scl = np.where(ndvi10[::2, ::2] >= 0.4, 4, 5).astype(np.uint8)
    scl[lake20] = 6
    scl[cirrus] = 10
    scl[shadow & ~cloud] = 3
    scl[cloud] = np.where(noise[cloud] > thr + 0.08, 9, 8)
    saturated = rng.random(scl.shape) < 0.0005
    scl[saturated] = 1
    scl[nodata10[::2, ::2]] = 0
    return scl


def render(g: Granule, k: int, ndvi10, nodata10, scl20, carries_offset: bool, rng):
    """uint16 red and NIR DN at 10 m as the product stores them (0 = nodata)."""
    red, nir = reflectances(ndvi10)
    up = lambda a: np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)
    scl10 = up(scl20)
    cloudy = np.isin(scl10, (8, 9))
    red = np.where(cloudy, 0.38 + 0.05 * rng.random(red.shape), red)
    nir = np.where(cloudy, 0.42 + 0.05 * rng.random(nir.shape), nir)
    dark = scl10 == 3
    red, nir = np.where(dark, red * 0.35, red), np.where(dark, nir * 0.35, nir)
    thin = scl10 == 10
    red, nir = np.where(thin, red + 0.06, red), np.where(thin, nir + 0.04, nir)
    offset = OFFSET_DN if carries_offset else 0
    dn = lambda r: np.clip(np.rint(r * 10000) + offset, 1, 65535).astype(np.uint16)
    red_dn, nir_dn = dn(red), dn(nir)
    red_dn[nodata10] = 0
    nir_dn[nodata10] = 0
    red_dn[scl10 == 1] = 65535
    return red_dn, nir_dn


def swath_edge(g: Granule, k: int) -> np.ndarray:
    """Granule B2 lies at the edge of its orbit's swath on every third date: a nodata corner."""
    mask = np.zeros((g.size, g.size), dtype=bool)
    if g.name == "B2" and k % 3 == 1:
        rows, cols = np.indices(mask.shape)
        mask = cols + rows < g.size * 0.6
    if g.name == "A" and k == 3:
        mask[:, g.size // 2: g.size // 2 + 2] = True  # a torn column pair: nodata in an odd place
    return mask


# --- writing ---------------------------------------------------------------------------------------------

def write_cog(path: Path, array, g: Granule, res: float, block: int, nodata) -> None:
    transform = Affine(res, 0, g.transform.c, 0, -res, g.transform.f)
    profile = dict(driver="COG", width=array.shape[1], height=array.shape[0], count=1, dtype=array.dtype.name,
                   crs=g.crs, transform=transform, nodata=nodata, compress="DEFLATE", predictor=2,
                   blocksize=block, overviews="NONE")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def item_json(g: Granule, date: dt.date, k: int, quirk: str | None, baseline: str | None, assets: dict) -> dict:
    """A STAC item as the granule's catalogue serves it (earthsearch or Planetary Computer style)."""
    when = dt.datetime.combine(date, dt.time(10, 31 if g.style == "planetary" else 45, 12 + int(g.name[-1:] == "2")),
                               tzinfo=dt.timezone.utc)
    lonlat = _to(g.crs, "EPSG:4326")(g.box)
    props = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "platform": "sentinel-2b" if k % 2 else "sentinel-2c",
             "constellation": "sentinel-2", "eo:cloud_cover": 0.0, "s2:mgrs_tile": g.tile}
    if baseline is not None:
        props["s2:processing_baseline"] = baseline
    stamp = date.strftime("%Y%m%d")
    if g.style == "earthsearch":
        item_id = f"S2{'B' if k % 2 else 'C'}_{g.tile}_{stamp}_0_L2A"
        props["proj:epsg"] = int(g.crs.split(":")[1])
        carries = baseline is not None and baseline >= "04.00"
        applied = {"flag_lies_applied": True, "flag_lies_not_applied": False}.get(quirk or "", False)
        props["earthsearch:boa_offset_applied"] = applied if carries else False
        keys = {"red": "red", "nir": "nir", "scl": "scl", "ndvi": "ndvi"}
    else:
        item_id = f"S2{'B' if k % 2 else 'C'}_MSIL2A_{stamp}T103{k % 10}29_R{g.orbit:03d}_T{g.tile}_{stamp}T1500{k % 10}0"
        props["proj:code"] = g.crs
        keys = {"red": "B04", "nir": "B08", "scl": "SCL", "ndvi": "ndvi"}
    out_assets = {}
    for band, (href, res, dtype, nodata) in assets.items():
        asset = {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                 "roles": ["data"], "gsd": res}
        bands = {"nodata": nodata, "data_type": dtype, "spatial_resolution": res}
        if g.style == "earthsearch" and band in ("red", "nir"):
            bands.update(scale=0.0001, offset=-0.1 if baseline is not None and baseline >= "04.00" else 0.0)
        if band == "ndvi":
            bands.update(scale=0.0001, offset=0.0)
        asset["raster:bands"] = [bands]
        out_assets[keys[band]] = asset
    return {"type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "id": item_id, "collection": "sentinel-2-l2a", "geometry": shapely.geometry.mapping(lonlat),
            "bbox": list(lonlat.bounds), "properties": props, "assets": out_assets, "links": []}


REGISTER_TYPES = {"saadato": pa.date32(), "hostedato": pa.date32(), "forsikring": pa.float64(),
                  "terskel": pa.float64(), "areal_daa": pa.float64()}
INSURER_TYPES = {"AREAL_DAA": pa.float64(), "FORS_SUM": pa.float64(), "UTL_PST": pa.float64(),
                 "MAKS_PST": pa.float64()}  # dates stay text, as the insurer wrote them


def insurer_rows(rows: list) -> list:
    """The register's rows as a Norwegian insurer exports them: upper-case names (≤ 10 characters, so a
    Shapefile keeps them), text crop codes, dates as DD.MM.YYYY text, percentile terms on every
    PERCENTILE_EVERY-th row."""
    code = {v: k for k, v in INSURER_CROP_CODES.items()}
    text_date = lambda d: d.strftime("%d.%m.%Y") if d is not None else None
    return [{"SKIFTE_ID": r["skifte_id"],
             "VEKST": INSURER_LAND_USE if r["vekstkode"] == LAND_USE_CODE else code[CROP_CODES[r["vekstkode"]]],
             "KOMMUNENR": r["kommune"], "SAADATO": text_date(r["saadato"]), "HOSTEDATO": text_date(r["hostedato"]),
             "AREAL_DAA": r["areal_daa"], "FORS_SUM": r["forsikring"],
             "UTL_PST": PERCENTILE_TERMS[0] if i % PERCENTILE_EVERY == 0 else None,
             "MAKS_PST": PERCENTILE_TERMS[1] if i % PERCENTILE_EVERY == 0 else None,
             "geometry": r["geometry"]} for i, r in enumerate(rows)]


def write_fields_files(out: Path, rows: list, types: dict = REGISTER_TYPES) -> None:
    """The same rows in every format users bring, plus a zipped Shapefile without its .prj."""
    import pyogrio

    names = [k for k in rows[0] if k != "geometry"]
    columns = {k: pa.array([r[k] for r in rows], types.get(k, pa.string())) for k in names}
    wkb = lambda geoms: pa.array([shapely.to_wkb(g) for g in geoms], pa.binary())
    geoms = [r["geometry"] for r in rows]
    table = pa.table({**columns, "geometry": wkb(geoms)})
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"],
                                    "crs": _projjson(FIELDS_CRS)}}}
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), out / "fields.parquet")
    # FlatGeobuf wants one geometry type per layer: every row as a MultiPolygon there
    multi = table.set_column(len(names), "geometry", wkb(
        [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in geoms]))
    write = lambda t, path, driver, kind, **kw: pyogrio.write_arrow(
        t, str(path), driver=driver, geometry_name="geometry", geometry_type=kind, crs=FIELDS_CRS, **kw)
    write(table, out / "fields.gpkg", "GPKG", "Unknown", layer="skifter")
    write(table, out / "fields.geojson", "GeoJSON", "Unknown")
    write(multi, out / "fields.fgb", "FlatGeobuf", "MultiPolygon")
    shp_dir = out / ".shp"
    shp_dir.mkdir(exist_ok=True)
    write(table, shp_dir / "skifter.shp", "ESRI Shapefile", "Polygon", encoding="UTF-8")
    parts = sorted(shp_dir.glob("skifter.*"))
    for zip_name, skip in (("fields.shp.zip", None), ("fields_nocrs.shp.zip", ".prj")):
        with zipfile.ZipFile(out / zip_name, "w", zipfile.ZIP_DEFLATED) as z:
            for p in parts:
                if p.suffix != skip:
                    z.write(p, f"skifter/{p.name}")
    for p in parts:
        p.unlink()
    shp_dir.rmdir()


def _projjson(crs: str) -> dict:
    from pyproj import CRS

    return CRS.from_user_input(crs).to_json_dict()


MAPPING_TOML = """\
# How the insurer's register (EPSG:25833, Norwegian column names) becomes the season contract.
season_year = {year}
id = "skifte_id"
crop = {{ column = "vekstkode", values = {{ {crops} }} }}
region_id = {{ column = "kommune", values = {{ {regions} }} }}
sowing_date = {{ column = "saadato", per_crop = {{ {sowing} }} }}
harvest_date = {{ column = "hostedato" }}
insured_sum = {{ column = "forsikring", per_ha = {{ {per_ha} }} }}
currency = {{ value = "NOK" }}
index = {{ value = "ndvi_integral", per_crop = {{ potato = "ndvi_peak" }} }}
trigger = {{ column = "terskel", value = {trigger} }}
exit = {{ value = {exit} }}
"""


def mapping_text(year: int = YEAR) -> str:
    return MAPPING_TOML.format(year=year, crops=_toml_table(CROP_CODES), regions=_toml_table(KOMMUNER),
                               sowing=_toml_table(_default_sowing(year)), per_ha=_toml_table(INSURED_PER_HA),
                               trigger=TRIGGER, exit=EXIT)


INSURER_MAPPING_TOML = """\
# A Norwegian insurer's export (EPSG:25833): IDs with '/', text crop codes, dates as DD.MM.YYYY text
# (recognised without a date_format), sums in NOK, percentile terms on some rows.
season_year = {year}
id = "SKIFTE_ID"
crop = {{ column = "VEKST", values = {{ {crops} }} }}
region_id = {{ column = "KOMMUNENR", values = {{ {regions} }} }}
sowing_date = {{ column = "SAADATO", per_crop = {{ {sowing} }} }}
harvest_date = {{ column = "HOSTEDATO" }}
insured_sum = {{ column = "FORS_SUM", per_ha = {{ {per_ha} }} }}
currency = "NOK"
index = {{ value = "ndvi_integral", per_crop = {{ potato = "ndvi_peak" }} }}
trigger = {trigger}
exit = {exit}
trigger_percentile = {{ column = "UTL_PST" }}
exit_percentile = {{ column = "MAKS_PST" }}
"""


def _toml_table(d: dict) -> str:
    quote = lambda v: json.dumps(v, ensure_ascii=False)
    return ", ".join(f"{k} = {quote(v)}" if k.isidentifier() and k.isascii() else f"{quote(k)} = {quote(v)}"
                     for k, v in d.items())


def _default_sowing(year: int) -> dict:
    return {c: _date_of_doy(p["sow"], year).strftime("%m-%d") if p["sow"] > 0 else
            (dt.date(year, 1, 1) + dt.timedelta(days=int(p["sow"]) - 1)).strftime("%m-%d")
            for c, p in ph.CROPS.items()}


def insurer_mapping_text(year: int = YEAR) -> str:
    return INSURER_MAPPING_TOML.format(year=year, crops=_toml_table(INSURER_CROP_CODES), regions=_toml_table(KOMMUNER),
                                       sowing=_toml_table(_default_sowing(year)), per_ha=_toml_table(INSURED_PER_HA),
                                       trigger=TRIGGER, exit=EXIT)


def history_rows(rng, year: int = YEAR) -> list:
    """A user history table: each region × crop's mean curve (30 healthy fields) in each HISTORY_YEARS
    year, with that year's timing shift and plateau factor (ph.draw_year_effects), every 5 days."""
    doy = np.arange(60, 306, 5, dtype=np.float64)
    rows = []
    for crop in ph.CROPS:
        for region in sorted(set(KOMMUNER.values())):
            timing, plateau = ph.draw_year_effects(rng, len(HISTORY_YEARS))
            for k, past in enumerate(HISTORY_YEARS):
                s, h, p = ph.draw_field_params(rng, crop, region, 30)
                curve = smooth_rows(ph.healthy_curve(crop, doy, s + timing[k], h + timing[k], p * plateau[k],
                                                     region)).mean(axis=0)
                rows += [{"region_id": region, "crop": crop, "year": past, "doy": int(d),
                          "ndvi_mean": round(float(min(v, 0.95)), 5)} for d, v in zip(doy, curve)]
    return rows


def _history_entry(rows: list, region: str, crop: str):
    """The (years, doy, curves) entry app.sure2.history reads for one unit, from history_rows."""
    mine = [r for r in rows if r["region_id"] == region and r["crop"] == crop]
    years = sorted({r["year"] for r in mine})
    doys = sorted({r["doy"] for r in mine})
    grid = np.full((len(years), len(doys)), np.nan)
    for r in mine:
        grid[years.index(r["year"]), doys.index(r["doy"])] = r["ndvi_mean"]
    return np.array(years), np.array(doys, dtype=np.float64), grid


def _write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def baseline_rows(rng) -> list:
    """A user baseline table from simulated healthy history (10 years x 30 fields), every 5 days."""
    doy = np.arange(60, 306, 5, dtype=np.float64)
    rows = []
    for crop in ph.CROPS:
        for region in set(KOMMUNER.values()):
            s, h, p = ph.draw_field_params(rng, crop, region, 300)
            hist = smooth_rows(ph.healthy_curve(crop, doy, s, h, p, region))
            mean, std = hist.mean(axis=0), hist.std(axis=0, ddof=1)
            rows += [{"region_id": region, "crop": crop, "doy": int(d), "ndvi_mean": round(float(m), 5),
                      "ndvi_std": round(float(sd), 5), "n_samples": 300} for d, m, sd in zip(doy, mean, std)]
    return rows


# --- the whole set ---------------------------------------------------------------------------------------

def generate(out_dir, n_fields: int = 30, tile_px: int = 384, n_dates: int = 37, seed: int = 0,
             block: int = 256, second_b: bool = True, awkward: bool = True, year: int = YEAR,
             variant: str = "register") -> dict:
    """Write the raw inputs and their truth to out_dir; returns a summary. variant "insurer": the field
    file as a Norwegian insurer exports it (insurer_rows), with its mapping, a history table for its
    percentile terms, slivers and healthy fields sown early or late."""
    if block % 32 or tile_px % 2:
        raise ValueError("the COG block must be a multiple of 32 (SCL's, half of it, of 16) and the tile even")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}")
    insurer = variant == "insurer"
    out = Path(out_dir)
    scenes_dir = out / "scenes"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grans = granules(tile_px, second_b)
    special = awkward_rows(grans, variant) if awkward else []  # first: the regular fields keep clear of them
    regular = place_fields(rng, n_fields, grans, [s[1] for s in special])
    source_ids = [f"KV-{k:04d}" for k in range(n_fields)] + [s[0] for s in special]
    geoms = regular + [s[1] for s in special]
    expect = ["regular"] * n_fields + [s[2] for s in special]
    n = len(geoms)
    to_lonlat = _to(FIELDS_CRS, "EPSG:4326")
    lat = np.array([to_lonlat(shapely.centroid(g)).y for g in geoms])
    mid = np.median(lat)
    kommune = ["3401" if la >= mid else "3416" for la in lat]
    region_of = [KOMMUNER[k] for k in kommune]
    truth, curves = field_truth(rng, n, region_of, np.random.default_rng([seed, 17]) if insurer else None)
    if insurer:  # gårds-/bruksnummer style: "3401-07/2" (the season knows it as "3401-07_2")
        source_ids = [f"{kommune[k]}-{k // 5 + 1:02d}/{k % 5 + 1}" for k in range(n_fields)] + source_ids[n_fields:]

    # Scenes.
    by_zone = {}
    for g in grans:
        by_zone.setdefault(g.crs, []).append(g)
    pixel_rows, scene_rows, items = [], [], []
    for zone_grans in by_zone.values():
        dates = orbit_dates(zone_grans[0].orbit, n_dates, year)
        doy = _doy(dates)
        field_curves = curves(doy)
        zone_box = shapely.union_all([g.box for g in zone_grans])
        clouds = ZoneClouds(seed, zone_box, n_dates)
        for g in zone_grans:
            local = _to(FIELDS_CRS, g.crs)
            polys = [local(p) for p in geoms]
            labels = rasterize([(p, i + 1) for i, p in enumerate(polys)], out_shape=(g.size, g.size),
                               transform=g.transform, dtype="int32")  # pixel centres inside
            grng = np.random.default_rng([seed, int(g.transform.c), int(g.transform.f)])
            static = grng.normal(0, PIXEL_HETEROGENEITY, labels.shape)
            coarse = (grng.random((g.size // 32 + 2, g.size // 32 + 2)) - 0.5) * 0.3
            meadow = np.kron(coarse, np.ones((32, 32)))[:g.size, :g.size]
            lake = shapely.Point(g.transform.c + 0.8 * g.size * PIXEL, g.transform.f - 0.15 * g.size * PIXEL).buffer(
                0.06 * g.size * PIXEL)
            lake20 = rasterize([(lake, 1)], out_shape=(g.size // 2, g.size // 2),
                               transform=g.transform * Affine.scale(2), dtype="uint8").astype(bool)
            lake10 = np.repeat(np.repeat(lake20, 2, 0), 2, 1) & (labels == 0)
            present = np.unique(labels[labels > 0]) - 1
            for k, date in enumerate(dates):
                first_new = math.ceil(OLD_BASELINE_SHARE * n_dates)
                quirk = SCENE_QUIRKS.get((g.name, k - first_new))
                baseline = "03.01" if k < first_new else "05.11"
                carries = baseline >= "04.00"
                if quirk == "flag_lies_not_applied":
                    carries = False  # the catalogue removed it and says it did not
                background = 0.45 + 0.3 * math.exp(-((doy[k] - 190) / 45) ** 2)
                ndvi = np.where(labels > 0, np.r_[0.0, field_curves[:, k]][labels] + static, background + meadow)
                ndvi = ndvi + grng.normal(0, PIXEL_NOISE, labels.shape) * (labels > 0)
                ndvi[lake10] = -0.3
                nodata = swath_edge(g, k)
                scl = scl_20m(clouds, k, g, ndvi, nodata, lake20, grng)
                item_id = item_json(g, date, k, quirk, baseline, {})["id"]
                item_dir = scenes_dir / item_id
                item_dir.mkdir(exist_ok=True)
                assets = {}
                if quirk == "ndvi_asset":
                    scl10 = np.repeat(np.repeat(scl, 2, 0), 2, 1)
                    stored = np.where(nodata | np.isin(scl10, (0, 1, 3, 8, 9, 10)), -32768,
                                      np.rint(np.clip(ndvi, -1, 1) * 10000)).astype(np.int16)
                    write_cog(item_dir / "NDVI.tif", stored, g, PIXEL, block, -32768)
                    assets["ndvi"] = (f"./{item_id}/NDVI.tif", 10, "int16", -32768)
                    carries = False
                else:
                    red, nir = render(g, k, ndvi, nodata, scl, carries, grng)
                    write_cog(item_dir / "B04.tif", red, g, PIXEL, block, 0)
                    write_cog(item_dir / "B08.tif", nir, g, PIXEL, block, 0)
                    assets["red"] = (f"./{item_id}/B04.tif", 10, "uint16", 0)
                    assets["nir"] = (f"./{item_id}/B08.tif", 10, "uint16", 0)
                write_cog(item_dir / "SCL.tif", scl, g, 2 * PIXEL, block // 2, 0)
                assets["scl"] = (f"./{item_id}/SCL.tif", 20, "uint8", 0)
                item = item_json(g, date, k, quirk, None if quirk == "no_baseline" else baseline, assets)
                (scenes_dir / f"{item_id}.json").write_text(json.dumps(item, indent=1))
                items.append(item)
                scene_rows.append({"item_id": item_id, "granule": g.name, "crs": g.crs, "date": date,
                                   "processing_baseline": baseline, "quirk": quirk or "",
                                   "dn_carry_offset": bool(carries)})
                clear10 = ~np.repeat(np.repeat(np.isin(scl, (0, 1, 3, 8, 9, 10)), 2, 0), 2, 1) & ~nodata
                counts = np.bincount(labels.ravel(), minlength=n + 1)
                clear = np.bincount(labels[clear10], minlength=n + 1)
                for i in present:
                    pixel_rows.append({"source_id": source_ids[i], "granule": g.name, "crs": g.crs, "date": date,
                                       "ndvi_true": float(field_curves[i, k]), "n_pixels": int(counts[i + 1]),
                                       "n_clear": int(clear[i + 1])})
    # Each item's href is relative to its own JSON; in the ItemCollection the hrefs stay item-relative
    # to the scenes directory, which holds the collection too.
    (scenes_dir / "collection.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))

    # Fields file and its mapping.
    area_m2 = [shapely.area(shapely.make_valid(g)) for g in geoms]  # a register knows a bowtie's true area
    insured_col = [None if i % 5 == 0 else round(area_m2[i] / 1e4 * INSURED_PER_HA[truth["crop"][i]], -2)
                   for i in range(n)]
    crop_code = {v: k for k, v in CROP_CODES.items()}
    rows = []
    for i in range(n):
        sow_col = _date_of_doy(truth["sow"][i], year) if (i % 3 or truth["shift"][i]) and truth["sow"][i] > 0 else None
        rows.append({"skifte_id": source_ids[i], "vekstkode": LAND_USE_CODE if source_ids[i] == "KV-GRASS"
                     else crop_code[truth["crop"][i]], "kommune": kommune[i], "saadato": sow_col,
                     "hostedato": _date_of_doy(truth["harvest"][i], year), "forsikring": insured_col[i],
                     "terskel": 0.1 if i % 4 == 1 and not insurer else None, "areal_daa": round(area_m2[i] / 1e3, 1),
                     "geometry": geoms[i]})
    if insurer:
        write_fields_files(out, insurer_rows(rows), INSURER_TYPES)
        (out / "mapping.toml").write_text(insurer_mapping_text(year))
    else:
        write_fields_files(out, rows)
        (out / "mapping.toml").write_text(mapping_text(year))
    base = baseline_rows(rng)
    _write_csv(out / "baseline_table.csv", base)
    history = history_rows(np.random.default_rng([seed, 23]), year) if insurer else []
    if insurer:
        _write_csv(out / "history_table.csv", history)

    # Truth per field: the contract the mapping yields and the payout its noise-free curve implies,
    # on the dates of the zone whose stack the field is assessed in (the zone of its centroid).
    base_by_unit = {}
    for r in base:
        base_by_unit.setdefault((r["region_id"], r["crop"]), []).append((r["doy"], r["ndvi_mean"]))
    truth_rows = []
    sowing_default = {c: p["sow"] for c, p in ph.CROPS.items()}
    for i in range(n):
        crop = truth["crop"][i]
        zone_crs = assessed_zone(geoms[i], grans)
        dates = orbit_dates(by_zone[zone_crs or "EPSG:32633"][0].orbit, n_dates, year)
        doy = _doy(dates)
        days = np.array([d.toordinal() for d in dates], dtype=np.float64)
        to_day = days[0] - doy[0]
        sow_doy = truth["sow"][i] if rows[i]["saadato"] is not None else sowing_default[crop]
        sow_doy = round(sow_doy) if sow_doy > 0 else sow_doy  # column dates are whole days
        harvest_doy = round(truth["harvest"][i])
        kind = "ndvi_peak" if crop == "potato" else "ndvi_integral"
        trigger, exit_ = (rows[i]["terskel"] if rows[i]["terskel"] is not None else TRIGGER), EXIT
        insured = insured_col[i] if insured_col[i] is not None else None
        unit = sorted(base_by_unit[(region_of[i], crop)])
        base_mean = np.interp(doy, [u[0] for u in unit], [u[1] for u in unit])
        # the loss is the aligned curve's: a field sown late is not damaged by being late
        smooth = smooth_rows(curves(doy, aligned=True)[i:i + 1])[0]
        window = (sow_doy - truth["shift"][i] + to_day, harvest_doy + to_day)
        index = loss_index(kind, days, smooth, base_mean, *window)
        terms = "fixed"
        if insurer and i % PERCENTILE_EVERY == 0:
            terms, history_years = "percentile", _history_entry(history, region_of[i], crop)
            past = yearly_shortfalls(history_years, kind, doy, days, base_mean, *window)
            trigger, exit_ = percentile_terms(past, *PERCENTILE_TERMS)
            index = float(shortfall(kind, days, smooth, base_mean, *window))
        truth_rows.append({"source_id": source_ids[i], "expect": expect[i], "crop": crop, "region_id": region_of[i],
                           "zone": zone_crs, "true_sowing_doy": float(truth["sow"][i]),
                           "shift_days": float(truth["shift"][i]), "damage": str(truth["damage"][i]),
                           "true_index": float(index), "terms": terms, "trigger": trigger, "exit": exit_,
                           "insured_sum_column": insured,
                           "true_payout_fraction": float(np.clip((index - trigger) / (exit_ - trigger), 0, 1))})
    pq.write_table(pa.Table.from_pylist(truth_rows), out / "truth.parquet")
    pq.write_table(pa.Table.from_pylist(pixel_rows), out / "truth_pixels.parquet")
    pq.write_table(pa.Table.from_pylist(scene_rows), out / "truth_scenes.parquet")
    return {"out": str(out), "variant": variant, "n_rows": n, "n_items": len(items), "granules": [g.name for g in grans],
            "dates_per_zone": n_dates, "tile_px": tile_px,
            "fingerprint": hashlib.sha256(json.dumps(truth_rows, default=str).encode()).hexdigest()[:16]}


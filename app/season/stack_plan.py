"""Which NDVI stacks a season gets, which field goes to which, each stack's grid, dates and blocks.

One stack per UTM zone (per CRS of the scenes): stacks are named after it ("utm32", "utm33s" for the
south, else "epsg<code>") and each lies on its scenes' own 10 m grid, so no band is ever resampled.

Assignment rule (every field with a geometry goes to at most one stack):
  - a stack covers a field by the share of the field's area inside the union of its scenes' footprints
    (item geometry ∩ raster bounds, over all dates);
  - the field goes to the stack covering the largest share; where several cover all of it (MGRS tiles
    of neighbouring zones overlap, and a field may straddle the zone boundary), to the zone of its
    centroid's longitude (least distortion), then to the first name;
  - a field no stack covers keeps stack null with the note "outside every scene"; one covered only in
    part is assigned with a note ("partly outside the scenes: 63 % covered").
A stack's grid spans the bounding box of its fields (+1 pixel), snapped to the scenes' grid; only its
128 × 128 blocks that a field's bounding box touches are computed and written (the rest of the GeoTIFF
stays sparse: nodata). Its dates are the solar days of the zone's scenes that touch those blocks.
"""

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

from app.season.fields_import import utm_crs
from app.vector import reproject

BLOCK = 128
PIXEL = 10.0
NODATA = -32768
FULL = 1 - 1e-6


@dataclass
class StackPlan:
    name: str
    crs: str
    transform: Affine
    width: int
    height: int
    dates: list  # solar days, sorted
    blocks: list  # [(block_row, block_col)] to compute, sorted
    scenes: list  # Scene objects used, sorted by (solar_day, id)
    n_fields: int = 0
    skipped_scenes: list = field(default_factory=list)  # scenes of this CRS not usable on the grid

    def __post_init__(self):
        self.block_index = {rc: b for b, rc in enumerate(self.blocks)}

    @property
    def file(self) -> str:
        return f"ndvi_{self.name}.tif"

    def block_window(self, b: int):
        """(row0, row1, col0, col1) of block index b in stack pixels, clipped to the stack."""
        br, bc = self.blocks[b]
        return (br * BLOCK, min(self.height, (br + 1) * BLOCK), bc * BLOCK, min(self.width, (bc + 1) * BLOCK))

    def inputs_sha256(self, masked_classes, code: str) -> str:
        """What the stack's content depends on: grid, blocks, dates, scene files, masking, code (its digest)."""
        scenes = [[s.id, s.solar_day.isoformat(), {b: [a.path.name, a.path.stat().st_size] for b, a in sorted(s.assets.items())}]
                  for s in self.scenes]
        doc = [self.crs, list(self.transform)[:6], self.width, self.height, [d.isoformat() for d in self.dates],
               self.blocks, scenes, sorted(masked_classes), code]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def stack_name(crs: str) -> str:
    epsg = CRS.from_user_input(crs).to_epsg()
    if epsg and 32601 <= epsg <= 32660:
        return f"utm{epsg - 32600}"
    if epsg and 32701 <= epsg <= 32760:
        return f"utm{epsg - 32700}s"
    return f"epsg{epsg}" if epsg else "crs" + hashlib.sha256(crs.encode()).hexdigest()[:8]


def scene_box(scene):
    """The scene's footprint in its own CRS: raster bounds ∩ the item geometry."""
    t = Affine(*scene.transform)
    x0, y0 = t * (0, 0)
    x1, y1 = t * (scene.width, scene.height)
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    item = reproject(np.array([scene.footprint.segmentize(0.01)], dtype=object), "EPSG:4326", scene.crs)[0]
    inter = shapely.intersection(box, shapely.make_valid(item))
    return inter if not inter.is_empty else box


def plan_stacks(fields, scenes) -> tuple[list, list, list]:
    """(stack plans, stack name or None per field, assignment note or None per field)."""
    by_crs = {}
    for s in scenes:
        by_crs.setdefault(s.crs, []).append(s)
    names = {crs: stack_name(crs) for crs in by_crs}
    n = len(fields.geometry)
    present = np.array([g is not None for g in fields.geometry])
    lonlat = np.array(fields.geometry, dtype=object)
    local, share = {}, {}
    footprints = {}
    for crs, group in by_crs.items():
        boxes = [scene_box(s) for s in group]
        footprints[crs] = (group, boxes)
        cover = shapely.union_all(boxes)
        geoms = np.empty(n, dtype=object)
        geoms[present] = reproject(lonlat[present], "EPSG:4326", crs)
        local[crs] = geoms
        shares = np.zeros(n)
        if present.any():
            g = geoms[present]
            shares[present] = shapely.area(shapely.intersection(g, cover)) / np.maximum(shapely.area(g), 1e-12)
        share[crs] = shares
    assigned: list[str | None] = [None] * n
    notes: list[str | None] = [None] * n
    for i in range(n):
        if not present[i]:
            continue
        cands = {crs: share[crs][i] for crs in by_crs if share[crs][i] > 0}
        if not cands:
            notes[i] = "outside every scene"
            continue
        best = max(cands.values())
        top = sorted(crs for crs, v in cands.items() if v >= best - 1e-9 or (v >= FULL and best >= FULL))
        if len(top) > 1:
            c = shapely.centroid(lonlat[i])
            home = CRS.from_user_input(utm_crs(c.x, c.y)).to_string()
            chosen = home if home in top else min(top, key=lambda crs: names[crs])
            if _crosses_zones(lonlat[i]):
                notes[i] = (f"straddles UTM zones (covered by {', '.join(sorted(names[c] for c in top))}): "
                            f"assessed in {names[chosen]} ({'its centroid' if chosen == home else 'the first'}'s zone)")
        else:
            chosen = top[0]
        if best < FULL:
            notes[i] = f"partly outside the scenes: {best:.0%} covered"
        assigned[i] = chosen
    plans = []
    for crs, (group, boxes) in sorted(footprints.items(), key=lambda kv: names[kv[0]]):
        mine = [i for i in range(n) if assigned[i] == crs]
        if not mine:
            continue
        plans.append(_grid(names[crs], crs, group, boxes, [local[crs][i] for i in mine]))
    assigned_names = [names[crs] if crs else None for crs in assigned]
    return plans, assigned_names, notes


def _crosses_zones(geom) -> bool:
    lon = shapely.get_coordinates(geom)[:, 0]
    zone = np.floor((lon + 180) / 6)
    return zone.min() != zone.max()


def _grid(name, crs, group, boxes, geoms) -> StackPlan:
    """The stack's grid on its scenes' 10 m grid, its blocks and dates."""
    ref = Affine(*group[0].transform)
    usable, skipped = [], []
    for s, box in zip(group, boxes):
        t = Affine(*s.transform)
        aligned = (t.a == ref.a and t.e == ref.e and t.b == 0 and t.d == 0
                   and _on_grid(t.c - ref.c, ref.a) and _on_grid(t.f - ref.f, ref.a))
        if aligned:
            usable.append((s, box))
        else:
            skipped.append({"id": s.id, "source": s.source, "reason": f"not on the {crs} grid of {group[0].id} "
                            f"(pixel {t.a:g} m, origin {t.c:g},{t.f:g})"})
    res = ref.a
    bounds = shapely.bounds(np.array(geoms, dtype=object))
    minx, miny = bounds[:, 0].min() - res, bounds[:, 1].min() - res
    maxx, maxy = bounds[:, 2].max() + res, bounds[:, 3].max() + res
    x0 = ref.c + math.floor((minx - ref.c) / res) * res
    y1 = ref.f - math.floor((ref.f - maxy) / res) * res
    width, height = math.ceil((maxx - x0) / res), math.ceil((y1 - miny) / res)
    transform = Affine(res, 0, x0, 0, -res, y1)
    blocks = set()
    inv = ~transform
    for b in bounds:
        c0, r0 = inv * (b[0] - res, b[3] + res)
        c1, r1 = inv * (b[2] + res, b[1] - res)
        for br in range(max(0, int(r0 // BLOCK)), min((height - 1) // BLOCK, int(r1 // BLOCK)) + 1):
            for bc in range(max(0, int(c0 // BLOCK)), min((width - 1) // BLOCK, int(c1 // BLOCK)) + 1):
                blocks.add((br, bc))
    needed = shapely.union_all([shapely.box(transform.c + bc * BLOCK * res, transform.f - (br + 1) * BLOCK * res,
                                            transform.c + (bc + 1) * BLOCK * res, transform.f - br * BLOCK * res)
                                for br, bc in blocks])
    used = [s for s, box in usable if shapely.intersects(box, needed)]
    used.sort(key=lambda s: (s.solar_day, s.id))
    dates = sorted({s.solar_day for s in used})
    return StackPlan(name, crs, transform, width, height, dates, sorted(blocks), used, len(geoms), skipped)


def _on_grid(delta: float, res: float) -> bool:
    return abs(delta / res - round(delta / res)) < 1e-6

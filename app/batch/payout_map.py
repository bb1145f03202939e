"""PNG map of the season: each field coloured by its payout, or by why it has none.

Drawn with Pillow (in every image, the sealed sure2.sif included, so the map is made where the batch
runs). Coordinates are lon/lat scaled by cos(latitude), so metres look square. The view is the extent
of the bulk of the fields (centroids within OUTLIER_FACTOR times the 90th-percentile distance from the
median centroid, padded): one field far from the others does not shrink the season to a dot; fields
outside the view are drawn as markers on the frame's edge and counted in the legend. A field smaller
than a pixel is drawn as a 3-pixel dot.
"""

import math

import numpy as np
import shapely

WIDTH = 1000  # map panel, pixels (the height follows the view's aspect, capped)
MAX_HEIGHT = 1200
LEGEND_W = 300
MARGIN = 12
OUTLIER_FACTOR = 4.0
BACKGROUND, FRAME, TEXT = (255, 255, 255), (90, 90, 90), (20, 20, 20)
STATE_COLOURS = {
    "unpaid": (205, 222, 198),  # assessed, no payout
    "not_assessable": (224, 123, 57),
    "insufficient_data": (240, 194, 75),
    "failed": (192, 57, 43),
    "given_up": (120, 30, 20),
    "remaining": (190, 190, 190),
}
RAMP = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]  # viridis stops


def ramp_colour(t: float) -> tuple:
    """Colour of a payout at position t in [0, 1] of the paid range."""
    t = min(1.0, max(0.0, t)) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    f = t - i
    return tuple(round(a + (b - a) * f) for a, b in zip(RAMP[i], RAMP[i + 1]))


def field_colour(row: dict, top: float) -> tuple:
    if row["state"] == "assessed":
        cents = row.get("amount_cents") or 0
        return ramp_colour(cents / top) if cents > 0 else STATE_COLOURS["unpaid"]
    return STATE_COLOURS[row["state"]]


def view_box(centroids: np.ndarray) -> tuple:
    """(x0, y0, x1, y1) holding the bulk of the centroids, padded by 5 % (at least a few hundred metres)."""
    distance = np.hypot(*(centroids - np.median(centroids, axis=0)).T)
    bulk = centroids[distance <= OUTLIER_FACTOR * np.quantile(distance, 0.9)]
    lo, hi = bulk.min(axis=0), bulk.max(axis=0)
    pad = np.maximum((hi - lo) * 0.05, 0.003)
    return (*(lo - pad), *(hi + pad))


def draw_payout_map(season, rows: dict, target) -> str:
    """Draw the map to `target` (atomically); return a one-line note.

    Vectorised where a national season needs it: every ring's pixel extent is computed at once; fields
    smaller than 2 pixels (most of them, seen from a country's extent) are set as 3-pixel dots in one
    array operation, only the larger ones are drawn one by one."""
    from PIL import Image, ImageDraw, ImageFont

    from app.hpc.atomic import atomic_path

    geoms = shapely.from_wkb(season.columns(["geometry"])["geometry"])
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    ids = [fid for fid, k in zip(season.field_ids, keep) if k]
    geoms = geoms[keep]
    if not len(geoms):
        return "payout map skipped: no field has a geometry"
    mid_lat = float(np.median(shapely.get_coordinates(shapely.centroid(geoms))[:, 1]))
    kx = math.cos(math.radians(mid_lat))
    flat = shapely.transform(geoms, lambda xy: np.column_stack([xy[:, 0] * kx, xy[:, 1]]))
    centroids = shapely.get_coordinates(shapely.centroid(flat))
    x0, y0, x1, y1 = view_box(centroids)
    scale = (WIDTH - 2 * MARGIN) / (x1 - x0)
    height = int(min(MAX_HEIGHT, max(300, (y1 - y0) * scale + 2 * MARGIN)))
    scale = min(scale, (height - 2 * MARGIN) / (y1 - y0))
    to_px = lambda xy: np.column_stack([MARGIN + (xy[:, 0] - x0) * scale, height - MARGIN - (xy[:, 1] - y0) * scale])
    right = MARGIN + (x1 - x0) * scale

    paid = [rows[f].get("amount_cents") or 0 for f in ids if rows[f]["state"] == "assessed"]
    top = max(paid, default=0) or 1
    colours = np.array([field_colour(rows[f], top) for f in ids], dtype=np.uint8)
    inside = (centroids[:, 0] >= x0) & (centroids[:, 0] <= x1) & (centroids[:, 1] >= y0) & (centroids[:, 1] <= y1)

    # every polygon part's exterior ring, in pixels, with the field it belongs to and its extent
    parts, owner = shapely.get_parts(flat, return_index=True)
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    px = to_px(coords)
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    extent = np.maximum(np.maximum.reduceat(px[:, 0], starts) - np.minimum.reduceat(px[:, 0], starts),
                        np.maximum.reduceat(px[:, 1], starts) - np.minimum.reduceat(px[:, 1], starts))
    big = extent >= 2
    field_is_big = np.zeros(len(ids), dtype=bool)
    field_is_big[owner[big]] = True

    width = int(right) + 24 + LEGEND_W
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    dots = np.flatnonzero(inside & ~field_is_big)
    dot_px = np.rint(to_px(centroids[dots])).astype(np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            canvas[np.clip(dot_px[:, 1] + dy, 0, height - 1), np.clip(dot_px[:, 0] + dx, 0, width - 1)] = colours[dots]
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    ends = np.r_[starts[1:], len(px)]
    for part in np.flatnonzero(big & inside[owner]):
        draw.polygon([tuple(p) for p in px[starts[part]:ends[part]]], fill=tuple(int(c) for c in colours[owner[part]]))
    outside = np.flatnonzero(~inside)
    for i in outside:  # a marker where the field would enter the view
        c = centroids[i]
        mx, my = to_px(np.array([[min(max(c[0], x0), x1), min(max(c[1], y0), y1)]]))[0]
        draw.regular_polygon((float(mx), float(my), 6), 3, fill=tuple(int(v) for v in colours[i]), outline=FRAME)
    draw.rectangle((MARGIN - 1, MARGIN - 1, right + 1, height - MARGIN + 1), outline=FRAME)
    _legend(draw, ImageFont, rows, top, len(outside), int(right) + 24, height)
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return f"payout map {target}"


def _legend(draw, image_font, rows: dict, top: float, outside: int, x: int, height: int) -> None:
    font = image_font.load_default(size=14)
    small = image_font.load_default(size=12)
    states = {}
    for r in rows.values():
        key = "unpaid" if r["state"] == "assessed" and not r.get("amount_cents") else r["state"]
        states[key] = states.get(key, 0) + 1
    paid = states.pop("assessed", 0)
    currency = next((r["currency"] for r in rows.values() if r.get("amount_cents")), "")
    total = sum(r.get("amount_cents") or 0 for r in rows.values()) / 100
    y = MARGIN
    draw.text((x, y), "Season payouts", fill=TEXT, font=font)
    y += 22
    draw.text((x, y), f"{len(rows)} fields, {paid} paid", fill=TEXT, font=small)
    y += 18
    draw.text((x, y), f"total {total:,.0f} {currency}", fill=TEXT, font=small)
    y += 28
    if paid:
        for i in range(160):  # the payout ramp, low to high
            draw.line((x + i, y, x + i, y + 14), fill=ramp_colour(i / 159))
        y += 18
        draw.text((x, y), f"> 0 … {top / 100:,.0f} {currency}", fill=TEXT, font=small)
        y += 26
    labels = {"unpaid": "assessed, no payout", "not_assessable": "not assessable", "insufficient_data":
              "insufficient data", "failed": "failed (will retry)", "given_up": "given up", "remaining": "not done yet"}
    for key, label in labels.items():
        if key in states:
            draw.rectangle((x, y + 2, x + 14, y + 14), fill=STATE_COLOURS[key], outline=FRAME)
            draw.text((x + 22, y), f"{label}: {states[key]}", fill=TEXT, font=small)
            y += 20
    if outside:
        y += 8
        draw.regular_polygon((x + 7, y + 8, 6), 3, fill=(255, 255, 255), outline=FRAME)
        draw.text((x + 22, y), f"{outside} field(s) far outside this view,", fill=TEXT, font=small)
        draw.text((x + 22, y + 16), "marked at the frame's edge", fill=TEXT, font=small)

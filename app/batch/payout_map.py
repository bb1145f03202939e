"""PNG map of the season: each field coloured by its payout's share of the insured sum, or by why it has
none.

Drawn with Pillow (in every image, the sealed sure2.sif included, so the map is made where the batch
runs). Coordinates are lon/lat scaled by cos(latitude), so metres look square; the frame has a scale
bar, lon/lat ticks, a north arrow and the season's dates. The view is the extent of the bulk of the
fields (centroids within OUTLIER_FACTOR times the 90th-percentile distance from the median centroid,
padded): one field far from the others does not shrink the season to a dot; the fields outside the
view are drawn as insets beside the legend (the INSETS farthest; any others as markers on the frame's
edge), each with its insurer ID and distance. A field smaller than a pixel is drawn as a 3-pixel dot;
with at most LABELLED fields in view, each carries its insurer ID.
"""

import math

import numpy as np
import shapely

WIDTH = 1000  # map panel, pixels (the height follows the view's aspect, capped)
INSETS = 3  # far fields drawn as insets
INSET = 120  # inset size, pixels
LABELLED = 40  # fields in view up to which each is labelled with its insurer ID
METRES_PER_DEGREE = 111_320.0
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


def field_colour(row: dict, share) -> tuple:
    """Paid fields by their share of the insured sum (0 → 1 on the ramp), others by their state."""
    if row["state"] == "assessed":
        return ramp_colour(share or 0.0) if row.get("amount_cents") else STATE_COLOURS["unpaid"]
    return STATE_COLOURS[row["state"]]


def view_box(centroids: np.ndarray) -> tuple:
    """(x0, y0, x1, y1) holding the bulk of the centroids, padded by 5 % (at least a few hundred metres)."""
    distance = np.hypot(*(centroids - np.median(centroids, axis=0)).T)
    bulk = centroids[distance <= OUTLIER_FACTOR * np.quantile(distance, 0.9)]
    lo, hi = bulk.min(axis=0), bulk.max(axis=0)
    pad = np.maximum((hi - lo) * 0.05, 0.003)
    return (*(lo - pad), *(hi + pad))


def draw_payout_map(season, rows: dict, target, shares: dict | None = None) -> str:
    """Draw the map to `target` (atomically); return a one-line note. `shares`: field → its payout's share
    of the insured sum (the recorded fraction).

    Vectorised where a national season needs it: every ring's pixel extent is computed at once; fields
    smaller than 2 pixels (most of them, seen from a country's extent) are set as 3-pixel dots in one
    array operation, only the larger ones are drawn one by one."""
    from PIL import Image, ImageDraw, ImageFont

    from app.hpc.atomic import atomic_path

    from app.batch.page import plain

    shares = shares or {}
    catalogue = season.columns(["geometry", "source_id"])
    geoms = shapely.from_wkb(catalogue["geometry"])
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    ids = [fid for fid, k in zip(season.field_ids, keep) if k]
    names = [plain(s or f, 24) for s, f, k in zip(catalogue["source_id"], season.field_ids, keep) if k]
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

    colours = np.array([field_colour(rows[f], shares.get(f)) for f in ids], dtype=np.uint8)
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
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    far = outside[np.argsort(-np.hypot(*(centroids[outside] - centre).T))]
    for i in far[INSETS:]:  # a marker where the field would enter the view
        c = centroids[i]
        mx, my = to_px(np.array([[min(max(c[0], x0), x1), min(max(c[1], y0), y1)]]))[0]
        draw.regular_polygon((float(mx), float(my), 6), 3, fill=tuple(int(v) for v in colours[i]), outline=FRAME)
    draw.rectangle((MARGIN - 1, MARGIN - 1, right + 1, height - MARGIN + 1), outline=FRAME)
    small = ImageFont.load_default(size=11)
    shown = np.flatnonzero(inside)
    if len(shown) <= LABELLED:
        for i in shown:
            cx, cy = to_px(centroids[i:i + 1])[0]
            draw.text((float(cx), float(cy)), names[i], fill=TEXT, font=small, anchor="mm", stroke_width=2,
                      stroke_fill=BACKGROUND)
    _frame_furniture(draw, small, (x0, y0, x1, y1), kx, scale, right, height, season)
    y = _legend(draw, ImageFont, rows, len(far[INSETS:]), int(right) + 24, height)
    _insets(draw, small, flat, centroids, colours, names, far[:INSETS], centre, int(right) + 24, y, height)
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return f"payout map {target}"


def _legend(draw, image_font, rows: dict, outside: int, x: int, height: int) -> int:
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
        draw.text((x, y), "paid: 0 … 100 % of the insured sum", fill=TEXT, font=small)
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
        draw.text((x + 22, y), f"{outside} more field(s) far outside this view,", fill=TEXT, font=small)
        draw.text((x + 22, y + 16), "marked at the frame's edge", fill=TEXT, font=small)
        y += 32
    return y + 12


def _nice(length: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above `length`."""
    k = 10 ** math.floor(math.log10(length))
    return max(m * k for m in (1, 2, 5) if m * k <= length)


def _frame_furniture(draw, font, view, kx: float, scale: float, right: float, height: int, season) -> None:
    """Scale bar, lon/lat ticks, north arrow and the season's dates."""
    x0, y0, x1, y1 = view
    metres_per_px = METRES_PER_DEGREE / scale
    bar_m = _nice(metres_per_px * (right - MARGIN) / 4)
    bar_px = bar_m / metres_per_px
    bx, by = MARGIN + 12, height - MARGIN - 16
    draw.rectangle((bx - 4, by - 16, bx + bar_px + 40, by + 8), fill=BACKGROUND)
    draw.rectangle((bx, by, bx + bar_px, by + 5), fill=TEXT)
    draw.rectangle((bx + bar_px / 2, by, bx + bar_px, by + 5), fill=BACKGROUND, outline=TEXT)
    draw.text((bx, by - 14), f"{bar_m / 1000:g} km" if bar_m >= 1000 else f"{bar_m:g} m", fill=TEXT, font=font)
    nx, ny = right - 22, MARGIN + 30
    draw.polygon([(nx, ny - 18), (nx - 7, ny), (nx + 7, ny)], fill=TEXT)
    draw.text((nx, ny + 8), "N", fill=TEXT, font=font, anchor="mm")
    step_lon, step_lat = _nice((x1 - x0) / kx / 3), _nice((y1 - y0) / 3)
    for lon in np.arange(math.ceil(x0 / kx / step_lon) * step_lon, x1 / kx, step_lon):
        px = MARGIN + (lon * kx - x0) * scale
        draw.line((px, MARGIN, px, MARGIN + 4), fill=FRAME)
        draw.text((px, MARGIN + 5), f"{lon:.4f}°E", fill=TEXT, font=font, anchor="mt", stroke_width=2,
                  stroke_fill=BACKGROUND)
    for lat in np.arange(math.ceil(y0 / step_lat) * step_lat, y1, step_lat):
        py = height - MARGIN - (lat - y0) * scale
        if py > height - MARGIN - 36:  # the scale bar's corner
            continue
        draw.line((MARGIN, py, MARGIN + 4, py), fill=FRAME)
        draw.text((MARGIN + 6, py), f"{lat:.4f}°N", fill=TEXT, font=font, anchor="lm", stroke_width=2,
                  stroke_fill=BACKGROUND)
    dates = sorted(d for st in season.stacks.values() for d in (st.dates[0], st.dates[-1]))
    if dates:
        draw.text((right - 6, height - MARGIN - 4), f"season {dates[0]} … {dates[-1]} · lon/lat WGS 84", fill=TEXT,
                  font=font, anchor="rb", stroke_width=2, stroke_fill=BACKGROUND)


def _insets(draw, font, flat, centroids, colours, names, far, centre, x: int, y: int, height: int) -> None:
    """The farthest fields, each in its own small frame at its own scale, with its ID and distance."""
    for i in far:
        if y + INSET + 30 > height:
            return
        part = max(shapely.get_parts(flat[i]), key=shapely.area)
        rings = shapely.get_coordinates(shapely.get_exterior_ring(part))
        lo, hi = rings.min(axis=0), rings.max(axis=0)
        k = (INSET - 16) / max(float((hi - lo).max()), 1e-9)
        px = np.column_stack([x + 8 + (rings[:, 0] - lo[0]) * k, y + INSET - 8 - (rings[:, 1] - lo[1]) * k])
        draw.rectangle((x, y, x + INSET, y + INSET), outline=FRAME)
        draw.polygon([tuple(p) for p in px], fill=tuple(int(c) for c in colours[i]), outline=FRAME)
        km = float(np.hypot(*(centroids[i] - centre))) * METRES_PER_DEGREE / 1000
        draw.text((x, y + INSET + 3), f"{names[i]}: {km:,.0f} km from the view", fill=TEXT, font=font)
        y += INSET + 24

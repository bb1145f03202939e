"""The basis-risk picture: index against true loss per field, and false / missed payouts by group.

Drawn with Pillow (every image has it; matplotlib is only in the development venv). Left: one dot per
assessed field at (true index, index), coloured by damage type, a ring around fields whose payout
decision is wrong, the diagonal for reference. Right: false and missed payouts by damage type and
by cloudiness.
"""

from PIL import Image, ImageDraw, ImageFont

SIZE = (1060, 520)
PLOT = (60, 60, 500, 460)  # left panel box: x0, y0, x1, y1
BARS_X = 600
DAMAGE_COLOURS = {"healthy": (46, 139, 87), "hail": (52, 101, 164), "drought": (230, 126, 34)}
FALSE, MISSED = (192, 57, 43), (125, 60, 152)
TEXT, GRID = (20, 20, 20), (215, 215, 215)


def draw(report: dict, rows: list) -> Image.Image:
    image = Image.new("RGB", SIZE, (255, 255, 255))
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    d, c = report["decision"], report["correlation"]
    agreement = f"{d['agreement']:.1%}" if d["agreement"] is not None else "-"
    pen.text((PLOT[0], 15), f"Basis risk: decision agrees for {agreement} of {d['assessed']} assessed fields; "
             f"false payouts {d['false_payouts']}, missed {d['missed_payouts']} (+{d['missed_not_assessed']} not "
             f"assessed); Pearson {c['pearson']}, Spearman {c['spearman']}", fill=TEXT, font=font)
    _scatter(pen, font, [r for r in rows if r["assessed"]])
    y = PLOT[1]
    for key in ("damage", "cloudiness"):
        y = _bars(pen, font, key, report["groups"][key], y) + 20
    return image


def _scatter(pen, font, rows):
    x0, y0, x1, y1 = PLOT
    values = [v for r in rows for v in (r["index"], r["true_index"])] or [0.0, 1.0]
    lo, hi = min(0.0, min(values)), max(0.1, max(values))
    pad = 0.03 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    to_px = lambda vx, vy: (x0 + (vx - lo) / (hi - lo) * (x1 - x0), y1 - (vy - lo) / (hi - lo) * (y1 - y0))
    step = 0.1 if hi - lo <= 1.2 else 0.2
    tick = round(lo / step) * step
    while tick <= hi:
        if tick >= lo:
            px, py = to_px(tick, tick)
            pen.line([(px, y0), (px, y1)], fill=GRID)
            pen.line([(x0, py), (x1, py)], fill=GRID)
            pen.text((px - 10, y1 + 4), f"{tick:.1f}", fill=TEXT, font=font)
            pen.text((x0 - 30, py - 5), f"{tick:.1f}", fill=TEXT, font=font)
        tick += step
    pen.rectangle(PLOT, outline=TEXT)
    pen.line([to_px(lo, lo), to_px(hi, hi)], fill=(150, 150, 150), width=1)
    for r in rows:
        px, py = to_px(r["true_index"], r["index"])
        colour = DAMAGE_COLOURS.get(r["damage"], TEXT)
        pen.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=colour)
        if (r["amount"] > 0) != (r["true_amount"] > 0):
            pen.ellipse([px - 6, py - 6, px + 6, py + 6], outline=FALSE, width=2)
    pen.text(((x0 + x1) / 2 - 40, y1 + 20), "true loss index", fill=TEXT, font=font)
    pen.text((x0, y0 - 14), "index (ring: wrong payout decision)", fill=TEXT, font=font)
    lx = x0 + 8
    for name, colour in DAMAGE_COLOURS.items():
        pen.ellipse([lx, y0 + 8, lx + 6, y0 + 14], fill=colour)
        pen.text((lx + 10, y0 + 5), name, fill=TEXT, font=font)
        lx += 70


def _bars(pen, font, key, parts: dict, y: int) -> int:
    pen.text((BARS_X, y), f"false / missed payouts by {key}", fill=TEXT, font=font)
    y += 18
    top = max([1] + [p["decision"]["false_payouts"] + p["decision"]["missed_payouts"]
                     + p["decision"]["missed_not_assessed"] for p in parts.values()])
    scale = 260 / top
    for name, part in parts.items():
        dec = part["decision"]
        wrong_false, wrong_missed = dec["false_payouts"], dec["missed_payouts"] + dec["missed_not_assessed"]
        pen.text((BARS_X, y + 2), f"{name} ({dec['fields']})", fill=TEXT, font=font)
        bx = BARS_X + 150
        pen.rectangle([bx, y, bx + wrong_false * scale, y + 7], fill=FALSE)
        pen.rectangle([bx, y + 8, bx + wrong_missed * scale, y + 15], fill=MISSED)
        pen.text((bx + max(wrong_false, wrong_missed) * scale + 6, y + 2), f"{wrong_false} / {wrong_missed}",
                 fill=TEXT, font=font)
        y += 22
    pen.rectangle([BARS_X, y + 2, BARS_X + 10, y + 8], fill=FALSE)
    pen.text((BARS_X + 14, y), "false", fill=TEXT, font=font)
    pen.rectangle([BARS_X + 60, y + 2, BARS_X + 70, y + 8], fill=MISSED)
    pen.text((BARS_X + 74, y), "missed (incl. not assessed)", fill=TEXT, font=font)
    return y + 12

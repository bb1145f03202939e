"""Per scene: is the BOA offset (−1000 DN) still in the DN? Decided from the metadata, then checked
against the values, because one catalogue's flag is known to be wrong for some items.

Metadata, in order of precedence:
  1. `earthsearch:boa_offset_applied: true` → the catalogue removed the offset (DN = reflectance × 1e4);
  2. a `raster:bands` offset on red/NIR → that offset (−0.1 reflectance = 1000 DN);
  3. `s2:processing_baseline` ≥ 04.00 → the product carries the offset; below → it does not;
  4. no baseline: the acquisition date (baseline 04.00 began on 2022-01-25).
Values (clear pixels: SCL 2, 4, 5, 6, 7, from the blocks actually read):
  - `below` = share of clear pixels with red DN < 1000, i.e. that would be NEGATIVE reflectance if the
    offset were subtracted. A product that carries the offset has essentially none (< 0.5 %); a
    product without it has every vegetation, water or shadow pixel there (red < 0.1).
  - below ≥ 5 %                                   → the DN carry no offset (definite);
  - below < 0.5 % and vegetation (SCL 4) ≥ 5 %     → the DN carry the offset (definite: without it,
    vegetation's red reflectance would be ≥ 0.1, which a canopy does not have);
  - otherwise (bright scenes: snow, bare soil; too few clear pixels) → inconclusive: the metadata stand.
Every decision records the metadata's answer, the evidence, the result and why (the audit trail).
"""

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np

from app.season._scene_kernels import evidence_counts

OFFSET_DN = 1000
BASELINE_04 = dt.date(2022, 1, 25)
CLEAR_CLASSES = (2, 4, 5, 6, 7)
VEGETATION = 4
NO_OFFSET_BELOW = 0.05
OFFSET_BELOW = 0.005
MIN_VEGETATION = 0.05
MIN_CLEAR_PIXELS = 500
_CLEAR_LUT = np.isin(np.arange(256), CLEAR_CLASSES).astype(np.uint8)


@dataclass
class Evidence:
    """Counts gathered while a scene's blocks are read (additive over blocks)."""

    clear: int = 0
    below: int = 0  # clear pixels with red DN < 1000
    vegetation: int = 0

    def add(self, red_dn, scl, step: int = 1) -> None:
        """One window's counts (scl at `step` 10 m pixels per SCL pixel, or None). Without an SCL every
        non-nodata pixel counts as clear and none as vegetation (so the values can only ever show that
        there is no offset)."""
        clear, below, vegetation = evidence_counts(red_dn, scl, step, _CLEAR_LUT, VEGETATION, OFFSET_DN)
        self.clear += clear
        self.below += below
        self.vegetation += vegetation


@dataclass
class OffsetDecision:
    offset_dn: int  # what is subtracted from red and NIR DN before scaling
    metadata_offset_dn: int
    metadata_reason: str
    evidence: dict
    verdict: str  # "agrees", "contradicts", "inconclusive"
    reason: str

    def record(self) -> dict:
        return asdict(self)


def metadata_offset(scene) -> tuple[int, str]:
    """(offset in DN, why) from the item's metadata alone."""
    if scene.offset_applied_flag is True:
        return 0, "earthsearch:boa_offset_applied is true (the catalogue removed the offset)"
    offsets = {b: scene.assets[b].offset for b in ("red", "nir") if b in scene.assets and scene.assets[b].offset is not None}
    if offsets:
        value = offsets.get("red", next(iter(offsets.values())))
        scale = scene.assets["red"].scale or 1e-4
        return int(round(-value / scale)), f"raster:bands offset {value:g} (scale {scale:g})"
    if scene.processing_baseline is not None:
        carries = scene.processing_baseline >= "04.00"
        return (OFFSET_DN if carries else 0), f"s2:processing_baseline {scene.processing_baseline}"
    carries = scene.acquired.date() >= BASELINE_04
    return (OFFSET_DN if carries else 0), (f"no processing baseline; acquired {'on/after' if carries else 'before'} "
                                           f"{BASELINE_04} (baseline 04.00)")


def decide(scene, evidence: Evidence) -> OffsetDecision:
    meta, meta_reason = metadata_offset(scene)
    counts: dict[str, float | None] = {"clear_pixels": evidence.clear, "below_1000_share": None, "vegetation_share": None}
    if evidence.clear < MIN_CLEAR_PIXELS:
        return OffsetDecision(meta, meta, meta_reason, counts, "inconclusive",
                              f"only {evidence.clear} clear pixels read (< {MIN_CLEAR_PIXELS}): metadata stand")
    below = evidence.below / evidence.clear
    vegetation = evidence.vegetation / evidence.clear
    counts.update(below_1000_share=round(below, 5), vegetation_share=round(vegetation, 5))
    if below >= NO_OFFSET_BELOW:
        values, why = 0, (f"{below:.1%} of clear pixels have red DN < 1000 (negative reflectance if an offset were "
                          "subtracted): the DN carry no offset")
    elif below < OFFSET_BELOW and vegetation >= MIN_VEGETATION:
        values, why = OFFSET_DN, (f"{below:.2%} of clear pixels below red DN 1000 although {vegetation:.0%} are "
                                  "vegetation (red reflectance < 0.1): the DN carry the offset")
    else:
        return OffsetDecision(meta, meta, meta_reason, counts, "inconclusive",
                              f"{below:.1%} below red DN 1000, {vegetation:.0%} vegetation: values cannot tell; "
                              "metadata stand")
    verdict = "agrees" if values == meta else "contradicts"
    reason = why if verdict == "agrees" else f"metadata ({meta_reason}) say {meta} DN, but {why}"
    return OffsetDecision(values, meta, meta_reason, counts, verdict, reason)

"""Every field ends assessed or explained: the outcome a field's output records, and why.

| status             | reason               | when |
|--------------------|----------------------|------|
| assessed           | -                    | a payout was computed from the field's own data |
| not_assessable     | no_stack             | no NDVI stack covers the field (the import's note says why) |
| not_assessable     | invalid_geometry     | null, empty or invalid polygon |
| not_assessable     | outside_raster       | the polygon lies outside its stack's raster |
| not_assessable     | too_small            | fewer pure pixels than --min-pure-pixels (a sliver, a thin strip, tiny) |
| not_assessable     | no_baseline          | no baseline for the field's region × crop, or none over its season |
| not_assessable     | bad_contract         | contract terms that make no sense (trigger ≥ exit, insured sum ≤ 0, ...) |
| insufficient_data  | partial_coverage     | the stack covers less of the field than --min-field-coverage |
| insufficient_data  | too_few_observations | fewer observed dates in sowing→harvest than --min-observed-share |

A field's outcome is durable: it is written as the field's output (same row count, values null where
unknown), so a rerun does not redo it, and the batch report lists it for a claims adjuster.
"""

ASSESSED = "assessed"
NOT_ASSESSABLE = "not_assessable"
INSUFFICIENT_DATA = "insufficient_data"
STATUSES = (ASSESSED, NOT_ASSESSABLE, INSUFFICIENT_DATA)

REASONS = {
    "no_stack": NOT_ASSESSABLE,
    "invalid_geometry": NOT_ASSESSABLE,
    "outside_raster": NOT_ASSESSABLE,
    "too_small": NOT_ASSESSABLE,
    "no_baseline": NOT_ASSESSABLE,
    "bad_contract": NOT_ASSESSABLE,
    "partial_coverage": INSUFFICIENT_DATA,
    "too_few_observations": INSUFFICIENT_DATA,
}


class FieldOutcome(Exception):
    """A problem that belongs to one field: raised inside its assessment, written as its outcome."""

    def __init__(self, reason: str, detail: str, partial: dict | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown outcome reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
        self.partial = partial or {}  # what was measured before the problem showed (columns, coverage)

    @property
    def status(self) -> str:
        return REASONS[self.reason]

"""Resumable, race-safe batch of Sure2 assessments: `python -m app.batch plan|run|status|report`.

Data flow:  field list ─plan─► fields without a VALID output ─workers (claim, re-check, assess)─►
OUT/FIELD.parquet, with every claim, attempt and outcome appended to one journal, OUT/.batch/journal.log.

Imports stay light at module level: the parent process never needs numpy, and each worker caps its
threads before the assessment (and with it numpy, rasterio, pyarrow) is imported.
"""

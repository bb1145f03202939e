"""The contract between the import and everything downstream (notes/contracts.md): every refused source
row in SEASON/refused.parquet with a machine reason, a human line and its geometry; the season reader's
`refused()` and `resolve_id()` (the insurer's ID as written, or the field_id)."""

import json

import pyarrow.parquet as pq
import pytest
import shapely

from app.errors import BadInput
from app.sure2.season import Season


def test_refused_rows_are_in_refused_parquet_with_reason_and_geometry(built, raw):
    season, _ = built
    table = pq.read_table(season / "refused.parquet")
    rows = table.to_pylist()
    assert [(r["source_id"], r["reason"]) for r in rows] == [
        ("KV-DUP1", "duplicate_id"), ("KV-DUP1", "duplicate_id"), ("KV DUP2", "id_collision"),
        ("KV_DUP2", "id_collision")]
    assert rows[0]["detail"] == "duplicate ID: 'KV-DUP1' is on 2 rows"
    source = pq.read_table(raw / "fields.parquet").to_pylist()
    for r in rows:  # the row number points at the insurer's row; the geometry is that row's, in lon/lat
        assert source[r["row"] - 1]["skifte_id"] == r["source_id"]
        geom = shapely.from_wkb(r["geometry"])
        assert -180 <= geom.centroid.x <= 180 and 55 < geom.centroid.y < 65 and geom.area > 0
    manifest = json.loads((season / "season.json").read_text())
    assert "refused.parquet" in manifest["files"]  # part of the fingerprint
    with Season.open(season) as s:
        assert s.refused().to_pylist() == rows


def test_resolve_id_takes_the_insurers_id_as_written(built):
    season, _ = built
    with Season.open(season) as s:
        assert s.resolve_id("NO/2025/0042") == "NO_2025_0042" == s.resolve_id("NO_2025_0042")
        assert s.resolve_id("Ås-7") == "As-7" and s.source_id("As-7") == "Ås-7"
        assert s.resolve_id("KV-0003") == "KV-0003"
        with pytest.raises(BadInput, match=r"'KV-DUP1' was refused by the season's import \(duplicate_id\)"):
            s.resolve_id("KV-DUP1")
        with pytest.raises(BadInput, match="unknown field id 'NO/2025/9999'"):
            s.resolve_id("NO/2025/9999")

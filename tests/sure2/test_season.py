import json

import numpy as np
import pytest

from app.errors import BadInput, EnvironmentFailure
from app.sure2.season import Season, hilbert_key


def test_open_reads_catalogue_dates_and_fingerprint(season_dir):
    manifest = json.loads((season_dir / "season.json").read_text())
    with Season.open(season_dir) as s:
        stack = s.stacks["ndvi"]
        assert stack.n_dates == 37 and stack.dates[0].isoformat() == "2025-04-01"
        assert s.n_rows(s.field_ids[0]) == 37 and s.stack_of(s.field_ids[0]) is stack
        assert s.fingerprint == manifest["fingerprint"]
        assert sorted(s.field_ids) == sorted(f"NO25-{k:05d}" for k in range(manifest["n_fields"]))
        with pytest.raises(BadInput, match="unknown field id"):
            s.require("NO25-99999")
        with pytest.raises(BadInput):
            s.require("../NO25-00001")


def test_catalogue_is_in_spatial_order(season_dir):
    """Consecutive fields are neighbours: hops far shorter than in a shuffled order."""
    import pyarrow.parquet as pq
    import shapely

    with Season.open(season_dir) as s:
        order = s.field_ids
        t = pq.read_table(season_dir / "fields.parquet", columns=["field_id", "geometry"]).to_pydict()
        centre = dict(zip(t["field_id"], shapely.get_coordinates(shapely.centroid(shapely.from_wkb(t["geometry"])))))
    hop = lambda ids: np.mean([np.hypot(*(centre[a] - centre[b])) for a, b in zip(ids[:-1], ids[1:])])
    shuffled = list(np.random.default_rng(0).permutation(order))
    assert hop(order) < 0.25 * hop(shuffled)


def test_hilbert_key_is_a_continuous_bijection():
    order = 3
    xs, ys = np.meshgrid(np.arange(8), np.arange(8))
    keys = hilbert_key(xs.ravel(), ys.ravel(), order)
    assert sorted(keys.tolist()) == list(range(64))
    pts = np.column_stack([xs.ravel(), ys.ravel()])[np.argsort(keys)]
    assert (np.abs(np.diff(pts, axis=0)).sum(axis=1) == 1).all()


def _copy_season(season_dir, target, stack_bytes=None):
    target.mkdir()
    for name in ("season.json", "fields.parquet", "baseline.parquet"):
        (target / name).write_bytes((season_dir / name).read_bytes())
    if stack_bytes is not None:
        (target / "ndvi.tif").write_bytes(stack_bytes)
    return target


def test_missing_or_broken_season_is_an_environment_failure(tmp_path, season_dir):
    with pytest.raises(EnvironmentFailure):
        Season.open(tmp_path / "nope")
    with pytest.raises(EnvironmentFailure):
        Season.open(tmp_path)  # exists, but no manifest
    with pytest.raises(EnvironmentFailure, match="ndvi.tif"):
        Season.open(_copy_season(season_dir, tmp_path / "no-stack"))
    # a stack is opened at its first read: a broken one fails the read, as the environment
    with Season.open(_copy_season(season_dir, tmp_path / "broken", b"not a tiff")) as s:
        with pytest.raises(EnvironmentFailure, match="ndvi.tif is not usable"):
            s.stack_of(s.field_ids[0]).dataset


def test_a_stack_that_differs_from_its_manifest_is_refused(tmp_path, season_dir):
    import rasterio

    with rasterio.open(season_dir / "ndvi.tif") as src:
        profile, data = src.profile, src.read()
    target = _copy_season(season_dir, tmp_path / "other-dates")
    with rasterio.open(target / "ndvi.tif", "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(ACQUISITION_DATES=",".join(["2024-01-01"] * profile["count"]))
    with Season.open(target) as s:
        with pytest.raises(EnvironmentFailure, match="does not match season.json"):
            s.stack_of(s.field_ids[0]).dataset


def test_a_season_of_the_old_format_is_refused_with_advice(tmp_path, season_dir):
    target = _copy_season(season_dir, tmp_path / "old", (season_dir / "ndvi.tif").read_bytes())
    manifest = json.loads((target / "season.json").read_text())
    (target / "season.json").write_text(json.dumps({**manifest, "format": "sure2-season/1"}))
    with pytest.raises(EnvironmentFailure, match="rebuild the season"):
        Season.open(target)


def test_a_chunk_of_ids_is_put_in_catalogue_order_from_its_own_rows(season_dir):
    with Season.open(season_dir) as whole, Season.open(season_dir) as fresh:
        order = whole.field_ids
        chunk = list(np.random.default_rng(3).permutation(order)[:40])
        assert fresh.in_catalogue_order(chunk) == [f for f in order if f in set(chunk)]
        assert fresh._catalogue_rows is None  # a container assessing a chunk never orders the whole catalogue


def test_ids_are_found_in_a_catalogue_in_any_row_order(season_dir, tmp_path):
    """Our builders write fields.parquet sorted by id (looked up by binary search); any other order
    is looked up through a dict: the same answers."""
    import shutil

    import pyarrow.parquet as pq

    shuffled = tmp_path / "shuffled"
    shutil.copytree(season_dir, shuffled)
    table = pq.read_table(season_dir / "fields.parquet")
    pq.write_table(table.take(np.random.default_rng(5).permutation(table.num_rows)), shuffled / "fields.parquet")
    with Season.open(season_dir) as s, Season.open(shuffled) as t:
        assert s._row._dict is None and t._row._dict is not None
        assert t.field_ids == s.field_ids
        for fid in s.field_ids[::7]:
            assert t.field(fid) == s.field(fid) and t.stack_of(fid) is not None
        for missing in ("NO25-99999", "A", "ZZZ"):
            with pytest.raises(BadInput, match="unknown field id"):
                t.require(missing)
            with pytest.raises(BadInput, match="unknown field id"):
                s.require(missing)


def test_a_catalogue_row_without_an_id_makes_the_season_unreadable(season_dir, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    broken = tmp_path / "broken"
    shutil.copytree(season_dir, broken)
    table = pq.read_table(season_dir / "fields.parquet")
    ids = table.column("field_id").to_pylist()
    ids[3] = None
    pq.write_table(table.set_column(0, "field_id", pa.array(ids, pa.string())), broken / "fields.parquet")
    with pytest.raises(EnvironmentFailure, match="1 row.s. without a field_id"):
        Season.open(broken)


def test_season_without_refused_rows_file_has_none(season_dir):
    """A generated season has no refused.parquet: no refused rows, IDs resolve as themselves."""
    with Season.open(season_dir) as s:
        assert s.refused().num_rows == 0 and s.refused().column_names == ["source_id", "row", "reason", "detail",
                                                                           "geometry"]
        fid = s.field_ids[0]
        assert s.resolve_id(fid) == fid and s.source_id(fid) == fid
        with pytest.raises(BadInput, match="unknown field id 'NO25-99999'"):
            s.resolve_id("NO25-99999")
        for bad in ("", "a\0b", "x" * 300):
            with pytest.raises(BadInput):
                s.resolve_id(bad)

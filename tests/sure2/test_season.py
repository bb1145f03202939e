import json

import numpy as np
import pytest

from app.errors import BadInput, EnvironmentFailure
from app.sure2.season import Season, hilbert_key


def test_open_reads_catalogue_dates_and_fingerprint(season_dir):
    manifest = json.loads((season_dir / "season.json").read_text())
    with Season.open(season_dir) as s:
        assert s.n_dates == 37 and s.dates[0].isoformat() == "2025-04-01"
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


def test_missing_or_broken_season_is_an_environment_failure(tmp_path, season_dir):
    with pytest.raises(EnvironmentFailure):
        Season.open(tmp_path / "nope")
    with pytest.raises(EnvironmentFailure):
        Season.open(tmp_path)  # exists, but no manifest
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("season.json", "fields.parquet", "baseline.parquet"):
        (broken / name).write_bytes((season_dir / name).read_bytes())
    (broken / "ndvi.tif").write_bytes(b"not a tiff")
    with pytest.raises(EnvironmentFailure):
        Season.open(broken)

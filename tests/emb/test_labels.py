"""Parcel labels from users' files: class maps, crop codes, repairs, refusals."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from rasterio.features import rasterize

from app.emb import IGNORE
from app.emb.labels import Labeller, load_class_map, normalise_code, read_parcels
from app.errors import BadInput
from tests.emb.conftest import write_vector

MAP = """code_column = "crop"
unmapped = "ignore"
[classes]
1 = "wheat"
2 = "barley"
[codes]
"111" = 1
"112" = 1
"211" = 2
"900" = 0
"999" = 255
"""


def _parcels_file(tmp_path, driver="GPKG", name="parcels.gpkg", crs="EPSG:32633"):
    """Six parcels in UTM 33N: two wheat codes, barley, land use, an explicit ignore, one unmapped code, one
    without a code; one of them a self-intersecting bowtie, one a null geometry."""
    box = lambda x, y: shapely.box(500_000 + x, 6_650_000 + y, 500_000 + x + 100, 6_650_000 + y + 100)  # noqa: E731
    bowtie = shapely.Polygon([(500_400, 6_650_000), (500_500, 6_650_100), (500_500, 6_650_000), (500_400, 6_650_100)])
    geoms = [box(0, 0), box(200, 0), bowtie, box(0, 200), box(200, 200), box(400, 200), box(600, 0), None]
    codes = [111, 112, 211, 900, 999, 555, None, 111]
    table = pa.table({"crop": pa.array(codes, pa.int64()),
                      "geometry": pa.array([None if g is None else g.wkb for g in geoms], pa.binary())})
    geo = b'{"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}'
    parquet = tmp_path / "src.parquet"
    pq.write_table(table.replace_schema_metadata({b"geo": geo}), parquet)
    return write_vector(parquet, tmp_path / name, driver, crs=crs)


@pytest.fixture
def class_map(tmp_path):
    path = tmp_path / "classes.toml"
    path.write_text(MAP)
    return load_class_map(path)


@pytest.mark.parametrize("driver,name", [("GPKG", "parcels.gpkg"), ("ESRI Shapefile", "parcels.zip")])
def test_codes_become_labels_and_everything_is_counted(tmp_path, class_map, driver, name):
    parcels = read_parcels(_parcels_file(tmp_path, driver, name), class_map)
    assert parcels.crs.to_epsg() == 32633
    assert parcels.label.tolist() == [1, 1, 2, 0, IGNORE, IGNORE, IGNORE]  # null geometry dropped
    assert shapely.is_valid(parcels.geometry).all()
    bowtie = parcels.geometry[2]
    assert bowtie.geom_type == "MultiPolygon" and abs(bowtie.area - 5000) < 1e-6  # both triangles kept
    r = parcels.report
    assert r["features"] == 8
    assert r["parcels_by_class"] == {"non-crop": 1, "wheat": 2, "barley": 1} and r["ignored_parcels"] == 3
    assert r["unmapped"] == {"parcels": 2, "codes": 2, "most_frequent": {"555": 1, "(no code)": 1}}
    assert r["repaired"]["parcels"] == 1 and list(r["repaired"]["reasons"]) == ["Self-intersection"]
    assert r["dropped"] == {"parcels": 1, "reasons": {"null geometry": 1}}


def test_unmapped_can_mean_non_crop(tmp_path):
    path = tmp_path / "classes.toml"
    path.write_text(MAP)
    parcels = read_parcels(_parcels_file(tmp_path), load_class_map(path, unmapped="non-crop"))
    assert parcels.label.tolist() == [1, 1, 2, 0, IGNORE, 0, 0]  # the explicit 255 stays ignored


def test_a_file_without_crs_is_refused_naming_it(tmp_path, class_map):
    path = _parcels_file(tmp_path, name="nocrs.gpkg", crs=None)
    with pytest.raises(BadInput, match="nocrs.gpkg has no CRS"):
        read_parcels(path, class_map)


def test_a_missing_code_column_is_bad_input(tmp_path):
    path = tmp_path / "classes.toml"
    path.write_text(MAP)
    with pytest.raises(BadInput, match="no column 'EC_hcat_c'"):
        read_parcels(_parcels_file(tmp_path), load_class_map(path, code_column="EC_hcat_c"))


@pytest.mark.parametrize("text,says", [
    ("code_column = 'c'\n[classes]\n1 = 'a'\n3 = 'b'\n[codes]\n'x' = 1\n", "without gaps"),
    ("code_column = 'c'\n[classes]\n1 = 'a'\n[codes]\n'x' = 7\n", "maps to 7"),
    ("code_column = 'c'\nunmapped = 'drop'\n[classes]\n1 = 'a'\n[codes]\n'x' = 1\n", "unmapped must be"),
    ("[classes]\n1 = 'a'\n[codes]\n'x' = 1\n", "code_column"),
    ("code_column = 'c'\n[classes]\n1 = 'a'\n", "[codes]"),
    ("code_column = 'c'\ncolour = 1\n[classes]\n1 = 'a'\n[codes]\n'x' = 1\n", "unknown keys colour"),
    ("code_column = 'c'\n[classes\n", "not valid TOML"),
])
def test_bad_class_maps_name_the_problem(tmp_path, text, says):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BadInput, match=says.replace("[", r"\[")):
        load_class_map(path)


def test_codes_compare_as_text():
    assert normalise_code(3301010101) == normalise_code(3301010101.0) == normalise_code(" 3301010101 ") == "3301010101"
    assert normalise_code(None) is None and normalise_code(float("nan")) is None and normalise_code("") is None


def test_labels_burn_classes_ignore_parcels_and_boundaries(tmp_path, class_map):
    parcels = read_parcels(_parcels_file(tmp_path), class_map)
    labeller = Labeller(parcels)
    transform = (10.0, 0.0, 500_000.0, 0.0, -10.0, 6_650_400.0)  # 40 x 80 px over all parcels
    from pyproj import CRS

    y = labeller.labels(CRS.from_epsg(32633).to_wkt(), transform, 80)
    assert y[35, 5] == 1 and y[35, 25] == 1 and y[15, 5] == 0 and y[15, 25] == IGNORE  # wheat, land use, ignore
    assert y[15, 45] == IGNORE  # unmapped under "ignore": not taught as non-crop
    assert y[5, 70] == 0  # no parcel
    inside = rasterize([(parcels.geometry[0], 1)], out_shape=(80, 80), transform=transform, fill=0)
    edge = rasterize([(shapely.boundary(parcels.geometry[0]), 1)], out_shape=(80, 80), transform=transform,
                     all_touched=True, fill=0)
    assert (y[edge == 1] == IGNORE).all() and (y[(inside == 1) & (edge == 0)] == 1).all()
    assert np.isin(y, [0, 1, 2, IGNORE]).all()

"""The fetch tests' world (the `world` fixture in conftest.py builds it once per session): generated raw inputs with truth (app.season raw:
Sentinel-2 L2A COGs in UTM 32/33 + an insurer's GeoPackage), served by a real nginx on loopback, a
FaultProxy in front of it, and a real STAC API (`rustac serve`) whose items point at the proxy; plus
the season built from the full files, the reference every fetched build must equal."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from servers import FaultProxy, Nginx, Rustac

ROOT = Path(__file__).resolve().parents[2]

COLLECTION = "sentinel-2-l2a"
HOSTILE = "hostile"
EMBEDDINGS = "satellite-embedding"
EMB_YEAR = 2024
PAST_YEAR = 2023


def cli(module: str, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, check=False)


@dataclass
class World:
    raw: Path  # generated inputs (scenes/ are the full files nginx serves)
    nginx: Nginx
    proxy: FaultProxy
    stac: Rustac
    reference: Path  # the season built from the full local files
    tmp: Path

    def fetch(self, out, *extra, collection=COLLECTION, catalog=None, timeout=300):
        return cli("app.season", "fetch", "--fields", self.raw / "fields.gpkg", "--mapping", self.raw / "mapping.toml",
                   "--out", out, "--catalog", catalog or self.stac.url, "--collection", collection,
                   "--allow-host", self.proxy.url, "--workers", 4, "--backoff", 0.02, "--timeout", 2.5, *extra,
                   timeout=timeout)

    def build(self, scenes, out):
        return cli("app.season", "build", "--fields", self.raw / "fields.gpkg", "--mapping", self.raw / "mapping.toml",
                   "--scenes", scenes, "--out", out)


def served_items(items: list, base: str) -> list:
    """Items whose asset hrefs point at base (the proxy) instead of the local files."""
    out = []
    for item in items:
        item = json.loads(json.dumps(item))
        for asset in item["assets"].values():
            asset["href"] = f"{base}/{asset['href'].removeprefix('./')}"
        out.append(item)
    return out


def hostile_items(template: dict, proxy, nginx, raw: Path) -> list:
    """One item per hostile trick, in collection 'hostile' (each must end skipped or failed, nothing
    written outside --out)."""
    (raw / "scenes" / "absurd.tif").write_bytes(absurd_tiff())

    def item(item_id, **hrefs):
        it = json.loads(json.dumps(template))
        it["id"], it["collection"] = item_id, HOSTILE
        for key, href in hrefs.items():
            it["assets"][key]["href"] = href
        return it

    good = template["assets"]["red"]["href"]
    cloudy = item("cloudy")
    cloudy["properties"]["eo:cloud_cover"] = 95.5
    return [
        item("../../escape"),
        item("/abs/path"),
        item("nul\u0000byte"),
        item("x" * 300),
        item("file-href", red="file:///etc/passwd"),
        item("foreign-host", red=good.replace(proxy.url, nginx.url)),  # a host not allowed
        item("redirect-out", red=good.replace(".tif", ".tif?redirect")),
        item("absurd-header", red=f"{proxy.url}/absurd.tif"),
        item("tls-error", red=good.replace("http://", "https://")),
        cloudy,
    ]


def absurd_tiff() -> bytes:
    """A TIFF header claiming 2,000,000² pixels in 16² tiles (15.6 G tiles) and 10⁹-entry arrays."""
    import struct

    entries = [(256, 4, 1, 2_000_000), (257, 4, 1, 2_000_000), (322, 3, 1, 16), (323, 3, 1, 16),
               (324, 4, 10**9, 4096), (325, 4, 10**9, 8192)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    return b"II" + struct.pack("<HI", 42, 8) + ifd + struct.pack("<I", 0) + bytes(64)


def embedding_items(src: Path, base: str) -> list:
    """Generated published-format embedding tiles (app.emb synth) in src, and one STAC item per tile
    whose `data` asset points at base/emb/<tile>."""
    import rasterio
    import shapely
    from rasterio.warp import transform_geom

    got = cli("app.emb", "synth", "--out", src, "--tiles", 2, "--size", 512, "--seed", 1)
    assert got.returncode == 0, got.stderr
    items = []
    for path in sorted(src.glob("tile-*.tif")):
        with rasterio.open(path) as ds:
            geom = transform_geom(ds.crs, "EPSG:4326", shapely.geometry.mapping(shapely.box(*ds.bounds)))
        items.append({"type": "Feature", "stac_version": "1.0.0", "id": path.stem, "collection": EMBEDDINGS,
                      "geometry": geom, "bbox": list(shapely.bounds(shapely.geometry.shape(geom))),
                      "properties": {"datetime": f"{EMB_YEAR}-01-01T00:00:00Z"}, "links": [],
                      "assets": {"data": {"href": f"{base}/emb/{path.name}", "roles": ["data"],
                                          "type": "image/tiff; application=geotiff; profile=cloud-optimized"}}})
    return items

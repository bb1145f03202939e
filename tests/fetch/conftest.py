"""The `world` fixture: see fetch_world.py."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from fetch_world import (
    PAST_YEAR,
    World,
    cli,
    embedding_items,
    hostile_items,
    served_items,
)
from servers import NGINX, FaultProxy, Nginx, Rustac

from tests.conftest import tier_unavailable


@pytest.fixture(scope="session")
def world(request, tmp_path_factory):
    if not Path(NGINX).is_file():
        tier_unavailable(request, "nginx is not installed (scripts/setup.sh installs it)")
    if shutil.which("rustac") is None and not (Path(sys.executable).with_name("rustac")).is_file():
        tier_unavailable(request, "rustac is not installed (requirements/dev.txt)")
    tmp = tmp_path_factory.mktemp("fetch")
    raw = tmp / "raw"
    got = cli("app.season", "raw", "--out", raw, "--fields", 6, "--tile", 768, "--dates", 4, "--block", 128, "--seed", 3)
    assert got.returncode == 0, got.stderr
    reference = tmp / "reference"
    nginx = Nginx(raw / "scenes", tmp / "nginx").start()
    proxy = FaultProxy("127.0.0.1", nginx.port, stall_s=4.0).start()
    proxy.redirect_to = nginx.url
    stac = None
    try:  # every server started is stopped, whatever fails below
        items = json.loads((raw / "scenes" / "collection.json").read_text())["features"]
        served = served_items(items, proxy.url)
        # a past year (the same fields and granules, other dates), served from scenes/past/
        got = cli("app.season", "raw", "--out", tmp / "past", "--fields", 6, "--tile", 768, "--dates", 4, "--block",
                  128, "--seed", 3, "--year", PAST_YEAR)
        assert got.returncode == 0, got.stderr
        (tmp / "past" / "scenes").rename(raw / "scenes" / "past")
        past = json.loads((raw / "scenes" / "past" / "collection.json").read_text())["features"]
        served += served_items(past, proxy.url + "/past")
        (tmp / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": served}))
        (tmp / "hostile.json").write_text(json.dumps({"type": "FeatureCollection",
                                                      "features": hostile_items(served[0], proxy, nginx, raw)}))
        (tmp / "emb.json").write_text(json.dumps({"type": "FeatureCollection",
                                                  "features": embedding_items(raw / "scenes" / "emb", proxy.url)}))
        stac = Rustac([tmp / "items.json", tmp / "hostile.json", tmp / "emb.json"]).start()
        world = World(raw, nginx, proxy, stac, reference, tmp)
        got = world.build(raw / "scenes" / "collection.json", reference)  # this year only (past/ is beside it)
        assert got.returncode == 0, got.stderr
        yield world
    finally:
        if stac is not None:
            stac.stop()
        proxy.stop()
        nginx.stop()

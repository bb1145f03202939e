"""A hostile or broken catalogue cannot hurt the user: each trick of fetch_world.hostile_items ends as
that item's outcome with its reason, nothing is written outside --out, and memory stays bounded."""

import json
import subprocess

import pytest
from fetch_world import HOSTILE
from servers import FaultProxy

from app.fetch.http import Client, FetchError, FetchRefused


@pytest.fixture(scope="module")
def hostile(world):
    parent = world.tmp / "hostile_parent"
    parent.mkdir()
    out = parent / "out"
    tls = world.proxy.url.replace("http://", "https://")
    got = world.fetch(out, "--allow-host", tls, "--max-cloud", 50, collection=HOSTILE)
    report = {r["id"]: r for r in json.loads((out / "2025" / "fetch_report.json").read_text())}
    return got, report, parent, out


def test_ids_that_are_not_local_names_never_become_paths(hostile):
    _, report, parent, out = hostile
    for bad in ("../../escape", "/abs/path", "nul\u0000byte", "x" * 300):
        assert report[bad]["outcome"] == "skipped" and "not usable as a local name" in report[bad]["reason"]
    assert sorted(p.name for p in parent.iterdir()) == ["out"]  # nothing beside --out
    written = {p.name for p in (out / "2025").iterdir()}
    assert written <= {"collection.json", "fetch_report.json", "redirect-out", "foreign-host", "file-href",
                       "absurd-header", "tls-error", "cloudy"}
    assert not (out / "2025" / "escape").exists() and not list(out.rglob("*.tif"))


def test_file_and_foreign_hrefs_and_redirects_are_refused(hostile):
    _, report, _, _ = hostile
    assert report["file-href"]["outcome"] == "skipped" and "file:///etc/passwd" in report["file-href"]["reason"]
    assert report["foreign-host"]["outcome"] == "skipped" and "not an allowed host" in report["foreign-host"]["reason"]
    assert report["redirect-out"]["outcome"] == "skipped" and "not an allowed host" in report["redirect-out"]["reason"]


def test_an_absurd_cog_header_is_refused_before_anything_is_allocated(hostile):
    _, report, _, _ = hostile
    assert report["absurd-header"]["outcome"] == "skipped"
    assert "tiles (limit" in report["absurd-header"]["reason"]


def test_a_tls_error_is_one_line_and_fails_the_item_and_the_run(hostile):
    got, report, _, _ = hostile
    assert report["tls-error"]["outcome"] == "failed" and "TLS error" in report["tls-error"]["reason"]
    assert got.returncode == 3
    assert got.stderr.strip().splitlines()[-1].endswith("rerun the same command to resume")
    assert "Traceback" not in got.stderr


def test_a_tls_error_from_the_catalogue_is_one_line_exit_3(world, tmp_path):
    got = world.fetch(tmp_path / "out", catalog=world.stac.url.replace("http://", "https://"))
    assert got.returncode == 3
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS error" in lines[0]


def test_an_absurd_content_length_is_refused_with_bounded_memory(world):
    client = Client([world.proxy.url], retries=0)
    world.proxy.arm("length", 1, "B04.tif")
    item = json.loads((world.raw / "scenes" / "collection.json").read_text())["features"][0]
    url = f"{world.proxy.url}/{item['assets']['red']['href'].removeprefix('./')}"
    with pytest.raises(FetchRefused, match="Content-Length 1000000000000000"):
        client.get_range(url, 0, 1024)
    assert client.get_range(url, 0, 1024).body[:2] in (b"II", b"MM")  # the next answer is fine


def test_the_client_refuses_a_non_http_url_itself(world):
    client = Client([world.proxy.url], retries=0)
    with pytest.raises(FetchError):
        client.get_range("file:///etc/passwd", 0, 10)


def test_items_over_max_cloud_are_skipped_with_their_cover(hostile):
    _, report, _, _ = hostile
    assert report["cloudy"] == {"id": "cloudy", "outcome": "skipped", "bytes": 0,
                                "reason": "cloud cover 95.5 % > --max-cloud 50"}


def test_a_certificate_that_does_not_verify_is_one_line_and_a_given_ca_is_trusted(world, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    catalogue = FaultProxy("127.0.0.1", world.stac.port, tls=(cert, key)).start()  # the STAC API over HTTPS
    try:
        got = world.fetch(tmp_path / "refused", catalog=catalogue.url)
        assert got.returncode == 3
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and "TLS error" in lines[0] and "CERTIFICATE_VERIFY_FAILED" in lines[0]
        got = world.fetch(tmp_path / "trusted", "--ca-file", cert, catalog=catalogue.url)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["fetched"] > 0
    finally:
        catalogue.stop()

"""build.py against the real Apptainer: a failing section is shown and leaves the old image alone,
the manifest describes the image on disk, unchanged inputs skip the build, a build needs no network,
no apptainer is exit 3."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.container.conftest import BUILD, ROOT

pytestmark = pytest.mark.container

sys.path.insert(0, str(ROOT))
import build  # noqa: E402  (build.py at the repository root)


def test_failing_section_is_reported_and_the_old_image_survives(sure2_sif, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "LOGS", tmp_path / "logs")
    def_file = tmp_path / "broken.def"
    def_file.write_text(f"Bootstrap: localimage\nFrom: {BUILD / 'base.sif'}\n\n"
                        "%post\n    echo marker-before-failure\n    exit 7\n")
    target = tmp_path / "broken.sif"
    target.write_bytes(b"the previous image")
    monkeypatch.setitem(build.SQUASHFS_LEVEL, "broken", 3)
    with pytest.raises(build.BuildError) as err:
        build.apptainer_build("broken", def_file, target, {}, {})
    message = str(err.value)
    assert "Running post scriptlet" in message and "marker-before-failure" in message
    assert target.read_bytes() == b"the previous image"  # not replaced, not deleted
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert "marker-before-failure" in (tmp_path / "logs" / "broken.log").read_text()


def test_manifest_describes_the_images_on_disk(sure2_sif, manifest):
    for name in ("base", "sure2"):
        entry = manifest[name]
        image = ROOT / entry["image"]
        assert entry["size_bytes"] == image.stat().st_size
        assert entry["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert entry["build_seconds"] > 0 and len(entry["inputs_sha256"]) == 64
    assert manifest["sure2"]["inputs"]["base"] == manifest["base"]["sha256"]


def test_unchanged_inputs_skip_the_build(sure2_sif):
    def build_sure2():
        proc = subprocess.run([sys.executable, "build.py", "sure2"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    build_sure2()  # in a shared checkout app/ may have changed since the image was built
    before = sure2_sif.stat().st_mtime_ns
    assert "sure2.sif is up to date" in build_sure2()
    assert sure2_sif.stat().st_mtime_ns == before


def test_missing_apptainer_is_a_clear_exit_3(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing on PATH
    proc = subprocess.run([sys.executable, "build.py", "base"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3
    assert "apptainer is not installed" in proc.stderr and "install-apptainer.sh" in proc.stderr


def test_bad_usage_is_exit_2():
    proc = subprocess.run([sys.executable, "build.py", "wheelhouse"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2


def test_sure2_builds_with_no_network(sure2_sif, manifest, unshare_bin):
    """Compute nodes have no network: with the wheelhouse and debs staged, a build needs none
    (run in a fresh network namespace: only a down loopback device exists)."""
    proc = subprocess.run([unshare_bin, "--net", sys.executable, "build.py", "sure2", "--force"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sure2.sif built in" in proc.stdout
    rebuilt = json.loads((BUILD / "manifest.json").read_text())["sure2"]
    assert rebuilt["built_at"] >= manifest["sure2"]["built_at"]
    assert rebuilt["inputs"]["base"] == manifest["base"]["sha256"]  # on the same, cached base

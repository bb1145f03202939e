"""The wheel that goes into sure2.sif: its declared packages only, the assessment compiled, no source of
the compiled modules."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from build import IMAGE_PACKAGES, build_app_wheel

ROOT = Path(__file__).resolve().parents[2]
COMPILED = sorted(p.stem for p in (ROOT / "app" / "sure2").iterdir()
                  if p.suffix in (".py", ".pyx") and p.name not in ("__init__.py", "__main__.py"))


@pytest.fixture(scope="module")
def wheel():
    return build_app_wheel("sure2")  # its setuptools build dir persists under build/stage: reruns are incremental


def test_the_sealed_wheel_holds_exactly_the_packages_sure2_declares(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == set(IMAGE_PACKAGES["sure2"])  # no app.season (build side), no app.emb


def test_wheel_ships_so_and_no_sources_of_compiled_modules(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    sure2 = [n for n in names if n.startswith("app/sure2/")]
    assert COMPILED and {"assess", "season", "_kernels", "cli"} <= set(COMPILED)
    for mod in COMPILED:
        assert any(n.startswith(f"app/sure2/{mod}.") and n.endswith(".so") for n in sure2), mod
    leaked = [n for n in names if n.endswith((".pyx", ".c", ".pxd"))]
    leaked += [n for n in sure2 if n.endswith(".py") and os.path.basename(n) not in ("__init__.py", "__main__.py")]
    assert not leaked, leaked
    # the rest of the package stays plain Python
    assert "app/__init__.py" in names and "app/errors.py" in names and "app/hpc/atomic.py" in names
    # the season page's code and vendored library, with its licence (the batch report inlines them)
    assert {"app/batch/page_assets/report.js", "app/batch/page_assets/vendor/leaflet.js",
            "app/batch/page_assets/vendor/LICENSE.leaflet"} <= set(names)


def test_installed_wheel_runs_the_assessment(wheel, tmp_path, season_dir):
    """Unpacked alone (no source tree on the path), the wheel assesses a field."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", "import app.sure2.assess as a; print(a.__file__)"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith(".so") and str(target) in r.stdout
    with __import__("app.sure2.season", fromlist=["Season"]).Season.open(season_dir) as s:
        fid = s.field_ids[0]
    r = subprocess.run([sys.executable, "-m", "app.sure2", "assess", fid, "--data", str(season_dir),
                        "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / f"{fid}.parquet").is_file()

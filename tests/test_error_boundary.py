"""One error boundary for every CLI: a user or environment error is ONE stderr line and the documented
exit code (2 bad input, 3 environment), never a traceback, and nothing is written where the table says
so. Real processes, real files (missing, unreadable, corrupt, a directory where a file belongs, a
raster without nodata, a read-only output directory, bad TOML)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small season, broken copies of it, a read-only directory and assorted bad files."""
    base = tmp_path_factory.mktemp("boundary")
    season = base / "season"
    subprocess.run([sys.executable, "-m", "app.season", "synth", "--fields", "8", "--seed", "3", "--out", str(season)],
                   cwd=ROOT, check=True, capture_output=True)
    corrupt = base / "corrupt-season"
    shutil.copytree(season, corrupt)
    (corrupt / "fields.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    dir_manifest = base / "dir-manifest"
    shutil.copytree(season, dir_manifest)
    (dir_manifest / "season.json").unlink()
    (dir_manifest / "season.json").mkdir()
    no_nodata = base / "no-nodata"
    shutil.copytree(season, no_nodata)
    _drop_nodata(no_nodata / "ndvi.tif")
    readonly = base / "readonly"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes through chmod: a read-only mount is the real thing
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    else:
        readonly.chmod(0o555)
    (base / "bad.toml").write_text("[train\nsteps = ")
    (base / "ids-dir").mkdir()
    (base / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    first = pq.read_table(season / "fields.parquet", columns=["field_id"])["field_id"][0].as_py()
    yield {"base": base, "season": season, "corrupt": corrupt, "dir_manifest": dir_manifest,
           "no_nodata": no_nodata, "readonly": readonly, "field": first}
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", str(readonly)], check=False)


def _drop_nodata(path):
    import rasterio

    with rasterio.open(path) as src:
        profile, data, tags, descriptions = src.profile, src.read(), src.tags(), src.descriptions
    profile.pop("nodata")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for b, text in enumerate(descriptions, start=1):
            dst.set_band_description(b, text)


# (name, command template, expected exit code, what the one line says, the path that must stay absent)
CASES = [
    ("assess: season dir missing", ["-m", "app.sure2", "assess", "{field}", "--data", "{base}/nope", "--out", "{base}/o1"],
     3, "does not exist", "{base}/o1"),
    ("assess: season dir is a file", ["-m", "app.sure2", "assess", "{field}", "--data", "{base}/bad.toml", "--out", "{base}/o2"],
     3, "not a directory", "{base}/o2"),
    ("assess: corrupt fields.parquet", ["-m", "app.sure2", "assess", "{field}", "--data", "{corrupt}", "--out", "{base}/o3"],
     3, "not readable", "{base}/o3"),
    ("assess: season.json is a directory", ["-m", "app.sure2", "assess", "{field}", "--data", "{dir_manifest}",
                                            "--out", "{base}/o4"], 3, "season.json", "{base}/o4"),
    ("assess: id list missing", ["-m", "app.sure2", "assess", "--ids-from", "{base}/missing.txt", "--data", "{season}",
                                 "--out", "{base}/o5"], 2, "cannot read the field list", "{base}/o5"),
    ("assess: raster without nodata", ["-m", "app.sure2", "assess", "{field}", "--data", "{no_nodata}", "--out", "{base}/o6"],
     3, "does not match season.json", "{base}/o6/{field}.parquet"),
    ("assess: read-only output dir", ["-m", "app.sure2", "assess", "{field}", "--data", "{season}", "--out", "{readonly}/o"],
     3, "{readonly}", None),
    ("assess: lambda 0", ["-m", "app.sure2", "assess", "{field}", "--lambda", "0", "--data", "{season}", "--out",
                          "{base}/o7"], 2, "--lambda 0", "{base}/o7"),
    ("batch run: field list missing", ["-m", "app.batch", "run", "--data", "{season}", "--out", "{base}/b1", "--fields",
                                       "{base}/missing.txt"], 2, "cannot read the field list", "{base}/b1"),
    ("batch run: field list is a directory", ["-m", "app.batch", "run", "--data", "{season}", "--out", "{base}/b2",
                                              "--fields", "{base}/ids-dir"], 2, "field list", "{base}/b2"),
    ("batch run: field list not text", ["-m", "app.batch", "run", "--data", "{season}", "--out", "{base}/b3", "--fields",
                                        "{base}/binary.txt"], 2, "not a text file", "{base}/b3"),
    ("batch run: season missing", ["-m", "app.batch", "run", "--data", "{base}/nope", "--out", "{base}/b4"],
     3, "does not exist", "{base}/b4"),
    ("batch run: corrupt fields.parquet", ["-m", "app.batch", "run", "--data", "{corrupt}", "--out", "{base}/b5"],
     3, "not readable", "{base}/b5"),
    ("batch run: read-only output dir", ["-m", "app.batch", "run", "--data", "{season}", "--out", "{readonly}/b"],
     3, "read-only", None),
    ("batch status: output dir missing", ["-m", "app.batch", "status", "--data", "{season}", "--out", "{base}/b6"],
     3, "does not exist", "{base}/b6"),
    ("batch plan: bad setting", ["-m", "app.batch", "plan", "--data", "{season}", "--out", "{base}/b7",
                                 "--min-coverage", "2"], 2, "--min-coverage", "{base}/b7"),
    ("doctor: temp dir missing", ["-m", "app", "doctor"], 3, "check(s) failed", None),
    ("emb prepare: no embeddings", ["-m", "app.emb", "prepare", "--src", "{base}/nope", "--parcels", "{base}/p.gpkg",
                                    "--class-map", "{base}/bad.toml", "--out", "{base}/e1"], 2, "{base}/nope is not a directory",
     "{base}/e1"),
    ("emb train: bad TOML", ["-m", "app.emb.train", "--config", "{base}/bad.toml"], 2, "bad.toml", None),
    ("season build: field file missing", ["-m", "app.season", "build", "--fields", "{base}/nope.gpkg", "--mapping",
                                          "{base}/bad.toml", "--scenes", "{base}/nope", "--out", "{base}/s1"],
     2, "bad.toml is not valid TOML", "{base}/s1"),
    ("build.py: --data not a season", ["build.py", "sure2", "--data", "{base}/nope"], 2, "not a season directory", None),
]


@pytest.mark.parametrize("name,template,code,says,absent", CASES, ids=[c[0] for c in CASES])
def test_one_line_and_the_documented_exit_code(world, name, template, code, says, absent):
    fill = lambda text: text.format(**world)
    env = {**os.environ}
    if name.startswith("doctor"):
        env["APP_TMPDIR"] = str(world["base"] / "no-such-temp")
    proc = subprocess.run([sys.executable, *map(fill, template)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1, proc.stderr
    assert fill(says) in lines[0], lines[0]
    if absent:
        assert not Path(fill(absent)).exists()


# The real assessment CLI with one library call broken inside it (an internal error: a bug, not the
# user's input or the machine): Season.open raises what no contract names.
INJECTED_BUG = """
import runpy, sys
from app.sure2.season import Season

def broken(*args, **kwargs):
    raise KeyError("injected bug")

Season.open = broken
sys.argv = ["app.sure2", *sys.argv[1:]]
runpy.run_module("app.sure2", run_name="__main__")
"""


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "APP_DEBUG=1"])
def test_an_internal_error_is_exit_1_and_one_line_with_the_traceback_only_on_request(world, debug):
    env = {k: v for k, v in os.environ.items() if k != "APP_DEBUG"} | ({"APP_DEBUG": "1"} if debug else {})
    out = world["base"] / f"internal-{debug}"
    proc = subprocess.run([sys.executable, "-c", INJECTED_BUG, "assess", world["field"], "--data", str(world["season"]),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == ("sure2: internal error: KeyError: 'injected bug' (set APP_DEBUG=1 for the traceback)")
    if debug:
        assert lines[0] == "Traceback (most recent call last):" and "in broken" in proc.stderr
    else:
        assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert not (out / f"{world['field']}.parquet").exists()

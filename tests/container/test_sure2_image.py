"""sure2.sif, run by the real Apptainer: results equal the venv's, bad input writes nothing, the image
is sealed (no assessment sources, no compiler, host environment powerless, only /out writable), and
the batch runs inside it."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from app.sure2.assess import expected
from app.sure2.output import check_output
from app.sure2.settings import Settings
from app.sure2.version import code_version
from tests.container.conftest import ROOT, apptainer, contained

pytestmark = pytest.mark.container

COMPILED_MODULES = ("assess", "cli", "ids", "outcome", "output", "payout", "science", "season", "settings", "version")
COMPILER_NAMES = ("cc", "gcc", "c++", "g++", "clang", "tcc", "cc1", "cc1plus", "x86_64-linux-gnu-gcc")


def run_image(image, out, *ids, extra=()):
    return apptainer("run", "--containall", "--cleanenv", *extra, "--bind", f"{out}:/out", image, *ids)


def venv_assess(season_dir, out, *ids):
    subprocess.run([sys.executable, "-m", "app.sure2", "assess", *ids, "--data", season_dir, "--out", out],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)


def test_several_ids_in_one_run_match_the_venv_exactly(sure2_sif, season, embedded_season, tmp_path):
    ids = season.field_ids[:3]
    (tmp_path / "img").mkdir()
    proc = run_image(sure2_sif, tmp_path / "img", *ids)
    assert proc.returncode == 0, proc.stderr
    venv_assess(embedded_season, tmp_path / "venv", *ids)
    assert sorted(os.listdir(tmp_path / "img")) == sorted(f"{i}.parquet" for i in ids)
    for fid in ids:
        got = tmp_path / "img" / f"{fid}.parquet"
        assert check_output(got, expected(season, fid, Settings())) is None
        want = pq.read_table(tmp_path / "venv" / f"{fid}.parquet")
        assert pq.read_table(got).equals(want, check_metadata=True)  # data and payout blobs alike


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs", "", "x" * 65, "NO-SUCH-FIELD"])
def test_bad_id_exits_2_with_one_line_and_writes_nothing(sure2_sif, tmp_path, bad):
    proc = run_image(sure2_sif, tmp_path, bad)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert os.listdir(tmp_path) == []


def test_image_holds_no_assessment_source_and_no_compiler(sure2_sif):
    script = f"""
import os, sys, app.sure2 as s
pkg = os.path.dirname(s.__file__)
names = os.listdir(pkg)
for m in {COMPILED_MODULES!r}:
    assert not any(n in (m + ".py", m + ".pyx", m + ".c") for n in names), m
    assert any(n.startswith(m + ".cpython-") and n.endswith(".so") for n in names), m
import importlib.util
assert importlib.util.find_spec("app.season") is None, "the build side is in the sealed image"
found = [os.path.join(d, f) for top in ("/usr", "/opt", "/bin") for d, _, fs in os.walk(top)
         for f in fs if f in {COMPILER_NAMES!r} or f.startswith(("gcc-", "clang-"))]
print("compilers:", found)
sys.exit(1 if found else 0)
"""
    proc = contained(sure2_sif, "python", "-I", "-c", script)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_poisoned_host_environment_changes_nothing(sure2_sif, season, tmp_path):
    # No --cleanenv: the junk really reaches the container (bound at the same paths), and the
    # image's pinned %environment and `python -I` must make it irrelevant.
    evil = tmp_path / "evil"
    (evil / "app").mkdir(parents=True)
    (evil / "app" / "__init__.py").write_text("raise SystemExit(97)\n")
    (evil / "numpy").mkdir()
    (evil / "numpy" / "__init__.py").write_text("raise SystemExit(98)\n")
    (evil / "libz.so.1").write_bytes(b"not a library")
    (evil / "libc.so.6").write_bytes(b"not a library")
    env = {**os.environ, "PYTHONPATH": str(evil), "PROJ_DATA": str(evil), "PROJ_LIB": str(evil),
           "LD_LIBRARY_PATH": str(evil), "PYTHONHOME": str(evil), "GDAL_DATA": str(evil)}
    fid = season.field_ids[0]
    clean, poisoned = tmp_path / "clean", tmp_path / "poisoned"
    clean.mkdir()
    poisoned.mkdir()
    assert run_image(sure2_sif, clean, fid).returncode == 0
    proc = apptainer("run", "--containall", "--bind", f"{evil}:{evil}", "--bind", f"{poisoned}:/out",
                     sure2_sif, fid, env=env)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(poisoned / f"{fid}.parquet").equals(pq.read_table(clean / f"{fid}.parquet"),
                                                              check_metadata=True)
    # and the batch command, which runs plain `python` in the image, is just as deaf to it
    doctor = apptainer("exec", "--containall", "--bind", f"{evil}:{evil}", sure2_sif,
                       "python", "-m", "app", "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_only_out_is_writable(sure2_sif, season, tmp_path):
    fid = season.field_ids[0]
    for target in ("/data", "/opt/py", "/"):
        proc = contained(sure2_sif, "sh", "-c", f"touch {target}/x", binds=[(tmp_path, "/out")])
        assert proc.returncode != 0, target
    # the assessment pointed elsewhere fails as a storage error, and nothing lands on the host
    proc = run_image(sure2_sif, tmp_path, fid, "--out", "/data/elsewhere")
    assert proc.returncode == 3, proc.stderr
    assert os.listdir(tmp_path) == []


def test_embedded_season_is_the_labelled_one(sure2_sif, season):
    proc = apptainer("inspect", "--labels", sure2_sif)
    assert f"data.fingerprint: {season.fingerprint}" in proc.stdout
    assert f"code.version: {code_version()}" in proc.stdout  # the venv's compiled modules are the image's


def test_whole_season_batch_runs_inside_the_image(sure2_sif, season, tmp_path):
    proc = contained(sure2_sif, "python", "-m", "app.batch", "run", "--backend", "inproc", "--workers", "2",
                     "--data", "/data", "--out", "/out", "--quiet",
                     binds=[(tmp_path, "/out")],
                     timeout=600)
    assert proc.returncode == 0, proc.stderr
    outputs = sorted(n for n in os.listdir(tmp_path) if n.endswith(".parquet"))
    assert outputs == sorted(f"{fid}.parquet" for fid in season.field_ids)
    for fid in season.field_ids:
        assert check_output(tmp_path / f"{fid}.parquet", expected(season, fid, Settings())) is None
    report = __import__("json").loads((tmp_path / ".batch" / "report.json").read_text())
    assert report["season"]["fields"] == len(season.field_ids) == report["counts"]["assessed"] + \
        report["counts"]["not_assessable"] + report["counts"]["insufficient_data"]
    assert (tmp_path / ".batch" / "payout_map.png").read_bytes()[:4] == b"\x89PNG"  # drawn inside the image
    assert (tmp_path / ".batch" / "season_result.parquet").is_file()


@pytest.mark.slow
def test_batch_fault_tests_pass_against_the_image(sure2_sif, embedded_season):
    """tests/batch's backend-parametrised fault tests (kill -9 and resume, concurrent runs), run with
    the apptainer backend on this image and the season embedded in it."""
    env = {**os.environ, "BATCH_TEST_BACKENDS": f"apptainer:{sure2_sif}", "BATCH_TEST_DATA": str(embedded_season)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "apptainer",
                           "tests/batch/test_faults.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout

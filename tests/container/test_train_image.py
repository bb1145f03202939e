"""train.sif, run by the real Apptainer: pinned torch from the wheelhouse, the doctor passes, the PROJ
trap is real and the image's own pin avoids it, torch.compile compiles and runs a model inside (the
image carries gcc/g++ 12 and the Python headers), and the whole EMB path runs inside with
--containall --cleanenv: synth → prepare from a GeoPackage (pyogrio) → 2-rank DDP training (gloo,
CPU) with its PNGs (matplotlib) → predict."""

import json
import os
import re

import pytest

from tests.container.conftest import ROOT, apptainer, contained
from tests.emb.conftest import PREPARE_ARGS, SYNTH_ARGS, write_vector  # the EMB tests' small dataset

pytestmark = pytest.mark.container

RASTERIO_EPSG = "from rasterio.crs import CRS; print(CRS.from_epsg(32633).to_epsg())"
PYPROJ_COPY = "/opt/py/lib/python3.11/site-packages/pyproj/proj_dir/share/proj"
SMOKE = "/opt/app/app/emb/configs/smoke.toml"


def pinned(requirements: str, name: str) -> str:
    text = (ROOT / "requirements" / requirements).read_text()
    return re.search(rf"^{name}==(\S+)", text, re.M).group(1)


def test_torch_is_the_pinned_build(train_sif, manifest):
    variant = manifest["train"]["versions"]["torch_variant"]
    requirements = {"cu130": "train.txt", "cu128": "train-cu128.txt"}[variant]
    proc = contained(train_sif, "python", "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__)")
    assert proc.returncode == 0, proc.stderr
    torch_v, vision_v = proc.stdout.split()
    assert torch_v.split("+")[0] == pinned(requirements, "torch")
    assert vision_v.split("+")[0] == pinned(requirements, "torchvision")


def test_doctor_passes_inside(train_sif):
    proc = contained(train_sif, "python", "-m", "app", "doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch" in proc.stdout and "app 0" in proc.stdout and "/opt/app" in proc.stdout


def test_verbs_libraries_for_nccl_over_infiniband_load_inside(train_sif):
    # without them NCCL falls back to TCP sockets between nodes (the providers: mlx5 and the others)
    probe = ("import ctypes, glob; ctypes.CDLL('libibverbs.so.1'); ctypes.CDLL('librdmacm.so.1'); "
             "print(len(glob.glob('/usr/lib/x86_64-linux-gnu/libibverbs/libmlx5-rdmav*.so')))")
    proc = contained(train_sif, "python", "-c", probe)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stdout + proc.stderr


def test_proj_trap_is_real_and_the_pin_avoids_it(train_sif):
    pinned_run = contained(train_sif, "python", "-c", RASTERIO_EPSG)
    assert pinned_run.returncode == 0 and pinned_run.stdout.strip() == "32633", pinned_run.stderr
    trapped = contained(train_sif, "python", "-c", RASTERIO_EPSG, extra=["--env", f"PROJ_DATA={PYPROJ_COPY}"])
    assert trapped.returncode != 0
    assert "DATABASE.LAYOUT.VERSION.MINOR" in trapped.stderr
    doctor = contained(train_sif, "python", "-m", "app", "doctor", extra=["--env", f"PROJ_DATA={PYPROJ_COPY}"])
    assert doctor.returncode == 3 and "FAIL  proj-data" in doctor.stdout


def test_host_pythonpath_cannot_replace_the_app(train_sif, tmp_path):
    evil = tmp_path / "evil"
    (evil / "app").mkdir(parents=True)
    (evil / "app" / "__init__.py").write_text("raise SystemExit(97)\n")
    env = {**os.environ, "PYTHONPATH": str(evil), "PROJ_DATA": str(evil)}
    proc = apptainer("exec", "--containall", "--bind", f"{evil}:{evil}", train_sif,
                     "python", "-c", "import app, rasterio.crs; print(app.__file__); rasterio.crs.CRS.from_epsg(32633)",
                     env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "/opt/app/app/__init__.py"


COMPILE = """
import glob, os, torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(64, 16, 3, padding=1), torch.nn.GroupNorm(4, 16), torch.nn.ReLU(),
                          torch.nn.Conv2d(16, 5, 1))
x = torch.randn(2, 64, 32, 32)
eager = net(x)
compiled = torch.compile(net)
out = compiled(x)
out.sum().backward()
assert torch.allclose(out, eager, rtol=1e-4, atol=1e-5), (out - eager).abs().max()
built = glob.glob(os.environ["TORCHINDUCTOR_CACHE_DIR"] + "/**/*.so", recursive=True)
print("compiled-modules", len(built))
"""


def test_torch_compile_compiles_and_runs_a_model_inside(train_sif, tmp_path):
    proc = contained(train_sif, "python", "-c", COMPILE, binds=[(tmp_path, "/tmp")],
                     extra=["--env", "OMP_NUM_THREADS=1"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split("compiled-modules")[-1]) >= 1  # g++ really built kernels (no eager fallback)
    assert list(tmp_path.glob("torchinductor/**/*.cpp")), "inductor's C++ sources should sit in the bound /tmp"


@pytest.mark.slow
def test_the_emb_path_runs_inside(train_sif, tmp_path):
    binds = [(tmp_path, "/work")]
    run = ["--env", "OMP_NUM_THREADS=1"]
    synth = contained(train_sif, "python", "-m", "app.emb", "synth", "--out", "/work/src", *SYNTH_ARGS,
                      binds=binds, extra=run, timeout=900)
    assert synth.returncode == 0, synth.stderr[-3000:]
    write_vector(tmp_path / "src" / "parcels.parquet", tmp_path / "parcels.gpkg", "GPKG")
    steps = [
        ["python", "-m", "app.emb", "prepare", "--src", "/work/src", "--parcels", "/work/parcels.gpkg",
         "--class-map", "/work/src/class_map.toml", "--out", "/work/shards", *PREPARE_ARGS],
        ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "app.emb.train", "--config", SMOKE,
         "data.shards=/work/shards", "run.dir=/work/run", "train.steps=2", "train.eval_every=2",
         "train.ckpt_every=2", "train.batch_size=4", "train.eval_batch_size=2"],
        ["python", "-m", "app.emb", "predict", "--checkpoint", "/work/run", "--input", "/work/src/tile-000.tif",
         "--out", "/work/classes.tif"],
    ]
    for cmd in steps:
        proc = contained(train_sif, *cmd, binds=binds, extra=run, timeout=900)
        assert proc.returncode == 0, f"{cmd[:4]}: {proc.stderr[-3000:]}"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert (status["state"], status["step"]) == ("done", 2)
    assert (tmp_path / "run" / "ckpt-00000002.pt").is_file()
    for png in ("curves.png", "confusion.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "shards" / "report.json").read_text())
    assert report["parcels"]["file"] == "/work/parcels.gpkg" and report["parcels"]["unmapped"]["parcels"] > 0
    assert (tmp_path / "classes.tif").stat().st_size > 0

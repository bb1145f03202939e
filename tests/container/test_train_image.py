"""train.sif, run by the real Apptainer: pinned torch from the wheelhouse, the doctor passes, the PROJ
trap is real and the image's own pin avoids it, and a 2-step DDP training (gloo, CPU) runs inside
with --containall --cleanenv on data prepared inside the image."""

import json
import os
import re

import pytest

from tests.container.conftest import ROOT, apptainer, contained
from tests.emb.conftest import PREPARE_ARGS, SYNTH_ARGS  # the EMB tests' small dataset, same sizes

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


@pytest.mark.slow
def test_two_step_ddp_training_inside(train_sif, tmp_path):
    binds = [(tmp_path, "/work")]
    steps = [
        ["python", "-m", "app.emb", "synth", "--out", "/work/src", *SYNTH_ARGS],
        ["python", "-m", "app.emb", "prepare", "--src", "/work/src", "--out", "/work/shards", *PREPARE_ARGS],
        ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "app.emb.train", "--config", SMOKE,
         "data.shards=/work/shards", "run.dir=/work/run", "train.steps=2", "train.eval_every=2",
         "train.ckpt_every=2", "train.batch_size=4", "train.eval_batch_size=2"],
    ]
    for cmd in steps:
        proc = contained(train_sif, *cmd, binds=binds, extra=["--env", "OMP_NUM_THREADS=1"], timeout=900)
        assert proc.returncode == 0, f"{cmd[:4]}: {proc.stderr[-3000:]}"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert (status["state"], status["step"]) == ("done", 2)
    assert (tmp_path / "run" / "ckpt-00000002.pt").is_file()

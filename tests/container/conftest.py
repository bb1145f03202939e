"""The container tier: the real images from build.py, run by the real Apptainer.

Images come from `python build.py all` (build/sure2.sif, build/train.sif); build/manifest.json says
which season was embedded in sure2.sif, so the venv can assess the very same data for comparison.
"""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"


def _image(request, name: str) -> Path:
    path = BUILD / f"{name}.sif"
    if not path.is_file():
        reason = f"{path} is missing (python build.py {name})"
        if request.config.getoption("--require-tiers"):
            pytest.fail(f"tier prerequisite missing: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((BUILD / "manifest.json").read_text())


@pytest.fixture(scope="session")
def sure2_sif(request, apptainer_bin) -> Path:
    return _image(request, "sure2")


@pytest.fixture(scope="session")
def train_sif(request, apptainer_bin) -> Path:
    return _image(request, "train")


@pytest.fixture(scope="session")
def embedded_season(sure2_sif, manifest) -> Path:
    """The host copy of the season build.py embedded at /data in sure2.sif."""
    return Path(manifest["sure2"]["versions"]["season"])


@pytest.fixture(scope="session")
def season(embedded_season):
    from app.sure2.season import Season

    with Season.open(embedded_season) as s:
        yield s


def apptainer(*args, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """`apptainer -s ARGS` (silent: its own warnings would pollute stderr assertions)."""
    return subprocess.run(["apptainer", "-s", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kw)


def contained(image, *args, binds=(), extra=(), **kw) -> subprocess.CompletedProcess:
    """`apptainer exec --containall --cleanenv` with explicit binds, like the Slurm wrappers."""
    flags = ["--containall", "--cleanenv", *extra]
    for host, inside in binds:
        flags += ["--bind", f"{host}:{inside}"]
    return apptainer("exec", *flags, image, *args, **kw)

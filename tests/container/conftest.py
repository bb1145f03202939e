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


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((BUILD / "manifest.json").read_text())


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

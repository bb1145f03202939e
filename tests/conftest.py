"""Tier handling: a tier that cannot run fails loudly under --require-tiers (the README test
command), instead of being skipped and counted as a pass."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    parser.addoption(
        "--require-tiers",
        action="store_true",
        help="fail (not skip) container/slurm/browser tests whose prerequisites are missing",
    )


def tier_unavailable(request, reason):
    if request.config.getoption("--require-tiers"):
        pytest.fail(f"tier prerequisite missing: {reason}", pytrace=False)
    pytest.skip(reason)


def installed(request, tool: str, how: str) -> str:
    path = shutil.which(tool)
    if not path:
        tier_unavailable(request, f"{tool} is not installed ({how})")
    return path


@pytest.fixture(scope="session")
def apptainer_bin(request):
    return installed(request, "apptainer", "scripts/install-apptainer.sh")


@pytest.fixture(scope="session")
def slurm_cluster(request):
    """The local test cluster must answer sinfo."""
    if not shutil.which("sinfo"):
        tier_unavailable(request, "Slurm is not installed (scripts/slurm-local.sh start)")
    ok = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    if not ok:
        tier_unavailable(request, "the local Slurm cluster is not running (scripts/slurm-local.sh start)")
    return True


@pytest.fixture(scope="session")
def as_root(request):
    """Tests that mount a tmpfs (a real full disk, a real read-only mount) or add a local user."""
    if os.geteuid() != 0:
        tier_unavailable(request, "needs root (mounting a tmpfs, adding a local user); CI runs as root")
    return True


@pytest.fixture(scope="session")
def unshare_bin(request):
    return installed(request, "unshare", "util-linux")


@pytest.fixture(scope="session")
def machine_without_gpus(request):
    from app import doctor

    if doctor.visible_gpus():
        tier_unavailable(request, "this machine has GPUs: the no-GPU checks need a machine without")
    return True


@pytest.fixture(scope="session")
def chromium(request) -> tuple[str, str]:
    """(chromium, chromedriver): Debian's packages (scripts/setup.sh installs them)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        tier_unavailable(request, "chromium and chromium-driver are not installed (scripts/setup.sh)")
    return browser, driver


def _built_image(request, name):
    path = os.path.join(ROOT, "build", f"{name}.sif")
    if not os.path.isfile(path):
        tier_unavailable(request, f"{path} is missing (python build.py {name})")
    return Path(path)


@pytest.fixture(scope="session")
def sure2_sif(request, apptainer_bin) -> Path:
    return _built_image(request, "sure2")


@pytest.fixture(scope="session")
def train_sif(request, apptainer_bin) -> Path:
    return _built_image(request, "train")


@pytest.fixture(scope="session")
def season_sif(request, apptainer_bin) -> Path:
    return _built_image(request, "season")


def pytest_sessionfinish(session, exitstatus):
    # A run that collected nothing must not look green.
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = 5

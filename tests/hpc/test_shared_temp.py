"""Temp directories on a node shared between users (preproc, laptops): another real local user prepares
the path (a world-writable directory of theirs, a symlink into a directory they own) and every temp
location the project creates, in bash (sl_node_run) and in Python (the batch), refuses it with exit 3
and writes nothing there; a clean path is created private (mode 700)."""

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import EnvironmentFailure
from app.hpc.tempdir import pick_temp_dir, private_temp_dir, untrusted_component

ROOT = Path(__file__).resolve().parents[2]
INTRUDER = "sure2-intruder"


@pytest.fixture(scope="module")
def intruder(as_root):
    try:
        pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
                       check=True)
    return INTRUDER


@pytest.fixture
def shm_root(tmp_path_factory):
    """A stand-in for /dev/shm (root's, mode 1777, on RAM) so the test never touches the real one."""
    root = Path("/dev/shm") / f"sure2-test-{os.getpid()}-{tmp_path_factory.getbasetemp().name}"
    root.mkdir()
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def as_intruder(*cmd):
    subprocess.run(list(map(str, cmd)), check=True, user=INTRUDER)


def traps(shm_root):
    """The two traps: a victim directory the intruder owns (mode 777), and a symlink the intruder
    planted in it pointing at a directory of theirs. Returns {name: base path, intruder's dir}."""
    victim = shm_root / "victim"
    loot = shm_root / "loot"
    as_intruder("mkdir", "-m", "777", victim)
    as_intruder("mkdir", "-m", "777", loot)
    as_intruder("ln", "-s", loot, victim / "4242")
    return {"their directory": victim / "job", "their symlink": victim / "4242"}, loot


def node_run(base, target="/tmp"):
    return subprocess.run(["bash", str(ROOT / "slurm" / "common.sh"), "node-run", f"{base}:{target}", "", "--",
                           "true"], capture_output=True, text=True, timeout=60)


def test_bash_node_run_refuses_a_path_another_user_prepared(intruder, shm_root):
    bases, loot = traps(shm_root)
    proc = node_run(bases["their symlink"])
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not safe on a shared node" in lines[0] and "owned by uid" in lines[0]
    assert os.listdir(loot) == []  # nothing of ours landed in the intruder's directory


def test_bash_node_run_refuses_a_symlink_even_in_our_own_directory(intruder, shm_root):
    ours = shm_root / "ours"
    ours.mkdir(mode=0o700)
    loot = shm_root / "loot"
    as_intruder("mkdir", "-m", "777", loot)
    os.symlink(loot, ours / "4242")  # a link of ours is no better: the target is theirs
    proc = node_run(ours / "4242")
    assert proc.returncode == 3 and "owned by uid" in proc.stderr
    assert os.listdir(loot) == []


def test_bash_node_run_makes_a_clean_path_private(intruder, shm_root):
    base = shm_root / "me" / "4242"
    proc = subprocess.run(["bash", str(ROOT / "slurm" / "common.sh"), "node-run", f"{base}:/tmp", "", "--",
                           "bash", "-c", f"stat -c '%U %a' {shm_root / 'me'} && ls {base}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    owner_mode, step = proc.stdout.split("\n")[:2]
    assert owner_mode == "root 700" and step.startswith("step.")


def test_python_refuses_the_same_traps_and_makes_private_dirs(intruder, shm_root):
    bases, loot = traps(shm_root)
    for name, base in bases.items():
        assert untrusted_component(base), name
        with pytest.raises(EnvironmentFailure, match="not safe on a shared machine"):
            pick_temp_dir(environ={"APP_TMPDIR": str(base)})
    assert os.listdir(loot) == []
    clean = shm_root / "clean"
    clean.mkdir(mode=0o700)
    made = private_temp_dir(pick_temp_dir(environ={"APP_TMPDIR": str(clean)}), "x-")
    st = os.lstat(made)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid() and made.parent == clean


def test_the_batch_refuses_a_temp_dir_another_user_prepared(intruder, shm_root, tmp_path):
    bases, loot = traps(shm_root)
    season = tmp_path / "season"
    subprocess.run([sys.executable, "-m", "app.season", "synth", "--fields", "3", "--seed", "1", "--out", season],
                   cwd=ROOT, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "app.batch", "run", "--data", season, "--out", tmp_path / "out"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "APP_TMPDIR": str(bases["their symlink"])})
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not safe on a shared machine" in proc.stderr
    assert os.listdir(loot) == [] and not (tmp_path / "out").exists()

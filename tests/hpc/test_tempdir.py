import os
import signal
import subprocess
import sys

import pytest

from app.errors import EnvironmentFailure
from app.hpc.tempdir import check_temp_dir, mount_of, pick_temp_dir, private_temp_dir

MOUNTINFO = """\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:5 / /dev/shm rw - tmpfs tmpfs rw
40 22 0:50 / /cluster rw - lustre 10.0.0.1@o2ib:/fs rw
41 22 0:51 / /cluster/local\\040scratch rw - xfs /dev/nvme0 rw
"""


def test_longest_mount_point_wins():
    assert mount_of("/cluster/work/x", MOUNTINFO).fstype == "lustre"
    assert mount_of("/cluster/local scratch/x", MOUNTINFO).fstype == "xfs"
    assert mount_of("/dev/shm", MOUNTINFO).fstype == "tmpfs"
    assert mount_of("/clusterfoo", MOUNTINFO).fstype == "ext4"


def test_lustre_is_refused_unless_forced(tmp_path):
    fake = f"1 0 0:1 / / rw - ext4 x rw\n2 1 0:2 / {tmp_path} rw - lustre x rw\n"
    with pytest.raises(EnvironmentFailure, match="parallel filesystem"):
        check_temp_dir(tmp_path, mountinfo=fake)
    assert check_temp_dir(tmp_path, force=True, mountinfo=fake) == tmp_path


def test_env_choice_is_checked(tmp_path):
    assert pick_temp_dir(environ={"APP_TMPDIR": str(tmp_path)}) == tmp_path
    with pytest.raises(EnvironmentFailure, match="does not exist"):
        pick_temp_dir(environ={"APP_TMPDIR": str(tmp_path / "missing")})


MAKE_AND_WAIT = """
import sys, time
from app.hpc.tempdir import private_temp_dir
path = private_temp_dir(sys.argv[1], "job-")
(path / "scratch.bin").write_bytes(b"x" * 4096)
print(path, flush=True)
time.sleep(600)
"""


def _maker(base):
    proc = subprocess.Popen([sys.executable, "-c", MAKE_AND_WAIT, str(base)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_killed_processs_temp_dir_is_removed_by_the_next_one_a_live_ones_kept(tmp_path, capfd):
    killed, killed_dir = _maker(tmp_path)
    live, live_dir = _maker(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)  # what walltime and the OOM killer do: no clean-up runs
        killed.wait()
        name = os.path.basename(killed_dir)
        foreign = tmp_path / ("job-" + ".".join(["x" * 8, *name[len("job-"):].split(".")[1:]]))
        foreign.mkdir(mode=0o700)  # another boot or namespace: its pid means nothing here
        (tmp_path / "job-someone-else").mkdir()  # not a name this code makes
        mine = private_temp_dir(tmp_path, "job-")
        assert not os.path.lexists(killed_dir)
        assert os.path.isfile(os.path.join(live_dir, "scratch.bin"))
        assert foreign.is_dir() and (tmp_path / "job-someone-else").is_dir() and mine.is_dir()
        assert "removed 1 temp dir(s)" in capfd.readouterr().err
    finally:
        live.kill()
        live.wait()


def _cgroup_tree(tmp_path, levels):
    """A cgroup v1 memory tree: levels = [(relative path, limit, usage)], and a /proc/self/cgroup naming
    the deepest one."""
    root = tmp_path / "sys"
    for rel, limit, usage in levels:
        d = root / "memory" / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    proc = tmp_path / "cgroup"
    proc.write_text(f"12:pids:/x\n4:memory:/{levels[-1][0]}\n1:name=systemd:/y\n")
    return proc, root


def test_memory_cgroup_room_is_the_tightest_level_on_the_way_up(tmp_path):
    from app.hpc.tempdir import memory_cgroup_room

    unlimited = 9223372036854771712
    proc, root = _cgroup_tree(tmp_path, [
        ("", unlimited, 5 << 30),
        ("slurm_p1/uid_1001/job_39", 1000 << 20, 300 << 20),  # the job: 1000 MiB, 300 used
        ("slurm_p1/uid_1001/job_39/step_0", 800 << 20, 250 << 20),  # the step: 800 MiB, 250 used
        ("slurm_p1/uid_1001/job_39/step_0/task_0", unlimited, 250 << 20),
    ])
    assert memory_cgroup_room(proc, root) == 550 << 20
    proc.write_text("0::/user.slice\n")  # v2 with no memory.max files: no visible limit
    assert memory_cgroup_room(proc, root) is None


def test_temp_room_on_ram_is_bounded_by_free_space_at_most():
    from app.hpc.tempdir import free_bytes, temp_room

    room, what = temp_room("/dev/shm")
    assert 0 < room <= free_bytes("/dev/shm") and "MiB free on tmpfs" in what

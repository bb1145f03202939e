import pytest

from app.errors import EnvironmentFailure
from app.hpc.tempdir import check_temp_dir, mount_of, pick_temp_dir

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

"""Work division from the output filesystem's mount options: real mountinfo lines of each kind."""

import pytest

from app.hpc.filesystems import Share, lock_coherence, run_identity, work_share

ROOT_LINE = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,discard\n"
LINES = {
    "lustre flock": "331 22 0:61 / /cluster rw,relatime shared:160 - lustre 10.11.0.1@o2ib:10.11.0.2@o2ib:/betzy rw,flock,lazystatfs,encrypt",
    "lustre localflock": "331 22 0:61 / /cluster rw,relatime shared:160 - lustre 10.11.0.1@o2ib:/betzy rw,localflock,lazystatfs",
    "lustre noflock": "331 22 0:61 / /cluster rw,relatime shared:160 - lustre 10.11.0.1@o2ib:/betzy rw,noflock,lazystatfs",
    "lustre default": "331 22 0:61 / /cluster rw,relatime shared:160 - lustre 10.11.0.1@o2ib:/betzy rw,lazystatfs",
    "nfs4": "331 22 0:61 / /cluster rw,relatime shared:160 - nfs4 nas:/export rw,vers=4.2,rsize=1048576,hard,proto=tcp,local_lock=none,addr=10.0.0.5",
    "nfs3 nolock": "331 22 0:61 / /cluster rw,relatime shared:160 - nfs nas:/export rw,vers=3,nolock,proto=tcp,addr=10.0.0.5",
    "nfs local_lock": "331 22 0:61 / /cluster rw,relatime shared:160 - nfs4 nas:/export rw,vers=4.1,local_lock=flock,addr=10.0.0.5",
    "beegfs": "331 22 0:61 / /cluster rw,relatime shared:160 - beegfs beegfs_nodev rw,cfgFile=/etc/beegfs/beegfs-client.conf",
    "gpfs": "331 22 0:61 / /cluster rw,relatime shared:160 - gpfs gpfs0 rw",
    "fuse": "331 22 0:61 / /cluster rw,nosuid,nodev,relatime shared:160 - fuse.sshfs me@host:/x rw,user_id=0,group_id=0",
}
COHERENT = {"lustre flock": True, "lustre localflock": False, "lustre noflock": False, "lustre default": False,
            "nfs4": True, "nfs3 nolock": False, "nfs local_lock": False, "beegfs": False, "gpfs": True, "fuse": False}


@pytest.mark.parametrize("kind", sorted(LINES))
def test_lock_coherence_of_each_filesystem(kind):
    got = lock_coherence("/cluster/work/users/alice/sure2/out", ROOT_LINE + LINES[kind] + "\n")
    assert got.point == "/cluster" and got.coherent is COHERENT[kind], got
    assert got.why.startswith(f"{got.fstype} at /cluster: ")


def test_the_longest_mount_point_wins_and_escaped_names_are_read():
    text = (ROOT_LINE + LINES["lustre localflock"] + "\n"
            + "400 331 0:70 / /cluster/my\\040work rw,relatime - lustre 10.11.0.1@o2ib:/w rw,flock\n")
    assert lock_coherence("/cluster/my work/out", text).coherent
    assert not lock_coherence("/cluster/other", text).coherent
    assert lock_coherence("/home/alice", text).fstype == "ext4"  # a local disk: claims among its processes


@pytest.mark.parametrize("env, want", [
    ({}, None),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, Share(2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "1"}, None),
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, Share(4, 4)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, None),
])
def test_run_identity_from_slurm(env, want):
    assert run_identity(env) == want


def test_shares_are_disjoint_and_cover_the_plan_only_where_locks_are_not_coherent():
    todo = [f"F{i:04d}" for i in range(10)]
    incoherent = ROOT_LINE + LINES["lustre localflock"] + "\n"
    taken = []
    for k in (1, 2, 3):
        env = {"SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_COUNT": "3"}
        share, why = work_share("/cluster/out", env, incoherent)
        assert share == Share(k, 3) and f"share {k}/3" in why and "localflock" in why
        taken.append(share.take(todo))
    assert sorted(f for share in taken for f in share) == todo and taken[0] == ["F0000", "F0003", "F0006", "F0009"]
    share, why = work_share("/cluster/out", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"},
                            ROOT_LINE + LINES["lustre flock"] + "\n")
    assert share is None and why.startswith("run 1 of 3: claims (lustre at /cluster: mounted with flock")
    assert work_share("/cluster/out", {}, incoherent)[0] is None  # a run alone takes everything

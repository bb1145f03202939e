from app.hpc.cores import physical_cores, slurm_cpu_cap


def make_topology(tmp_path, siblings):
    """siblings: list of sibling-list strings, one per logical CPU."""
    for cpu, sib in enumerate(siblings):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "thread_siblings_list").write_text(sib + "\n")
    return tmp_path


def test_smt_siblings_count_once(tmp_path):
    # 4 logical CPUs, 2 physical cores (Betzy-style SMT pairs 0,2 and 1,3).
    sys_cpu = make_topology(tmp_path, ["0,2", "1,3", "0,2", "1,3"])
    assert physical_cores(environ={}, affinity={0, 1, 2, 3}, sys_cpu=sys_cpu) == 2


def test_affinity_restricts_cores(tmp_path):
    sys_cpu = make_topology(tmp_path, ["0,2", "1,3", "0,2", "1,3"])
    assert physical_cores(environ={}, affinity={0, 2}, sys_cpu=sys_cpu) == 1


def test_slurm_allocation_caps(tmp_path):
    sys_cpu = make_topology(tmp_path, [str(i) for i in range(8)])
    assert physical_cores(environ={"SLURM_CPUS_PER_TASK": "3"}, affinity=set(range(8)), sys_cpu=sys_cpu) == 3
    assert physical_cores(environ={"SLURM_JOB_CPUS_PER_NODE": "5(x4)"}, affinity=set(range(8)), sys_cpu=sys_cpu) == 5


def test_slurm_counts_hyperthreads_so_its_cap_is_halved(tmp_path):
    # Betzy: Slurm counts 2 threads per core and normal does not bind: -c 2 is one core, not two.
    sys_cpu = make_topology(tmp_path, ["0,2", "1,3", "0,2", "1,3"])
    assert physical_cores(environ={"SLURM_CPUS_PER_TASK": "2"}, affinity={0, 1, 2, 3}, sys_cpu=sys_cpu) == 1
    assert physical_cores(environ={"SLURM_CPUS_PER_TASK": "4"}, affinity={0, 1, 2, 3}, sys_cpu=sys_cpu) == 2
    sys_cpu = make_topology(tmp_path / "range", ["0-1", "0-1", "2-3", "2-3"])
    assert physical_cores(environ={"SLURM_CPUS_ON_NODE": "2"}, affinity={0, 1, 2, 3}, sys_cpu=sys_cpu) == 1


def test_slurm_cap_parsing():
    assert slurm_cpu_cap({}) is None
    assert slurm_cpu_cap({"SLURM_JOB_CPUS_PER_NODE": "64,32"}) == 64
    assert slurm_cpu_cap({"SLURM_CPUS_PER_TASK": "16", "SLURM_JOB_CPUS_PER_NODE": "128"}) == 16


def test_this_machine_is_sane():
    import os

    n = physical_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))
